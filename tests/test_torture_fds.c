/* File descriptors the library keeps (stats report, io_uring ring, pidfd): closed by the program and their numbers reused, or replaced by the library while in use, they must never hit the wrong file. */
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"
#include "tu_seccomp.h"

/* HAKMEM_STATS=1/json and no HAKMEM_STATS_FILE: the program closes every
 * fd >= 3, opens a file, writes to it and exits. The file holds only what
 * the program wrote. */
START_TEST(stats_report_not_into_program_file) {
  static const char *const stats[] = {"HAKMEM_STATS=1", "HAKMEM_STATS=json"};
  char path[128];
  tu_tmpname(path, sizeof path, "fdreuse");
  const char *argv[] = {"tests/bin/prog_fdreuse", "stats", path, NULL};
  const char *env[] = {stats[_i], NULL};
  tu_run_t r;
  ck_assert_int_eq(tu_run(argv, env, NULL, &r), 0);
  size_t len = 0;
  char *text = tu_read_file(path, &len);
  unlink(path);
  ck_assert_msg(tu_exited_ok(&r), "prog_fdreuse stats: status 0x%x, stderr [%s]", r.status, r.err);
  ck_assert_ptr_nonnull(text);
  ck_assert_msg(strcmp(text, "program data\n") == 0,
                "%s: the exit report went into the program's file (%s); it holds %zu bytes: [%.300s]",
                stats[_i], r.out, len, text);
  free(text);
  tu_run_free(&r);
}
END_TEST

/* The backend's fd (io_uring ring, or the pidfd where PIDFD_SELF is missing)
 * is closed by the program and its number reused for the program's file;
 * then fork: the child's fork handler must not close the program's file,
 * and the parent keeps writing and reading it. */
static const char *const fork_cases[][3] = {
    /* name, HAKMEM_FLUSH, seccomp spec */
    {"uring ring fd", "HAKMEM_FLUSH=uring", "none"},
    {"pidfd (no PIDFD_SELF, 6.13-6.14)", "HAKMEM_FLUSH=vector", "pmadv_self=EBADF"},
};

START_TEST(fork_keeps_program_fd) {
  const char *name = fork_cases[_i][0];
  if (_i == 1 && tu_probe_vector_dontneed() != 0) SKIP_TEST("%s: kernel has no vectored MADV_DONTNEED", name);
  char path[128];
  tu_tmpname(path, sizeof path, "fdfork");
  const char *argv[] = {"tests/bin/prog_seccomp_exec", fork_cases[_i][2], "tests/bin/prog_fdreuse",
                        "fork", path, NULL};
  const char *env[] = {fork_cases[_i][1], "HAKMEM_PURGE_DELAY_MS=3600000", NULL};
  tu_run_t r;
  ck_assert_int_eq(tu_run(argv, env, NULL, &r), 0);
  char *text = tu_read_file(path, NULL);
  unlink(path);
  if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == 77) {
    tu_run_free(&r);
    free(text);
    SKIP_TEST("%s: the backend keeps no fd here (it fell back)", name);
  }
  ck_assert_msg(tu_exited_ok(&r), "%s reused by the program's file: status 0x%x; stdout [%s] stderr [%s] file [%s]",
                name, r.status, r.out, r.err, text ? text : "");
  ck_assert_str_eq(text, "before\nchild\nparent\n");
  free(text);
  tu_run_free(&r);
}
END_TEST

/* Without PIDFD_SELF the vector backend flushes through a pidfd of its own.
 * Setting FLUSH=vector again probes again: the new pidfd must not close the
 * old one under a flush that is using it (EBADF, then a fall back to loop, or
 * worse, process_madvise on whatever file took the number). */
typedef struct pidfd_race_s {
  int filter_rc, mode_ok;
  long sets;
  hak_stats_t end;
} pidfd_race_t;

static atomic_int race_stop;

static void *race_flusher(void *arg) {
  (void)arg;
  while (!atomic_load(&race_stop)) {
    void *v[8];
    for (int i = 0; i < 8; i++) {
      v[i] = hak_malloc(300 * KiB);
      if (v[i]) memset(v[i], 1, 4096);
    }
    for (int i = 0; i < 8; i++) hak_free(v[i]);
    hak_flush();
  }
  return NULL;
}

static void pidfd_race_child(void *arg, void *result, size_t size) {
  (void)arg;
  (void)size;
  pidfd_race_t *r = result;
  r->filter_rc = tu_sc_install_spec("pmadv_self=EBADF");
  tu_quiet(NULL);
  hak_option_set("FLUSH", "vector");
  r->mode_ok = strcmp(tu_mode_name(tu_stats().flush_mode), "vector") == 0;
  if (r->filter_rc != 0 || !r->mode_ok) return;
  hak_stats_reset();
  pthread_t t[2];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, race_flusher, NULL);
  for (r->sets = 0; r->sets < 3000; r->sets++) hak_option_set("FLUSH", "vector");
  atomic_store(&race_stop, 1);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  hak_stats(&r->end);
}

START_TEST(pidfd_replaced_while_flushing) {
  if (tu_probe_vector_dontneed() != 0) SKIP_TEST("kernel has no vectored MADV_DONTNEED");
  static pidfd_race_t r;
  int rc = tu_in_child_bounded(pidfd_race_child, NULL, &r, sizeof r, 60);
  ck_assert_msg(rc == 0, "child failed or hung: %d", rc);
  ck_assert_msg(r.filter_rc == 0, "seccomp filter not installed");
  ck_assert_msg(r.mode_ok, "vector does not run with a pidfd of its own");
  ck_assert_msg(r.end.fallbacks == 0 && r.end.flush_errors == 0,
                "no PIDFD_SELF, %ld FLUSH=vector sets while 2 threads flush: %llu fallbacks "
                "(%s), %llu flush errors: the pidfd was closed under a flush", r.sets,
                (unsigned long long)r.end.fallbacks, r.end.fallback_reason,
                (unsigned long long)r.end.flush_errors);
  ck_assert_str_eq(tu_mode_name(r.end.flush_mode), "vector");
}
END_TEST

Suite *test_torture_fds_suite(void) {
  Suite *s = suite_create("torture_fds");
  TCase *tc = tcase_create("fds");
  tcase_set_timeout(tc, 30);
  tcase_add_loop_test(tc, stats_report_not_into_program_file, 0, 2);
  tcase_add_loop_test(tc, fork_keeps_program_fd, 0, 2);
  tcase_add_test(tc, pidfd_replaced_while_flushing);
  suite_add_tcase(s, tc);
  return s;
}
