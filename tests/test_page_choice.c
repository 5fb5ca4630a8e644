/* Page choice: a new page is taken where the kernel still has the memory (queued, not flushed), in the heap's segments or the segment cache, before memory it must fault in; reused memory keeps no stale data of a live block. */
#include <sys/resource.h>

#include "testutil.h"

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

Suite *test_page_choice_suite(void) {
  Suite *s = suite_create("page_choice");
  TCase *tc = tcase_create("page_choice");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, bursts_reuse_resident_pages);
  tcase_add_test(tc, bursts_after_release_still_work);
  suite_add_tcase(s, tc);
  return s;
}
