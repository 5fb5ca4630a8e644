/* Fallback to loop when vector/uring cannot work: a seccomp filter makes process_madvise and io_uring fail. */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>

#include "testutil.h"

enum { NRANGES = 10 };

/* Raw BPF: the release syscalls of vector and uring return err, all else runs. */
static int deny_release_syscalls(int err) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_madvise, 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_setup, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_enter, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
  };
  struct sock_fprog prog = {(unsigned short)(sizeof f / sizeof f[0]), f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}

typedef struct fb_arg_s {
  const char *mode;  /* what we ask for */
  int err;           /* what the filter returns */
  int late;          /* set the mode before the filter: the submit fails, not the probe */
} fb_arg_t;

typedef struct fb_result_s {
  int filter_rc;
  int set_rc;
  hak_stats_t after_set;
  hak_stats_t before_flush;
  hak_stats_t after_flush;
  size_t resident_after;  /* pages of the first queued block after the flush */
} fb_result_t;

static void queue_ranges(void **first) {
  void *v[NRANGES];
  for (int i = 0; i < NRANGES; i++) {
    v[i] = hak_malloc(512 * KiB);
    if (!v[i]) _exit(4);
    memset(v[i], 0x42, 512 * KiB);
  }
  for (int i = 0; i < NRANGES; i++) hak_free(v[i]);
  *first = v[0];
}

/* Runs in a child: the filter stays with that process only. */
static void fallback_child(void *arg, void *result, size_t size) {
  (void)size;
  fb_arg_t *a = arg;
  fb_result_t *r = result;
  tu_quiet(NULL);
  hak_option_set("ADVICE", "dontneed");
  if (a->late) r->set_rc = hak_option_set("FLUSH", a->mode);
  r->filter_rc = deny_release_syscalls(a->err);
  if (!a->late) r->set_rc = hak_option_set("FLUSH", a->mode);
  hak_stats(&r->after_set);
  void *first;
  queue_ranges(&first);
  hak_stats(&r->before_flush);
  hak_flush();
  hak_stats(&r->after_flush);
  r->resident_after = tu_resident_pages(first, 512 * KiB);
}

static void check_fallback(const fb_arg_t *a, const fb_result_t *r) {
  ck_assert_msg(r->filter_rc == 0, "seccomp filter not installed");
  ck_assert_int_eq(r->set_rc, 0);
  const hak_stats_t *s = &r->after_flush;
  ck_assert_msg(strcmp(tu_mode_name(s->flush_mode), "loop") == 0,
                "%s%s with errno %d: mode is %s, want loop", a->late ? "late " : "", a->mode,
                a->err, tu_mode_name(s->flush_mode));
  ck_assert_uint_ge(s->fallbacks, 1);
  ck_assert_int_eq(s->fallback_errno, a->err);
  ck_assert_msg(s->fallback_reason[0] != '\0', "fallback_reason empty");
  /* Everything queued is still released, one madvise per range. */
  const hak_stats_t *b = &r->before_flush;
  uint64_t ranges = s->ranges_flushed - b->ranges_flushed;
  ck_assert_uint_ge(ranges, NRANGES);
  ck_assert_uint_eq(s->pending_ranges, 0);
  ck_assert_uint_eq(s->ranges_dropped, b->ranges_dropped);
  ck_assert_msg(r->resident_after <= 2, "%zu pages still resident after the fallback flush",
                r->resident_after);
  ck_assert_uint_eq(s->flush_errors, 0);  /* madvise took every range */
  if (!a->late) ck_assert_uint_eq(s->flush_syscalls - b->flush_syscalls, ranges);
}

/* _i: mode (vector, uring) x errno (ENOSYS, EPERM) */
START_TEST(probe_fails_falls_back) {
  fb_arg_t a = {_i % 2 ? "uring" : "vector", _i / 2 ? EPERM : ENOSYS, 0};
  fb_result_t r;
  tu_in_child(fallback_child, &a, &r, sizeof r);
  check_fallback(&a, &r);
  ck_assert_msg(strcmp(tu_mode_name(r.after_set.flush_mode), "loop") == 0,
                "the probe did not catch the failure: mode %s right after the set",
                tu_mode_name(r.after_set.flush_mode));
}
END_TEST

