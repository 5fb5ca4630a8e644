/* Page choice: a new page is taken where the kernel still has the memory (queued, not flushed), in the heap's segments or the segment cache, before memory it must fault in; reused memory keeps no stale data of a live block; an empty page stays only when it is its class's last, and of medium (1 MiB) pages only the heap's last two. */
#include <sys/resource.h>

#include "testutil.h"
#include "internal.h"  /* HAK_KEPT_MEDIUM */

static long minor_faults(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

enum { BLOCK = 112 * KiB, BURST = 90 };  /* ten 1 MiB pages of nine blocks: three segments */

/* A burst of blocks, written in full; then every one freed. Returns the
 * minor faults it took. */
static long burst(unsigned char fill) {
  static unsigned char *v[BURST];
  long before = minor_faults();
  for (int i = 0; i < BURST; i++) {
    v[i] = hak_malloc(BLOCK);
    ck_assert_ptr_nonnull(v[i]);
    memset(v[i], fill, BLOCK);
  }
  long faults = minor_faults() - before;
  for (int i = 0; i < BURST; i++) {
    for (size_t k = 0; k < BLOCK; k += 4096) ck_assert_int_eq(v[i][k], fill);
    hak_free(v[i]);
  }
  return faults;
}

/* Bursts separated by a free of everything, as a server's requests come:
 * the segments that empty go to the cache, one stays with the heap (it
 * holds the class's kept page). Nothing is flushed (a delay of an hour),
 * so after the first burst every page the bursts need is resident: the
 * next ones must not fault in memory the first did not touch. Taking the
 * heap's own segment first, its untouched pages were faulted in while
 * resident ones waited in the cache: "burst 2 took 504 minor faults (the first 2535)". */
START_TEST(bursts_reuse_resident_pages) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  long first = burst(1);
  ck_assert_msg(first >= BURST * (long)(BLOCK / 4096) / 2, "burst 1 took only %ld faults", first);
  for (int b = 2; b <= 5; b++) {
    long faults = burst((unsigned char)b);
    ck_assert_msg(faults < 64, "burst %d took %ld minor faults (the first took %ld)", b, faults, first);
  }
  hak_stats_t s = tu_stats();
  ck_assert_uint_eq(s.ranges_flushed, 0);
  tu_opts_restore(&o);
}
END_TEST

/* The same with the memory given back at once (a delay of 0): then no page
 * is resident, and pages come from the heap and the cache as before, their
 * memory zeroed by the kernel and written again by the program. */
START_TEST(bursts_after_release_still_work) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "PURGE_DELAY_MS", "0");
  for (int b = 1; b <= 4; b++) {
    burst((unsigned char)b);
    hak_flush();
  }
  hak_stats_t s = tu_stats();
  ck_assert_uint_gt(s.ranges_flushed, 0);
  tu_opts_restore(&o);
}
END_TEST

/* A block of a class taken and freed over and over empties the class's only
 * page each time: it stays, nothing is queued. The class's current page,
 * emptied while another page of the class has room, goes back. */
START_TEST(empty_page_stays_when_it_is_the_last) {
  enum { SIZE = 2900, N = 4 * (64 * KiB / 3072) };  /* four 64 KiB pages of 3 KiB blocks */
  static void *v[N];
  hak_stats_t a = tu_stats();
  for (int i = 0; i < 10000; i++) {
    void *p = hak_malloc(SIZE);
    ck_assert_ptr_nonnull(p);
    memset(p, i, SIZE);
    hak_free(p);
  }
  hak_stats_t b = tu_stats();
  ck_assert_msg(b.pages_released == a.pages_released && b.ranges_added == a.ranges_added,
                "%llu pages released, %llu ranges queued by one block taken and freed",
                (unsigned long long)(b.pages_released - a.pages_released),
                (unsigned long long)(b.ranges_added - a.ranges_added));
  for (int i = 0; i < N; i++) ck_assert_ptr_nonnull(v[i] = hak_malloc(SIZE));
  uintptr_t current = (uintptr_t)v[N - 1] >> 16;  /* the page the class allocates from */
  ck_assert((uintptr_t)v[0] >> 16 != current);
  hak_free(v[0]);  /* the first page has room again: it joins the class's list */
  v[0] = NULL;
  b = tu_stats();
  for (int i = 0; i < N; i++)
    if (v[i] && (uintptr_t)v[i] >> 16 == current) {
      hak_free(v[i]);
      v[i] = NULL;
    }
  hak_stats_t c = tu_stats();
  ck_assert_msg(c.pages_released == b.pages_released + 1,
                "the emptied current page, not the class's last: %llu pages released",
                (unsigned long long)(c.pages_released - b.pages_released));
  for (int i = 0; i < N; i++) hak_free(v[i]);
}
END_TEST

/* One block in each of six medium classes, then all freed: each empties its
 * class's only page, and the heap keeps two of those 1 MiB pages; a block
 * taken and freed again in a loop keeps its page, queueing nothing. */
START_TEST(two_empty_medium_pages_stay) {
  static const size_t sizes[] = {20 * KiB, 40 * KiB, 70 * KiB, 100 * KiB, 150 * KiB, 200 * KiB};
  enum { N = sizeof sizes / sizeof sizes[0] };
  void *v[N];
  for (int i = 0; i < N; i++) ck_assert_ptr_nonnull(v[i] = hak_malloc(sizes[i]));
  hak_stats_t a = tu_stats();
  for (int i = 0; i < N; i++) hak_free(v[i]);
  hak_stats_t b = tu_stats();
  ck_assert_msg(b.pages_released - a.pages_released == N - HAK_KEPT_MEDIUM,
                "%llu of %d emptied medium pages given back",
                (unsigned long long)(b.pages_released - a.pages_released), N);
  hak_free(hak_malloc(40 * KiB));  /* its page joins the two kept: the oldest goes */
  b = tu_stats();
  for (int i = 0; i < 1000; i++) {
    void *p = hak_malloc(40 * KiB);
    ck_assert_ptr_nonnull(p);
    memset(p, i, 4096);
    hak_free(p);
  }
  hak_stats_t c = tu_stats();
  ck_assert_msg(c.pages_released == b.pages_released, "a 40 KiB block taken and freed gave back %llu pages",
                (unsigned long long)(c.pages_released - b.pages_released));
}
END_TEST

Suite *test_page_choice_suite(void) {
  Suite *s = suite_create("page_choice");
  TCase *tc = tcase_create("page_choice");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, bursts_reuse_resident_pages);
  tcase_add_test(tc, bursts_after_release_still_work);
  tcase_add_test(tc, empty_page_stays_when_it_is_the_last);
  tcase_add_test(tc, two_empty_medium_pages_stay);
  suite_add_tcase(s, tc);
  return s;
}
