/* Each release backend (loop, vector, uring, off), chosen by HAKMEM_FLUSH or hak_option_set: syscalls and real release. */
#include <pthread.h>

#include "testutil.h"

enum { NRANGES = 12 };

/* Can this machine run the backend at all? Otherwise the library must fall
 * back to loop, and the test expects that instead. */
static int kernel_supports(const char *mode) {
  if (strcmp(mode, "vector") == 0) return tu_probe_vector_dontneed() == 0;
  if (strcmp(mode, "uring") == 0) return tu_probe_uring() == 0;  /* io_uring_disabled, seccomp */
  return 1;
}

static const char *expected_mode(const char *mode) {
  return kernel_supports(mode) ? mode : "loop";
}

/* NRANGES resident large blocks, freed: NRANGES queued ranges. Returns the
 * first block (still mapped: cached) to look at its residency. */
static void *queue_ranges(void) {
  void *v[NRANGES];
  for (int i = 0; i < NRANGES; i++) {
    v[i] = hak_malloc(512 * KiB);
    ck_assert_ptr_nonnull(v[i]);
    memset(v[i], 0x42, 512 * KiB);
  }
  for (int i = 0; i < NRANGES; i++) hak_free(v[i]);
  return v[0];
}

/* hak_option_set("FLUSH", mode), queue, flush: the system calls made are the
 * backend's, and (dontneed) the pages are gone when hak_flush returns. */
START_TEST(option_set_each_backend) {
  static const char *const modes[] = {"loop", "vector", "uring"};
  const char *mode = modes[_i];
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "ADVICE", "dontneed");
  tu_opt(&o, "FLUSH", mode);
  hak_stats_t s0 = tu_stats();
  ck_assert_str_eq(tu_mode_name(s0.flush_mode), expected_mode(mode));
  ck_assert_int_eq(hak_option_get("FLUSH"), (long long)s0.flush_mode_requested);
  char *first = queue_ranges();
  hak_stats_t a = tu_stats();
  ck_assert_uint_ge(a.pending_ranges, NRANGES);
  hak_flush();
  hak_stats_t b = tu_stats();
  uint64_t ranges = b.ranges_flushed - a.ranges_flushed;
  uint64_t calls = b.flush_syscalls - a.flush_syscalls;
  ck_assert_uint_ge(ranges, NRANGES);
  ck_assert_uint_eq(b.flush_errors, 0);
  ck_assert_uint_eq(b.pending_ranges, 0);
  const char *m = tu_mode_name(b.flush_mode);
  if (strcmp(m, "loop") == 0) {
    ck_assert_uint_eq(calls, ranges);  /* one madvise per range */
    ck_assert_uint_ge(b.madvise_calls - a.madvise_calls, ranges);
    ck_assert_uint_eq(b.process_madvise_calls, a.process_madvise_calls);
  } else if (strcmp(m, "vector") == 0) {
    ck_assert_uint_eq(calls, 1);  /* NRANGES <= IOV_MAX: one process_madvise */
    ck_assert_uint_eq(b.process_madvise_calls - a.process_madvise_calls, 1);
  } else {
    ck_assert_str_eq(m, "uring");
    ck_assert_uint_ge(b.uring_enter_calls - a.uring_enter_calls, 1);
    ck_assert_uint_lt(calls, ranges);  /* batched submission */
    ck_assert_uint_eq(b.process_madvise_calls, a.process_madvise_calls);
  }
  size_t res = tu_resident_pages(first, 512 * KiB);
  ck_assert_msg(res <= 2, "%s: %zu pages still resident after hak_flush", m, res);
  tu_opts_restore(&o);
}
END_TEST

/* One range larger than 4 GiB: io_uring's madvise length is 32 bits, so the
 * backend must split it; every backend must advise all of it. */
