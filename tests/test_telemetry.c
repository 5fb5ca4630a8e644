/* Telemetry: flush latency, ranges per flush, free-to-release and free-to-reuse percentiles, and the reuse of released memory; HAKMEM_TELEMETRY=0 records nothing. */
#include <time.h>

#include "testutil.h"

static void ordered(const char *what, const hak_percentiles_t *h) {
  ck_assert_msg(h->p50 <= h->p95 && h->p95 <= h->p99 && h->p99 <= h->max,
                "%s: p50 %llu p95 %llu p99 %llu max %llu out of order", what,
                (unsigned long long)h->p50, (unsigned long long)h->p95, (unsigned long long)h->p99,
                (unsigned long long)h->max);
}

/* Ten explicit flushes of 1..10 ranges: every flush and every range counted. */
START_TEST(flushes_and_ranges_counted) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "CACHE_BYTES", "1G");
  uint64_t ranges = 0;
  for (int f = 1; f <= 10; f++) {
    void *v[10];
    for (int i = 0; i < f; i++) {
      v[i] = hak_malloc(512 * KiB + (size_t)i * 64 * KiB);  /* sizes no earlier block fits */
      memset(v[i], 1, 4096);
    }
    for (int i = 0; i < f; i++) hak_free(v[i]);
    hak_flush();
    ranges += (uint64_t)f;
  }
  hak_stats_t s = tu_stats();
  ck_assert_uint_eq(s.flush_latency_ns.count, s.flushes);
  ck_assert_uint_eq(s.ranges_per_flush.count, s.flushes);
  ck_assert_uint_eq(s.release_delay_ms.count, s.ranges_flushed);
  ck_assert_uint_ge(s.ranges_flushed, ranges);
  ck_assert_uint_ge(s.ranges_per_flush.max, 10);
  ck_assert_uint_gt(s.flush_latency_ns.p50, 0);
  ordered("flush latency", &s.flush_latency_ns);
  ordered("ranges per flush", &s.ranges_per_flush);
  ordered("free to release", &s.release_delay_ms);
  tu_opts_restore(&o);
}
END_TEST

/* A delay flush releases a range no sooner than 3/4 of the delay after its
 * free (each range waits its own delay). */
START_TEST(release_waits_the_delay) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "PURGE_DELAY_MS", "80");
  void *v[6];
  for (int i = 0; i < 6; i++) {
    v[i] = hak_malloc(1 * MiB);  /* all live first: no free is taken back by a later malloc */
    memset(v[i], 1, 4096);
  }
  for (int i = 0; i < 6; i++) {
    hak_free(v[i]);
    tu_sleep_ms(25);
  }
  hak_stats_t s;
  TU_WAIT_STATS(s, s.pending_ranges == 0);
  ck_assert_uint_eq(s.pending_ranges, 0);
  ck_assert_uint_ge(s.flush_by_delay, 1);
  ck_assert_msg(s.release_delay_ms.count >= 6, "%llu ranges timed",
                (unsigned long long)s.release_delay_ms.count);
  /* Bucket midpoints are within 1/8: 60 ms reads as at least 52. */
  ck_assert_msg(s.release_delay_ms.p50 >= 52, "median free-to-release %llu ms under a 80 ms delay",
                (unsigned long long)s.release_delay_ms.p50);
  tu_opts_restore(&o);
}
END_TEST

/* A block released to the kernel and then handed out again is counted, with
 * its bytes, and its free-to-reuse time. */
START_TEST(released_then_reused_counted) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "CACHE_BYTES", "1G");
  void *p = hak_malloc(3 * MiB);
  memset(p, 1, 3 * MiB);
  hak_free(p);
  hak_flush();  /* released */
  hak_stats_t a = tu_stats();
  void *q = hak_malloc(3 * MiB);  /* the same block, from the cache */
  ck_assert_ptr_eq(q, p);
  hak_stats_t b = tu_stats();
  /* At least ours (the test harness's own small pages may come back too). */
  ck_assert_msg(b.ranges_reused_released - a.ranges_reused_released >= 1, "released block reuse not counted");
  ck_assert_uint_ge(b.bytes_reused_released - a.bytes_reused_released, 3 * MiB);
  ck_assert_uint_ge(b.reuse_delay_ms.count - a.reuse_delay_ms.count, 1);
  /* Reused before any flush: a kept range, not a released one. */
  hak_free(q);
  void *r = hak_malloc(3 * MiB);
  hak_stats_t c = tu_stats();
  ck_assert_uint_eq(c.ranges_reused_released, b.ranges_reused_released);
  ck_assert_uint_gt(c.ranges_cancelled, b.ranges_cancelled);
  hak_free(r);
  tu_opts_restore(&o);
}
END_TEST

/* A delay flush takes the ranges that are due and leaves the younger ones
 * queued: a block it released counts as released when it is reused, even
 * while a range freed after it is still queued (the done generation must not
 * wait for the young range). */
START_TEST(released_by_delay_flush_counted) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "PURGE_DELAY_MS", "100");
  void *old = hak_malloc(3 * MiB), *young = hak_malloc(5 * MiB);  /* 5 MiB: no home for 3 */
  memset(old, 1, 3 * MiB);
  memset(young, 1, 5 * MiB);
  hak_free(old);
  tu_sleep_ms(60);
  hak_free(young);  /* 60 ms younger: the flush that takes `old` leaves it */
  hak_stats_t s;
  TU_WAIT_STATS(s, s.bytes_flushed >= 3 * MiB);
  ck_assert_uint_ge(s.bytes_flushed, 3 * MiB);
  hak_stats_t a = tu_stats();
  void *again = hak_malloc(3 * MiB);
  ck_assert_ptr_eq(again, old);
  hak_stats_t b = tu_stats();
  ck_assert_msg(b.bytes_reused_released - a.bytes_reused_released >= 3 * MiB,
                "a block released by a delay flush was reused, counted as kept (%llu bytes "
                "counted released; %llu still queued)",
                (unsigned long long)(b.bytes_reused_released - a.bytes_reused_released),
                (unsigned long long)a.pending_bytes);
  hak_free(again);
  tu_opts_restore(&o);
}
END_TEST

START_TEST(telemetry_off_records_nothing) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "TELEMETRY", "0");
  hak_stats_t a = tu_stats();
  for (int i = 0; i < 5; i++) {
    void *p = hak_malloc(1 * MiB);
    memset(p, 1, 4096);
    hak_free(p);
    hak_flush();
  }
  hak_stats_t b = tu_stats();
  ck_assert_uint_gt(b.flushes, a.flushes);
  ck_assert_uint_eq(b.flush_latency_ns.count, a.flush_latency_ns.count);
  ck_assert_uint_eq(b.release_delay_ms.count, a.release_delay_ms.count);
  tu_opts_restore(&o);
}
END_TEST

Suite *test_telemetry_suite(void) {
  Suite *s = suite_create("telemetry");
  TCase *tc = tcase_create("telemetry");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, flushes_and_ranges_counted);
  tcase_add_test(tc, release_waits_the_delay);
  tcase_add_test(tc, released_then_reused_counted);
  tcase_add_test(tc, released_by_delay_flush_counted);
  tcase_add_test(tc, telemetry_off_records_nothing);
  suite_add_tcase(s, tc);
  return s;
}
