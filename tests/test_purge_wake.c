/* Purge thread wakeups: a range queued while the thread already sleeps until before its due time does not wake it, nor does one taken back before the thread looks (free-and-reuse loops cost no wakeup each), and every range is still given back on time; frees into an exited thread's heap wake it at most every 10 ms. */
#include <pthread.h>

#include "testutil.h"

/* The purge thread running, the queue empty, the delay `delay_ms`. */
static void settle(tu_opts_t *o, const char *delay_ms) {
  tu_quiet(o);
  tu_opt(o, "PURGE_DELAY_MS", delay_ms);
  void *p = hak_malloc(512 * KiB);
  memset(p, 1, 4096);
  hak_free(p);
  hak_stats_t s;
  TU_WAIT_STATS(s, s.purge_thread == 1 && s.pending_ranges == 0);
  ck_assert_msg(s.purge_thread == 1, "set-up: the purge thread did not start (state %d)", s.purge_thread);
}

/* A 2 MiB block taken, its pages written, and freed: the free queues a
 * range, the next call's malloc takes it back. */
static void take_write_free(int i) {
  char *p = hak_malloc(2 * MiB);
  ck_assert_ptr_nonnull(p);
  for (size_t off = 0; off < 2 * MiB; off += 4096) p[off] = (char)i;
  hak_free(p);
}

/* A block freed and taken again at once, 2000 times: each free queues a
 * range into an empty queue, each malloc takes it back. The thread sleeps
 * until the first range's due time, which no later range precedes: it
 * need not wake for them. (Each block's pages are written, which gives the
 * thread time to go back to sleep between frees, as in a program.) Kicked
 * at every free that found the queue empty, it failed: "538 wakeups for
 * 2000 frees". */
START_TEST(free_and_reuse_does_not_wake_the_thread) {
  tu_opts_t o = {0};
  settle(&o, "200");
  uint64_t before = tu_stats().purge_wakeups;
  for (int i = 0; i < 2000; i++) take_write_free(i);
  hak_stats_t s = tu_stats();
  uint64_t woke = s.purge_wakeups - before;
  ck_assert_msg(woke < 100, "%llu wakeups for 2000 frees", (unsigned long long)woke);
  ck_assert_uint_gt(s.ranges_cancelled, 1000);  /* the loop did queue and take back */
  tu_opts_restore(&o);
}
END_TEST

/* The same loop for 400 ms at a 50 ms delay: each range is queued only
 * between a free and the next malloc, a small part of each iteration. A
 * kicked thread mostly found the queue empty again, slept with no deadline,
 * and was kicked by a later free: it failed, "362 wakeups in 400 ms (79527
 * frees, delay 50 ms)", and the loop above failed so once in a clean clone
 * ("233 wakeups for 2000 frees"). After a kick that finds nothing queued, the
 * thread sleeps a delay all the same: 15 wakeups. */
START_TEST(a_range_taken_back_at_once_does_not_wake_it_per_free) {
  tu_opts_t o = {0};
  settle(&o, "50");
  uint64_t before = tu_stats().purge_wakeups, end = tu_now_ms() + 400, frees = 0;
  while (tu_now_ms() < end) take_write_free((int)frees++);
  hak_stats_t s = tu_stats();
  uint64_t woke = s.purge_wakeups - before;
  ck_assert_msg(woke < 40, "%llu wakeups in 400 ms (%llu frees, delay 50 ms)", (unsigned long long)woke,
                (unsigned long long)frees);
  ck_assert_uint_gt(s.ranges_cancelled, 100);  /* the loop did queue and take back */
  tu_opts_restore(&o);
}
END_TEST

/* After such a loop, a range that nobody takes back is still given back
 * within its delay (50 ms; 2 s allowed for a loaded machine): the thread,
 * not woken for it, wakes at the earlier deadline it had and finds it. */
START_TEST(unkicked_range_still_given_back) {
  tu_opts_t o = {0};
  settle(&o, "50");
  for (int i = 0; i < 200; i++) {
    void *p = hak_malloc(2 * MiB);
    ck_assert_ptr_nonnull(p);
    hak_free(p);
  }
  void *keep = hak_malloc(2 * MiB);  /* takes the cached block: the queue is empty */
  ck_assert_ptr_nonnull(keep);
  void *last = hak_malloc(1 * MiB);
  ck_assert_ptr_nonnull(last);
  memset(last, 2, 1 * MiB);
  hak_free(last);  /* queued; never taken back */
  uint64_t start = tu_now_ms();
  hak_stats_t s;
  TU_WAIT_STATS(s, s.pending_ranges == 0);
  ck_assert_msg(s.pending_ranges == 0, "a range still queued %llu ms after its free (delay 50 ms)",
                (unsigned long long)(tu_now_ms() - start));
  hak_free(keep);
  tu_opts_restore(&o);
}
END_TEST

enum { ORPHANS = 20000 };
static void *orphans[ORPHANS];

static void *allocate_and_exit(void *arg) {
  (void)arg;
  for (int i = 0; i < ORPHANS; i++) orphans[i] = hak_malloc(64);
  return NULL;
}

/* A thread allocates 20,000 blocks and exits; another frees them, 20 at a
 * time, 1000 times over 100 ms or more. Each free into the exited thread's
 * heap reports itself, and the first after a collection kicks the purge
 * thread, which collects: with a collection every time, it failed ("2154
 * wakeups for 1000 batches of frees"). */
START_TEST(frees_into_an_exited_heap_wake_it_little) {
  tu_opts_t o = {0};
  settle(&o, "10");
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, allocate_and_exit, NULL), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  for (int i = 0; i < ORPHANS; i++) ck_assert_ptr_nonnull(orphans[i]);
  uint64_t before = tu_stats().purge_wakeups;
  for (int i = 0; i < ORPHANS; i++) {
    hak_free(orphans[i]);
    if (i % 20 == 19) usleep(100);
  }
  hak_stats_t s;
  TU_WAIT_STATS(s, s.pending_ranges == 0 && s.abandoned_pages_released > 0);
  uint64_t woke = s.purge_wakeups - before;
  ck_assert_msg(woke < 300, "%llu wakeups for %d batches of frees", (unsigned long long)woke, ORPHANS / 20);
  ck_assert_msg(s.abandoned_pages_released > 0, "the exited thread's empty pages were not given back");
  tu_opts_restore(&o);
}
END_TEST

Suite *test_purge_wake_suite(void) {
  Suite *s = suite_create("purge_wake");
  TCase *tc = tcase_create("purge_wake");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, free_and_reuse_does_not_wake_the_thread);
  tcase_add_test(tc, a_range_taken_back_at_once_does_not_wake_it_per_free);
  tcase_add_test(tc, unkicked_range_still_given_back);
  tcase_add_test(tc, frees_into_an_exited_heap_wake_it_little);
  suite_add_tcase(s, tc);
  return s;
}
