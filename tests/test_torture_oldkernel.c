/* Simulated older kernels: suites re-run under seccomp filters that fail process_madvise and/or io_uring_setup must pass, skipping what needs the missing call (tests/oldkernel.sh runs the whole suite so). */
#include "testutil.h"

/* What each filter stands for. */
static const char *const filters[][2] = {
    {"pmadv=EINVAL", "5.10-6.12: process_madvise refuses MADV_DONTNEED"},
    {"pmadv=ENOSYS,uring=ENOSYS", "before 5.6: neither process_madvise nor io_uring"},
    {"pmadv=EPERM,uring=EPERM", "a sandbox (or io_uring_disabled=2) denies both"},
    {"pmadv=ENOMEM", "process_madvise fails with ENOMEM"},
    {"uring=ENOSYS", "io_uring compiled out, process_madvise works"},
    {"pmadv_self=EBADF", "6.13-6.14: no PIDFD_SELF, a real pidfd works"},
};

/* A representative subset (the whole suite under every filter takes minutes:
 * tests/oldkernel.sh): the suites that choose, use or fall back from a
 * backend. */
static const char *const suites[] = {"backends", "fallback", "fork", "invariant",
                                     "invariant_mt", "triggers", "stats", "options"};

START_TEST(suites_pass_under_filter) {
  const char *spec = filters[_i][0], *what = filters[_i][1];
  char fails[3000] = "";
  size_t len = 0;
  int total = 0, bad = 0, skips = 0;
  /* Our own narrowing (CK_RUN_SUITE=torture_oldkernel) must not reach the
   * nested runner, which reads the first of duplicate variables. */
  unsetenv("CK_RUN_SUITE");
  unsetenv("CK_RUN_CASE");
  unsetenv("CK_INCLUDE_TAGS");
  unsetenv("CK_EXCLUDE_TAGS");
  for (size_t k = 0; k < sizeof suites / sizeof suites[0]; k++) {
    char suite_env[64];
    snprintf(suite_env, sizeof suite_env, "CK_RUN_SUITE=%s", suites[k]);
    const char *env[] = {suite_env, "HAK_TEST_NESTED=1", "CK_VERBOSITY=normal", "CK_FORK=yes", NULL};
    const char *argv[] = {"tests/bin/prog_seccomp_exec", spec, "tests/bin/check_hakmem", NULL};
    tu_run_t r;
    ck_assert_int_eq(tu_run(argv, env, NULL, &r), 0);
    int checks = 0, f = 0, e = 0;
    const char *sum = strstr(r.out, "Checks: ");
    if (sum) sscanf(sum, "Checks: %d, Failures: %d, Errors: %d", &checks, &f, &e);
    skips += tu_count_substr(r.err, "SKIP: ") + tu_count_substr(r.out, "SKIP: ");
    total += checks;
    if (!sum || f + e > 0 || !tu_exited_ok(&r)) {
      bad++;
      len += (size_t)snprintf(fails + len, sizeof fails - len, "\n  suite %s: %s", suites[k],
                              sum ? "" : "no summary; ");
      /* the failure lines: "file:line:F:case:test:i: message" */
      for (const char *l = r.out; l && *l && len < sizeof fails - 300;) {
        const char *nl = strchr(l, '\n');
        size_t n = nl ? (size_t)(nl - l) : strlen(l);
        if (memmem(l, n, ":F:", 3) || memmem(l, n, ":E:", 3))
          len += (size_t)snprintf(fails + len, sizeof fails - len, "\n    %.*s", (int)(n < 240 ? n : 240), l);
        l = nl ? nl + 1 : NULL;
      }
    }
    tu_run_free(&r);
  }
  fprintf(stderr, "note: torture_oldkernel [%s] (%s): %d checks in %zu suites, %d skipped\n", spec,
          what, total, sizeof suites / sizeof suites[0], skips);
  ck_assert_msg(bad == 0, "under the filter %s (%s), %d suites failed:%s", spec, what, bad, fails);
  ck_assert_int_gt(total, 0);
}
END_TEST

Suite *test_torture_oldkernel_suite(void) {
  Suite *s = suite_create("torture_oldkernel");
  if (getenv("HAK_TEST_NESTED")) return s;  /* already inside a filtered run: do not recurse */
  TCase *tc = tcase_create("oldkernel");
  tcase_set_timeout(tc, 300);
  tcase_add_loop_test(tc, suites_pass_under_filter, 0, (int)(sizeof filters / sizeof filters[0]));
  suite_add_tcase(s, tc);
  return s;
}