/* The backend worked when chosen, then its syscall starts failing: the flush
 * must still give every range back (through loop) and switch for good.
 * ENOSYS and EPERM say at once that the backend cannot work here; ENOMEM and
 * EINVAL could be about one range, so each refused range is retried with
 * madvise, and when madvise takes what the backend refused, a few in a row,
 * the backend is what failed. _i: mode (vector, uring) x errno. */
static const int late_errs[] = {ENOSYS, EPERM, ENOMEM, EINVAL};

START_TEST(submit_fails_falls_back) {
  fb_arg_t a = {_i % 2 ? "uring" : "vector", late_errs[_i / 2], 1};
  if (strcmp(a.mode, "vector") == 0 && tu_probe_vector_dontneed() != 0)
    SKIP_TEST("kernel has no vectored MADV_DONTNEED");
  if (strcmp(a.mode, "uring") == 0 && tu_probe_uring() != 0)
    SKIP_TEST("io_uring_setup fails here (%s)", strerror(tu_probe_uring()));
  fb_result_t r;
  tu_in_child(fallback_child, &a, &r, sizeof r);
  ck_assert_msg(strcmp(tu_mode_name(r.after_set.flush_mode), a.mode) == 0,
                "%s did not start (mode %s) before the filter", a.mode,
                tu_mode_name(r.after_set.flush_mode));
  check_fallback(&a, &r);
}
END_TEST

/* The probe at start: HAKMEM_FLUSH=vector in a process that cannot use it. */
static void filter_hook(void *arg) {
  if (deny_release_syscalls(*(int *)arg) != 0) _exit(125);
}

START_TEST(startup_probe_falls_back) {
  static const char *const modes[] = {"vector", "uring", "auto"};
  char flush_env[64];
  snprintf(flush_env, sizeof flush_env, "HAKMEM_FLUSH=%s", modes[_i]);
  const char *env[] = {flush_env, "HAKMEM_PURGE_DELAY_MS=3600000", "HAKMEM_CACHE_BYTES=1G", NULL};
  const char *argv[] = {"tests/bin/prog_queue", "10", "512", NULL};
  int err = ENOSYS;
  tu_run_t r;
  char *rep = tu_run_report(argv, env, filter_hook, &err, &r);
  ck_assert_msg(tu_exited_ok(&r), "prog_queue: 0x%x %s", r.status, r.err);
  ck_assert_msg(rep != NULL, "no report; stderr %s", r.err);
  char mode[32] = "";
  ck_assert_int_eq(tu_json_str(rep, "flush_mode", mode, sizeof mode), 0);
  ck_assert_str_eq(mode, "loop");
  long long flushed = tu_json_need(rep, "ranges_flushed");
  ck_assert_int_ge(flushed, 10);
  ck_assert_int_eq(tu_json_need(rep, "flush_syscalls"), flushed);
  ck_assert_int_eq(tu_json_need(rep, "pending_ranges"), 0);
  if (_i < 2) {  /* asked explicitly: the fall back is recorded */
    ck_assert_int_ge(tu_json_need(rep, "fallbacks"), 1);
    ck_assert_int_eq(tu_json_need(rep, "fallback_errno"), ENOSYS);
  }
  free(rep);
  tu_run_free(&r);
}
END_TEST

Suite *test_fallback_suite(void) {
  Suite *s = suite_create("fallback");
  TCase *tc = tcase_create("fallback");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, probe_fails_falls_back, 0, 4);
  tcase_add_loop_test(tc, submit_fails_falls_back, 0, 8);
  tcase_add_loop_test(tc, startup_probe_falls_back, 0, 3);
  suite_add_tcase(s, tc);
  return s;
}
