/* A range the kernel itself refuses (mlocked memory) is counted as a flush error; the backend stays and the other ranges are released. */
#include <sys/resource.h>

#include "testutil.h"

enum { NBLOCKS = 5, LOCKED = 2 };
#define BLOCK (1 * MiB)

/* Five large blocks queued for release, the middle one mlocked: MADV_DONTNEED
 * on locked memory is EINVAL through every syscall. */
START_TEST(refused_range_keeps_backend) {
  static const char *const modes[] = {"vector", "uring", "loop"};
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "ADVICE", "dontneed");
  tu_opt(&o, "FLUSH", modes[_i]);
  hak_stats_t s0 = tu_stats();
  if (strcmp(tu_mode_name(s0.flush_mode), modes[_i]) != 0)
    SKIP_TEST("%s is not available here (%s)", modes[_i], s0.fallback_reason);
  unsigned char *b[NBLOCKS];
  for (int i = 0; i < NBLOCKS; i++) {
    b[i] = hak_malloc(BLOCK);
    ck_assert_ptr_nonnull(b[i]);
    memset(b[i], 0x5a, BLOCK);
  }
  /* The raw syscall: ASan's mlock interceptor does nothing. */
  if (syscall(SYS_mlock, b[LOCKED], BLOCK) != 0) SKIP_TEST("mlock: %s", strerror(errno));
  for (int i = 0; i < NBLOCKS; i++) hak_free(b[i]);
  hak_stats_t before = tu_stats();
  hak_flush();
  hak_stats_t after = tu_stats();
  ck_assert_msg(after.flush_errors - before.flush_errors == 1, "flush errors %llu, want 1",
                (unsigned long long)(after.flush_errors - before.flush_errors));
  ck_assert_msg(strcmp(tu_mode_name(after.flush_mode), modes[_i]) == 0,
                "the kernel refusing one range made %s fall back to %s (%s)", modes[_i],
                tu_mode_name(after.flush_mode), after.fallback_reason);
  ck_assert_uint_eq(after.fallbacks, before.fallbacks);
  ck_assert_uint_eq(after.ranges_flushed - before.ranges_flushed, NBLOCKS - 1);
  for (int i = 0; i < NBLOCKS; i++) {
    size_t res = tu_resident_pages(b[i], BLOCK);
    if (i == LOCKED) ck_assert_uint_eq(res, BLOCK / PAGE);
    else ck_assert_msg(res == 0, "block %d: %zu pages still resident", i, res);
  }
  syscall(SYS_munlock, b[LOCKED], BLOCK);
  /* The refused range stays usable memory: the next flush of it succeeds. */
  unsigned char *again = hak_malloc(BLOCK);
  tu_fill(again, BLOCK, 7);
  hak_free(again);
  hak_flush();
  ck_assert_pattern(again, 0, 7);  /* nothing to check after release; the flush must not err */
  ck_assert_uint_eq(tu_stats().flush_errors, after.flush_errors);
  tu_opts_restore(&o);
}
END_TEST

Suite *test_kernel_refusal_suite(void) {
  Suite *s = suite_create("kernel_refusal");
  TCase *tc = tcase_create("kernel_refusal");
  tcase_set_timeout(tc, 30);
  tcase_add_loop_test(tc, refused_range_keeps_backend, 0, 3);
  suite_add_tcase(s, tc);
  return s;
}
