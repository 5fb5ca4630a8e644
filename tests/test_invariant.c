/* Reuse-before-flush invariant: a queued range is never advised once reused or unmapped (every backend, both advices). */
#include <time.h>

#include "testutil.h"

/* Loop tests run _i over 3 backends x 2 advices (tu_backend_combo). */
static void set_combo(tu_opts_t *o, int i) {
  const char *backend, *advice;
  tu_backend_combo(i, &backend, &advice);
  tu_quiet(o);
  tu_opt(o, "FLUSH", backend);
  tu_opt(o, "ADVICE", advice);
  hak_stats_reset();
}

static void note_combo(int i) {
  const char *backend, *advice;
  tu_backend_combo(i, &backend, &advice);
  hak_stats_t st = tu_stats();
  if (strcmp(tu_mode_name(st.flush_mode), backend) != 0)
    fprintf(stderr, "note: %s/%s ran as %s (fallback: %s)\n", backend, advice,
            tu_mode_name(st.flush_mode), st.fallback_reason);
}

/* A large block is queued on free, handed back by the cache before any flush,
 * rewritten, then the queue is flushed: the new contents must survive. */
START_TEST(large_block_reused_before_flush) {
  tu_opts_t o = {0};
  set_combo(&o, _i);
  const size_t sz = 4 * MiB;
  unsigned char *p = hak_malloc(sz);
  ck_assert_ptr_nonnull(p);
  tu_fill(p, sz, 1);
  hak_stats_t a = tu_stats();
  hak_free(p);
  hak_stats_t b = tu_stats();
  ck_assert_msg(b.pending_ranges > a.pending_ranges, "free did not queue the block (pending %llu)",
                (unsigned long long)b.pending_ranges);
  ck_assert_uint_gt(b.ranges_added, a.ranges_added);

  unsigned char *q = hak_malloc(sz);
  hak_stats_t c = tu_stats();
  ck_assert_ptr_nonnull(q);
  tu_fill(q, sz, 2);
  hak_flush();
  tu_pageout(q, sz);
  ck_assert_pattern(q, sz, 2);  /* the invariant itself */
  /* ...and it held for the right reason: the block came back from the cache
   * while still queued, and the reuse took it out of the queue. */
  ck_assert_msg(q == p, "cache did not hand the same block back (%p, then %p)", (void *)p,
                (void *)q);
  ck_assert_uint_gt(c.cache_hits, b.cache_hits);
  ck_assert_msg(c.ranges_cancelled > b.ranges_cancelled, "reuse did not cancel the queued range");
  ck_assert_uint_lt(c.pending_ranges, b.pending_ranges);
  note_combo(_i);
  hak_free(q);
  tu_opts_restore(&o);
}
END_TEST

/* A queued block evicted from the cache is unmapped; new memory mapped at the
 * same address must not be advised by the next flush. */
START_TEST(large_block_unmapped_before_flush) {
  tu_opts_t o = {0};
  set_combo(&o, _i);
  const size_t sz = 4 * MiB;
  tu_opt(&o, "CACHE_BYTES", "6M");  /* room for one 4 MiB block only */
  unsigned char *a = hak_malloc(sz), *b = hak_malloc(sz);
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_nonnull(b);
  tu_fill(a, sz, 3);
  tu_fill(b, sz, 4);
  hak_free(a);
  hak_stats_t s1 = tu_stats();
  ck_assert_uint_ge(s1.pending_ranges, 1);
  hak_free(b);  /* the cache cannot hold both: one mapping goes away */
  hak_stats_t s2 = tu_stats();

  /* Take the unmapped block's address for memory hakmem does not own. */
  unsigned char *m = MAP_FAILED;
  unsigned char *cand[2] = {a, b};
  int k = 0;
  for (; k < 2 && m == MAP_FAILED; k++) {
    m = mmap(cand[k], sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
             -1, 0);
    if (m != MAP_FAILED && m != cand[k]) {  /* kernels before 4.17 ignore the flag */
      munmap(m, sz);
      m = MAP_FAILED;
    }
  }
  ck_assert_msg(m != MAP_FAILED, "neither freed block was unmapped with CACHE_BYTES=6M");
  if (m == a)  /* a was queued when it went: its range must have left the queue */
    ck_assert_msg(s2.ranges_unqueued > s1.ranges_unqueued, "evicted queued block not taken out of the queue");
  tu_fill(m, sz, 5);
  hak_flush();
  tu_pageout(m, sz);
  ck_assert_pattern(m, sz, 5);
  munmap(m, sz);
  note_combo(_i);
  tu_opts_restore(&o);
}
END_TEST

/* Small objects: fill whole 64 KiB pages, free everything so the empty pages
 * are queued, allocate the same class again, write, flush, verify. */
static void small_pages_case(int combo, size_t objsz) {
  tu_opts_t o = {0};
  set_combo(&o, combo);
  const size_t n = 8 * (64 * KiB / objsz) + 1;  /* well over 8 pages of the class */
  void **v = calloc(n, sizeof *v);
  ck_assert_ptr_nonnull(v);
  for (size_t i = 0; i < n; i++) {
    v[i] = hak_malloc(objsz);
    ck_assert_ptr_nonnull(v[i]);
    tu_fill(v[i], objsz, 10 + i);
  }
  hak_stats_t a = tu_stats();
  for (size_t i = 0; i < n; i++) hak_free(v[i]);
  hak_stats_t b = tu_stats();
  ck_assert_msg(b.pages_released > a.pages_released, "no empty page queued (size %zu)", objsz);
  ck_assert_msg(b.pending_ranges > a.pending_ranges, "pending_ranges did not grow");

  for (size_t i = 0; i < n; i++) {
    v[i] = hak_malloc(objsz);
    ck_assert_ptr_nonnull(v[i]);
    tu_fill(v[i], objsz, 100000 + i);
  }
  hak_stats_t c = tu_stats();
  ck_assert_msg(c.ranges_cancelled > b.ranges_cancelled,
                "reusing queued pages cancelled nothing (size %zu)", objsz);
  hak_flush();
  for (size_t i = 0; i < n; i++) tu_pageout(v[i], objsz);
  for (size_t i = 0; i < n; i++) ck_assert_pattern(v[i], objsz, 100000 + i);
  for (size_t i = 0; i < n; i++) hak_free(v[i]);
  free(v);
  note_combo(combo);
  tu_opts_restore(&o);
}

