/* Refaults timed in the program: released memory handed out again is now and then faulted in by hakmem, timed, and refines the policy's refault cost; other memory is untouched, and a kernel that refuses MADV_POPULATE_WRITE turns it off. */
#include <errno.h>
#include <sys/mman.h>

#include "testutil.h"
#include "tu_seccomp.h"

/* Memory given back within 5 ms, and a live neighbour to watch. */
static void released_soon(tu_opts_t *o) {
  tu_quiet(o);
  tu_opt(o, "POLICY", "adaptive");
  tu_opt(o, "PURGE_CAP_MS", "5");
}

/* `count` blocks of `size` freed, given back (30 ms), and taken again, until
 * a refault has been timed (or 3 s); the neighbour must keep its bytes.
 * Returns the refaults timed. */
static uint64_t reuse_released(size_t size, int count, const unsigned char *neighbour, size_t nsize) {
  uint64_t end = tu_now_ms() + 3000, start = tu_stats().refault_samples;
  hak_stats_t s = tu_stats();
  unsigned char *v[16];
  while (tu_now_ms() < end && s.refault_samples == start) {
    for (int i = 0; i < count; i++) {
      v[i] = hak_malloc(size);
      ck_assert_ptr_nonnull(v[i]);
      memset(v[i], 0xab, size);
    }
    for (int i = 0; i < count; i++) hak_free(v[i]);
    tu_sleep_ms(30);
    s = tu_stats();
  }
  for (size_t i = 0; i < nsize; i++)
    ck_assert_msg(neighbour[i] == (unsigned char)i, "a live block changed at byte %zu", i);
  return s.refault_samples - start;
}

/* Medium pages (ten 200 KiB blocks fill two 1 MiB pages: the heap keeps the
 * last empty page of a class, and gives back the other) and large blocks of
 * 4 KiB pages (512 KiB): both are timed, and the policy's 4 KiB figure moves
 * off the start one. */
START_TEST(refault_timed_when_released_memory_is_reused) {
  if (madvise(NULL, 0, MADV_POPULATE_WRITE) != 0 && errno == EINVAL)
    SKIP_TEST("no MADV_POPULATE_WRITE (Linux before 5.14)");
  tu_opts_t o = {0};
  released_soon(&o);
  enum { NB = 64 * 1024 };
  unsigned char *neighbour = hak_malloc(NB);
  for (size_t i = 0; i < NB; i++) neighbour[i] = (unsigned char)i;
  ck_assert_msg(reuse_released(200 * KiB, 10, neighbour, NB) > 0, "no refault timed on a medium page in 3 s");
  ck_assert_msg(reuse_released(512 * KiB, 1, neighbour, NB) > 0, "no refault timed on a large block in 3 s");
  hak_stats_t s;
  TU_WAIT_STATS(s, s.refault_ps_small != s.refault_ps_small_start);
  ck_assert_msg(s.refault_ps_small > 0 && s.refault_ps_small < 1e6, "4 KiB refault %.1f ps/byte",
                s.refault_ps_small);
  ck_assert_msg(s.refault_ps_small != s.refault_ps_small_start,
                "%llu refaults timed, and the policy still uses the start figure %.1f",
                (unsigned long long)s.refault_samples, s.refault_ps_small_start);
  hak_free(neighbour);
  tu_opts_restore(&o);
}
END_TEST

typedef struct {
  int filter_rc;
  uint64_t timed, reused_released;
  int errno_kept;
  int zero;
} refused_t;

/* In a child whose madvise(MADV_POPULATE_WRITE) fails with EINVAL, as
 * before Linux 5.14: memory is handed out as before, errno is the
 * program's, and nothing is timed. */
static void refused_child(void *arg, void *result, size_t size) {
  (void)arg;
  (void)size;
  refused_t *r = result;
  tu_sc_rule_t rule = {.nr = SYS_madvise, .arg = 3, .value = MADV_POPULATE_WRITE, .err = EINVAL};
  r->filter_rc = tu_sc_install(&rule, 1);
  tu_opts_t o = {0};
  released_soon(&o);
  r->errno_kept = r->zero = 1;
  for (int i = 0; i < 20; i++) {
    errno = 1234;
    unsigned char *p = hak_calloc(1, 512 * KiB);
    if (errno != 1234) r->errno_kept = 0;
    for (size_t k = 0; k < 512 * KiB; k += 4096)
      if (p[k]) r->zero = 0;
    memset(p, 0xab, 512 * KiB);
    hak_free(p);  /* (its registry node may come from a released page) */
    if (errno != 1234) r->errno_kept = 0;
    tu_sleep_ms(30);
  }
  hak_stats_t s = tu_stats();
  r->timed = s.refault_samples;
  r->reused_released = s.ranges_reused_released;
}

START_TEST(refused_populate_turns_timing_off) {
  static refused_t r;
  int rc = tu_in_child_bounded(refused_child, NULL, &r, sizeof r, 30);
  ck_assert_msg(rc == 0, "child failed or hung: %d", rc);
  ck_assert_msg(r.filter_rc == 0, "seccomp filter not installed");
  ck_assert_msg(r.reused_released > 0, "no released block was reused: nothing tried to time it");
  ck_assert_msg(r.errno_kept, "a refused MADV_POPULATE_WRITE changed the program's errno");
  ck_assert_msg(r.zero, "calloc returned memory that is not zero");
  ck_assert_uint_eq(r.timed, 0);
}
END_TEST

Suite *test_refault_sample_suite(void) {
  Suite *s = suite_create("refault_sample");
  TCase *tc = tcase_create("refault_sample");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, refault_timed_when_released_memory_is_reused);
  tcase_add_test(tc, refused_populate_turns_timing_off);
  suite_add_tcase(s, tc);
  return s;
}