START_TEST(range_over_4gib_each_backend) {
  static const char *const modes[] = {"loop", "vector", "uring"};
  const char *mode = modes[_i];
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "CACHE_BYTES", "8G");
  tu_opt(&o, "ADVICE", "dontneed");
  tu_opt(&o, "FLUSH", mode);
  const size_t sz = (size_t)5 << 30;  /* virtual only: a few pages are touched */
  unsigned char *p = hak_malloc(sz);
  if (!p) SKIP_TEST("cannot map 5 GiB here (overcommit policy)");
  static const size_t offs[] = {0, (size_t)1 << 30, ((size_t)4 << 30) + 4096, ((size_t)5 << 30) - 4096};
  for (int i = 0; i < 4; i++) p[offs[i]] = 1;
  hak_free(p);
  hak_stats_t a = tu_stats();
  ck_assert_uint_ge(a.pending_bytes, sz - 2 * MiB);
  hak_flush();
  hak_stats_t b = tu_stats();
  ck_assert_uint_eq(b.flush_errors, 0);
  ck_assert_uint_ge(b.bytes_flushed - a.bytes_flushed, sz - 2 * MiB);
  for (int i = 1; i < 4; i++)  /* (offset 0 may hold a header) */
    ck_assert_msg(tu_resident_pages(p + offs[i], 1) == 0, "%s: page at +%zu still resident", mode,
                  offs[i]);
  hak_trim();
  tu_opts_restore(&o);
}
END_TEST

START_TEST(option_set_off_drops) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "FLUSH", "off");
  ck_assert_str_eq(tu_mode_name(tu_stats().flush_mode), "off");
  char *first = queue_ranges();
  hak_stats_t a = tu_stats();
  hak_flush();
  hak_stats_t b = tu_stats();
  ck_assert_uint_eq(b.flush_syscalls, a.flush_syscalls);
  ck_assert_uint_eq(b.ranges_flushed, a.ranges_flushed);
  ck_assert_uint_eq(b.pending_ranges, 0);
  ck_assert_uint_ge(b.ranges_dropped, NRANGES);
  ck_assert_uint_ge(tu_resident_pages(first, 512 * KiB), 512 * KiB / PAGE - 2);  /* kept */
  tu_opts_restore(&o);
}
END_TEST

START_TEST(option_set_auto_and_bad) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "FLUSH", "auto");
  hak_stats_t s = tu_stats();
  ck_assert_int_eq(s.flush_mode_requested, HAK_FLUSH_AUTO);
  ck_assert_str_eq(tu_mode_name(s.flush_mode), expected_mode("vector"));  /* never "auto" */
  tu_opt(&o, "FLUSH", "loop");
  errno = 0;
  ck_assert_int_eq(hak_option_set("FLUSH", "bogus"), -1);
  ck_assert_int_eq(errno, EINVAL);
  ck_assert_str_eq(tu_mode_name(tu_stats().flush_mode), "loop");  /* unchanged */
  ck_assert_int_eq(hak_option_get("FLUSH"), HAK_FLUSH_LOOP);
  tu_opts_restore(&o);
}
END_TEST

START_TEST(mode_change_flushes_pending_first) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "FLUSH", "loop");
  queue_ranges();
  hak_stats_t a = tu_stats();
  ck_assert_uint_ge(a.pending_ranges, NRANGES);
  tu_opt(&o, "FLUSH", "vector");
  hak_stats_t b = tu_stats();
  ck_assert_uint_eq(b.pending_ranges, 0);
  ck_assert_uint_gt(b.flush_explicit, a.flush_explicit);
  /* They went out through the old backend: one madvise each. */
  ck_assert_uint_ge(b.madvise_calls - a.madvise_calls, NRANGES);
  tu_opts_restore(&o);
}
END_TEST

START_TEST(advice_free_is_used) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "ADVICE", "free");
  ck_assert_int_eq(tu_stats().advice, MADV_FREE);
  tu_opt(&o, "ADVICE", "dontneed");
  ck_assert_int_eq(tu_stats().advice, MADV_DONTNEED);
  errno = 0;
  ck_assert_int_eq(hak_option_set("ADVICE", "sometimes"), -1);
  ck_assert_int_eq(errno, EINVAL);
  ck_assert_int_eq(tu_stats().advice, MADV_DONTNEED);
  tu_opts_restore(&o);
}
END_TEST

