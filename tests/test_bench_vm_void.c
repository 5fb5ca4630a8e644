/* bench/vm says a comparison is void, and gives no ratio, when a mode fell back and ran as another. */
#include "testutil.h"

START_TEST(fallback_makes_comparison_void) {
  if (access("bench/vm", X_OK) != 0) ck_abort_msg("bench/vm missing: build it first");
  /* process_madvise refused: vector falls back and runs as loop. */
  const char *argv[] = {"tests/bin/prog_seccomp_exec", "pmadv=ENOSYS", "bench/vm", "--quick",
                        "--flush=loop,vector", "--iters", "2", "--blocks", "16", NULL};
  tu_run_t r;
  ck_assert_int_eq(tu_run(argv, NULL, NULL, &r), 0);
  ck_assert_msg(tu_exited_ok(&r), "bench/vm under the filter: 0x%x\n%s%s", r.status, r.out, r.err);
  ck_assert_msg(strstr(r.out, "vector vs loop: comparison void") != NULL,
                "no 'comparison void' line:\n%s", r.out);
  ck_assert_msg(strstr(r.out, "less time") == NULL && strstr(r.out, "fewer flush syscalls") == NULL,
                "a ratio was printed for a mode that ran as another:\n%s", r.out);
  ck_assert_msg(strstr(r.out, "note: vector ran as loop") != NULL, "no fallback note:\n%s", r.out);
  tu_run_free(&r);
}
END_TEST

Suite *test_bench_vm_void_suite(void) {
  Suite *s = suite_create("bench_vm_void");
  TCase *tc = tcase_create("void");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, fallback_makes_comparison_void);
  suite_add_tcase(s, tc);
  return s;
}
