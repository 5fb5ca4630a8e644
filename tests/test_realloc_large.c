/* realloc of a large block moves or resizes its mapping (mremap): contents kept, no copy left resident in the cache, a shrunk tail given back at once. */
#include <stdint.h>

#include "testutil.h"

/* Resident bytes of the whole process. */
static size_t rss_bytes(void) {
  long pages = tu_statm_resident_pages();
  ck_assert_int_gt(pages, 0);
  return (size_t)pages * PAGE;
}

/* A block grown by doubling from 512 KiB to 64 MiB keeps its contents, and no
 * earlier size of it stays behind: nothing enters the large-block cache, and
 * growing a 32 MiB block whose new half is not touched adds far less than
 * 32 MiB of resident memory (a copy would hold both). */
START_TEST(grow_by_doubling_keeps_no_old_copy) {
  tu_opts_t o = {0};
  tu_quiet(&o);  /* nothing is given back by time: an old copy would stay resident */
  size_t size = 512 * KiB;
  uint8_t *p = hak_malloc(size);
  ck_assert_ptr_nonnull(p);
  tu_fill_fast(p, size, 7);
  while (size < 64 * MiB) {
    size_t next = size * 2;
    hak_stats_t a = tu_stats();
    size_t rss_a = rss_bytes();
    uint8_t *q = hak_realloc(p, next);
    size_t rss_b = rss_bytes();
    hak_stats_t b = tu_stats();
    ck_assert_ptr_nonnull(q);
    ck_assert_uint_ge(hak_usable_size(q), next);
    long bad = tu_check_fast(q, size, 7);
    ck_assert_msg(bad < 0, "realloc %zu -> %zu lost byte %ld", size, next, bad);
    ck_assert_msg(b.free_large == a.free_large && b.cache_bytes == a.cache_bytes,
                  "realloc %zu -> %zu freed the old block into the cache (%llu -> %llu bytes)",
                  size, next, (unsigned long long)a.cache_bytes,
                  (unsigned long long)b.cache_bytes);
    ck_assert_msg(rss_b < rss_a + size / 4 + 256 * KiB,
                  "realloc %zu -> %zu: resident memory grew by %zu KiB", size, next,
                  (rss_b - rss_a) / KiB);
    if (next >= 2 * MiB)
      ck_assert_msg(((uintptr_t)q & (2 * MiB - 1)) == 0, "a %zu-byte block at %p", next, q);
    tu_fill_fast(q, next, 7);
    p = q;
    size = next;
  }
  hak_free(p);
  tu_opts_restore(&o);
}
END_TEST

/* Shrinking a 64 MiB block to 1 MiB keeps the first MiB and gives the rest
 * back at once, without caching the big block. */
START_TEST(shrink_gives_tail_back) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  uint8_t *p = hak_malloc(64 * MiB);
  ck_assert_ptr_nonnull(p);
  tu_fill_fast(p, 64 * MiB, 9);
  hak_stats_t a = tu_stats();
  size_t rss_a = rss_bytes();
  uint8_t *q = hak_realloc(p, 1 * MiB);
  size_t rss_b = rss_bytes();
  hak_stats_t b = tu_stats();
  ck_assert_ptr_nonnull(q);
  long bad = tu_check_fast(q, 1 * MiB, 9);
  ck_assert_msg(bad < 0, "realloc 64 MiB -> 1 MiB lost byte %ld", bad);
  ck_assert_uint_eq(b.cache_bytes, a.cache_bytes);
  ck_assert_msg(rss_b + 48 * MiB < rss_a, "resident memory %zu KiB -> %zu KiB", rss_a / KiB,
                rss_b / KiB);
  hak_free(q);
  tu_opts_restore(&o);
}
END_TEST

/* A block taken from the cache had its release queued and then cancelled:
 * moving it leaves nothing queued, and a flush afterwards does not touch it.
 * The same holds for every backend and advice. */
START_TEST(grow_reused_block_then_flush) {
  const char *backend, *advice;
  tu_opts_t o = {0};
  tu_quiet_combo(&o, _i, &backend, &advice);
  uint8_t *p = hak_malloc(3 * MiB);
  ck_assert_ptr_nonnull(p);
  hak_free(p);  /* cached, its range queued */
  uint8_t *r = hak_malloc(3 * MiB);  /* the same block: its range leaves the queue */
  ck_assert_ptr_nonnull(r);
  hak_stats_t a = tu_stats();
  ck_assert_uint_eq(a.pending_ranges, 0);
  tu_fill_fast(r, 3 * MiB, 11);
  uint8_t *q = hak_realloc(r, 40 * MiB);
  ck_assert_ptr_nonnull(q);
  hak_stats_t b = tu_stats();
  ck_assert_uint_eq(b.pending_ranges, 0);
  ck_assert_uint_eq(b.cache_bytes, a.cache_bytes);
  tu_fill_fast(q + 3 * MiB, 37 * MiB, 12);
  hak_flush();
  tu_pageout(q, 40 * MiB);
  long bad = tu_check_fast(q, 3 * MiB, 11);
  ck_assert_msg(bad < 0, "%s/%s: byte %ld of the moved block changed", backend, advice, bad);
  bad = tu_check_fast(q + 3 * MiB, 37 * MiB, 12);
  ck_assert_msg(bad < 0, "%s/%s: byte %ld of the grown part changed", backend, advice, bad);
  hak_free(q);
  tu_opts_restore(&o);
}
END_TEST

Suite *test_realloc_large_suite(void) {
  Suite *s = suite_create("realloc_large");
  TCase *tc = tcase_create("realloc_large");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, grow_by_doubling_keeps_no_old_copy);
  tcase_add_test(tc, shrink_gives_tail_back);
  tcase_add_loop_test(tc, grow_reused_block_then_flush, 0, 6);
  suite_add_tcase(s, tc);
  return s;
}