/* HAKMEM_FLUSH in the environment picks the backend at start. */
START_TEST(env_forces_backend) {
  static const char *const modes[] = {"loop", "vector", "uring", "off"};
  const char *mode = modes[_i];
  char flush_env[64];
  snprintf(flush_env, sizeof flush_env, "HAKMEM_FLUSH=%s", mode);
  const char *env[] = {flush_env, "HAKMEM_PURGE_DELAY_MS=3600000", "HAKMEM_BATCH_BYTES=16G",
                       "HAKMEM_CACHE_BYTES=1G", NULL};
  const char *argv[] = {"tests/bin/prog_queue", "12", "512", NULL};
  tu_run_t r;
  char *rep = tu_run_report(argv, env, NULL, NULL, &r);
  ck_assert_msg(tu_exited_ok(&r), "prog_queue: 0x%x %s", r.status, r.err);
  ck_assert_msg(rep != NULL, "no report; stderr: %s", r.err);
  char got[32] = "";
  ck_assert_int_eq(tu_json_str(rep, "flush_mode", got, sizeof got), 0);
  ck_assert_str_eq(got, expected_mode(mode));
  char line[64];
  snprintf(line, sizeof line, "flush_mode=%s ", expected_mode(mode));
  ck_assert_msg(strstr(r.out, line) != NULL, "prog saw: %s", r.out);
  long long added = tu_json_need(rep, "ranges_added");
  long long flushed = tu_json_need(rep, "ranges_flushed");
  long long calls = tu_json_need(rep, "flush_syscalls");
  ck_assert_int_eq(tu_json_need(rep, "pending_ranges"), 0);
  if (strcmp(got, "off") == 0) {  /* dropped when queued or at the flush */
    ck_assert_int_ge(added + tu_json_need(rep, "ranges_dropped"), 12);
    ck_assert_int_eq(flushed, 0);
    ck_assert_int_eq(calls, 0);
    ck_assert_int_ge(tu_json_need(rep, "ranges_dropped"), 12);
  } else if (strcmp(got, "loop") == 0) {
    ck_assert_int_ge(added, 12);
    ck_assert_int_eq(calls, flushed);
  } else {
    ck_assert_int_ge(added, 12);
    ck_assert_int_ge(flushed, 12);
    ck_assert_int_lt(calls, flushed);  /* batched: the exit flush is one call or few */
  }
  ck_assert_int_eq(tu_json_need(rep, "flush_errors"), 0);
  free(rep);
  tu_run_free(&r);
}
END_TEST

/* The first use of a backend from several threads at once: its set-up
 * (io_uring ring, pidfd) must happen once, not once per thread into the same
 * state. Each round is a fresh process; a crash or a hang fails. */
static pthread_barrier_t first_use_bar;
static const char *first_use_mode;

static void *first_use_thread(void *arg) {
  (void)arg;
  pthread_barrier_wait(&first_use_bar);
  hak_option_set("FLUSH", first_use_mode);
  for (int i = 0; i < 50; i++) {
    void *p = hak_malloc(600 * KiB);
    if (!p) _exit(4);
    memset(p, 1, 4096);
    hak_free(p);
    hak_flush();
  }
  return NULL;
}

static void first_use_child(void) {
  enum { T = 8 };
  pthread_t t[T];
  pthread_barrier_init(&first_use_bar, NULL, T);
  for (int i = 0; i < T; i++) pthread_create(&t[i], NULL, first_use_thread, NULL);
  for (int i = 0; i < T; i++) pthread_join(t[i], NULL);
  hak_stats_t s;
  hak_stats(&s);
  _exit(s.flush_errors == 0 ? 0 : 3);
}

START_TEST(concurrent_first_use) {
  static const char *const modes[] = {"uring", "vector"};
  first_use_mode = modes[_i];
  ck_assert_int_eq(hak_option_set("FLUSH", "loop"), 0);  /* the child starts from loop */
  int bad = 0, first = 0;
  for (int round = 0; round < 30 && !bad; round++) {
    fflush(NULL);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) first_use_child();
    int st = 0;
    if (tu_wait_bounded(pid, 10, &st) != 0) bad = 1, first = -1;
    else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) bad = 1, first = st;
  }
  ck_assert_msg(!bad || first != -1, "8 threads setting FLUSH=%s at once: hung (killed after 10 s)",
                first_use_mode);
  ck_assert_msg(!bad, "8 threads setting FLUSH=%s at once: child status 0x%x (crash or flush errors)",
                first_use_mode, first);
}
END_TEST

Suite *test_backends_suite(void) {
  Suite *s = suite_create("backends");
  TCase *tc = tcase_create("backends");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, option_set_each_backend, 0, 3);
  tcase_add_loop_test(tc, range_over_4gib_each_backend, 0, 3);
  tcase_add_test(tc, option_set_off_drops);
  tcase_add_test(tc, option_set_auto_and_bad);
  tcase_add_test(tc, mode_change_flushes_pending_first);
  tcase_add_test(tc, advice_free_is_used);
  tcase_add_loop_test(tc, env_forces_backend, 0, 4);
  tcase_add_loop_test(tc, concurrent_first_use, 0, 2);
  suite_add_tcase(s, tc);
  return s;
}