START_TEST(small_pages_reused_before_flush_1k) { small_pages_case(_i, 1024); }
END_TEST

START_TEST(small_pages_reused_before_flush_8k) { small_pages_case(_i, 8192); }
END_TEST

/* MADV_FREE lets the kernel drop a released page whenever it likes: whatever
 * the allocator kept inside such pages (free lists, headers) must not be
 * trusted afterwards. Release with FREE, force the reclaim, allocate again:
 * blocks must be distinct, disjoint and hold what is written to them. */
START_TEST(lazily_freed_pages_reclaimed_then_reused) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "ADVICE", "free");
  static const size_t sizes[] = {48, 1024, 8192, 600 * KiB};
  const size_t objsz = sizes[_i];
  const size_t n = objsz > 256 * KiB ? 8 : 8 * (64 * KiB / objsz) + 1;
  void **v = calloc(n, sizeof *v);
  for (size_t i = 0; i < n; i++) {
    v[i] = hak_malloc(objsz);
    ck_assert_ptr_nonnull(v[i]);
    tu_fill(v[i], objsz, i);
  }
  for (size_t i = 0; i < n; i++) hak_free(v[i]);
  hak_flush();  /* the empty pages / cached blocks are now lazily freed */
  for (size_t i = 0; i < n; i++) tu_pageout(v[i], objsz);  /* memory pressure */
  for (size_t i = 0; i < n; i++) {
    v[i] = hak_malloc(objsz);
    ck_assert_ptr_nonnull(v[i]);
    tu_fill(v[i], objsz, 7777 + i);
  }
  for (size_t i = 0; i < n; i++) ck_assert_pattern(v[i], objsz, 7777 + i);
  for (size_t i = 0; i < n; i++) hak_free(v[i]);
  free(v);
  tu_opts_restore(&o);
}
END_TEST

/* hak_trim on a queued cached block: the queue ends empty, no range fails
 * (a range advised after its unmap would count as a flush error). */
START_TEST(flush_after_trim_is_harmless) {
  tu_opts_t o = {0};
  set_combo(&o, _i);
  void *p = hak_malloc(3 * MiB);
  ck_assert_ptr_nonnull(p);
  tu_fill(p, 3 * MiB, 6);
  hak_free(p);
  ck_assert_uint_ge(tu_stats().pending_ranges, 1);
  hak_trim();  /* flush then unmap the cached block */
  hak_stats_t s = tu_stats();
  ck_assert_uint_eq(s.pending_ranges, 0);
  ck_assert_uint_eq(s.flush_errors, 0);
  hak_flush();
  ck_assert_uint_eq(tu_stats().flush_errors, 0);
  tu_opts_restore(&o);
}
END_TEST

/* A delay flush takes the ranges that are due and leaves the young ones
 * queued: a young range reused after that flush must still be taken back,
 * although its token is older than the flush. */
START_TEST(young_range_left_by_delay_flush_reused) {
  tu_opts_t o = {0};
  set_combo(&o, _i);
  tu_opt(&o, "PURGE_DELAY_MS", "400");
  const size_t sz = 2 * MiB;
  unsigned char *old = hak_malloc(sz), *young = hak_malloc(sz);
  ck_assert_ptr_nonnull(old);
  ck_assert_ptr_nonnull(young);
  tu_fill(old, sz, 1);
  tu_fill(young, sz, 2);
  hak_free(old);
  struct timespec ts = {0, 350 * 1000000L};
  nanosleep(&ts, NULL);
  hak_free(young);  /* 350 ms younger: not due when the old one is */
  hak_stats_t s;
  TU_WAIT_STATS(s, s.flush_by_delay >= 1);
  ck_assert_msg(s.flush_by_delay >= 1, "no delay flush within 5 s");
  ck_assert_msg(s.pending_ranges >= 1, "the delay flush took the young range too");
  unsigned char *again = hak_malloc(sz);  /* the young block back from the cache */
  ck_assert_ptr_eq(again, young);
  tu_fill(again, sz, 3);
  hak_flush();
  tu_pageout(again, sz);
  ck_assert_pattern(again, sz, 3);
  note_combo(_i);
  hak_free(again);
  tu_opts_restore(&o);
}
END_TEST

Suite *test_invariant_suite(void) {
  Suite *s = suite_create("invariant");
  TCase *tc = tcase_create("reuse");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, large_block_reused_before_flush, 0, 6);
  tcase_add_loop_test(tc, large_block_unmapped_before_flush, 0, 6);
  tcase_add_loop_test(tc, small_pages_reused_before_flush_1k, 0, 6);
  tcase_add_loop_test(tc, small_pages_reused_before_flush_8k, 0, 6);
  tcase_add_loop_test(tc, flush_after_trim_is_harmless, 0, 6);
  tcase_add_loop_test(tc, lazily_freed_pages_reclaimed_then_reused, 0, 4);
  tcase_add_loop_test(tc, young_range_left_by_delay_flush_reused, 0, 6);
  suite_add_tcase(s, tc);
  return s;
}
