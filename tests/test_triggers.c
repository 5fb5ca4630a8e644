/* Flush triggers: count (BATCH_MAX), bytes (BATCH_BYTES), delay (PURGE_DELAY_MS), explicit (hak_flush, trim), exit; RSS drops. */
#include <malloc.h>
#include <time.h>

#include "testutil.h"

/* n live large blocks of sz, touched so that releasing them has work. */
static void **alloc_blocks(int n, size_t sz) {
  void **v = calloc((size_t)n, sizeof *v);
  ck_assert_ptr_nonnull(v);
  for (int i = 0; i < n; i++) {
    v[i] = hak_malloc(sz);
    ck_assert_ptr_nonnull(v[i]);
    memset(v[i], 0x33, sz);
  }
  return v;
}

/* Frees v[from..to-1]: each free queues a range. */
static void free_blocks(void **v, int from, int to) {
  for (int i = from; i < to; i++) hak_free(v[i]);
}

/* Allocates n large blocks of sz, touches them, frees them all: n queued ranges. */
static void queue_blocks(int n, size_t sz) {
  void **v = alloc_blocks(n, sz);
  free_blocks(v, 0, n);
  free(v);
}

START_TEST(count_trigger) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "BATCH_MAX", "16");
  ck_assert_int_eq(hak_option_get("BATCH_MAX"), 16);
  hak_stats_reset();
  void **v = alloc_blocks(20, 512 * KiB);  /* all live first: no cache hit cancels a range */
  free_blocks(v, 0, 15);
  hak_stats_t a = tu_stats();
  ck_assert_uint_eq(a.flush_by_count, 0);  /* 15 < 16: still queued */
  ck_assert_uint_ge(a.pending_ranges, 15);
  free_blocks(v, 15, 20);
  free(v);
  hak_stats_t b;
  TU_WAIT_STATS(b, b.flush_by_count >= 1 && b.pending_ranges < 16);
  ck_assert_msg(b.flush_by_count >= 1, "BATCH_MAX=16 reached without a count flush");
  ck_assert_uint_lt(b.pending_ranges, 16);
  ck_assert_uint_eq(b.flush_by_bytes, 0);
  ck_assert_uint_eq(b.flush_by_delay, 0);
  ck_assert_uint_ge(b.ranges_flushed, 16);
  tu_opts_restore(&o);
}
END_TEST

START_TEST(bytes_trigger) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "BATCH_BYTES", "2M");
  ck_assert_int_eq(hak_option_get("BATCH_BYTES"), 2 * 1024 * 1024);
  hak_stats_reset();
  void **v = alloc_blocks(6, 512 * KiB);
  free_blocks(v, 0, 2);  /* about 1 MiB: below the limit */
  hak_stats_t a = tu_stats();
  ck_assert_uint_eq(a.flush_by_bytes, 0);
  ck_assert_uint_ge(a.pending_ranges, 1);
  free_blocks(v, 2, 6);
  free(v);
  hak_stats_t b;
  TU_WAIT_STATS(b, b.flush_by_bytes >= 1 && b.pending_bytes < 2 * MiB);
  ck_assert_msg(b.flush_by_bytes >= 1, "BATCH_BYTES=2M passed without a bytes flush");
  ck_assert_uint_lt(b.pending_bytes, 2 * MiB);
  ck_assert_uint_eq(b.flush_by_count, 0);
  ck_assert_uint_eq(b.flush_by_delay, 0);
  tu_opts_restore(&o);
}
END_TEST

/* Some allocator activity that cannot reuse the queued large blocks. */
static void small_activity(int n) {
  for (int i = 0; i < n; i++) {
    void *p = hak_malloc(16 + (size_t)(i % 64) * 32);
    ck_assert_ptr_nonnull(p);
    hak_free(p);
  }
}

START_TEST(delay_trigger) {
  tu_opts_t o = {0};
  tu_opt(&o, "PURGE_THREAD", "0");  /* the allocation path itself must notice the delay */
  tu_quiet(&o);
  tu_opt(&o, "PURGE_DELAY_MS", "20");
  hak_stats_reset();
  queue_blocks(3, 512 * KiB);
  ck_assert_uint_ge(tu_stats().ranges_added, 3);
  tu_sleep_ms(300);
  ck_assert_msg(tu_stats().pending_ranges >= 3, "flushed with no activity and no purge thread");  /* well past the delay: the next activity must flush */
  small_activity(1);
  hak_stats_t a = tu_stats();
  if (a.flush_by_delay == 0) {  /* allow the check to live on a slower path */
    small_activity(5000);
    a = tu_stats();
  }
  ck_assert_msg(a.flush_by_delay >= 1, "no delay flush 300 ms after queueing with delay 20 ms");
  ck_assert_uint_eq(a.pending_ranges, 0);
  ck_assert_uint_eq(a.flush_by_count, 0);
  ck_assert_uint_eq(a.flush_by_bytes, 0);
  tu_opts_restore(&o);
}
END_TEST

/* A program that goes quiet right after freeing still gets its memory
 * released once the delay is over (the library's purge thread). */
START_TEST(delay_flush_without_activity) {
  if (hak_option_get("PURGE_THREAD") == 0) SKIP_TEST("HAKMEM_PURGE_THREAD=0");
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "PURGE_DELAY_MS", "20");
  hak_stats_reset();
  queue_blocks(3, 512 * KiB);
  hak_stats_t a = tu_stats();
  for (int i = 0; i < 100 && a.pending_ranges > 0; i++) {  /* up to 5 s: no timing asserted */
    tu_sleep_ms(50);
    a = tu_stats();
  }
  ck_assert_msg(a.pending_ranges == 0, "%llu ranges still queued 5 s after a 20 ms delay",
                (unsigned long long)a.pending_ranges);
  ck_assert_uint_ge(a.flush_by_delay, 1);
  ck_assert_uint_ge(a.ranges_flushed, 3);
  tu_opts_restore(&o);
}
END_TEST

/* A queue emptied by reuse (every range taken back) leaves the purge thread
 * with nothing to wait for; the next range queued must still be flushed
 * after the delay, without any other allocator call. */
START_TEST(delay_flush_after_reuse_emptied_queue) {
  if (hak_option_get("PURGE_THREAD") == 0) SKIP_TEST("HAKMEM_PURGE_THREAD=0");
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "PURGE_DELAY_MS", "20");
  void *p = hak_malloc(1 * MiB);
  memset(p, 1, 1 * MiB);
  hak_free(p);                       /* queued */
  void *q = hak_malloc(1 * MiB);     /* the same block from the cache: taken back */
  ck_assert_ptr_eq(q, p);
  ck_assert_uint_eq(tu_stats().pending_ranges, 0);
  tu_sleep_ms(100);                     /* the first range's delay passes with nothing queued */
  hak_stats_reset();
  hak_free(q);                       /* queued again */
  hak_stats_t a = tu_stats();
  for (int i = 0; i < 100 && a.pending_ranges > 0; i++) {  /* up to 5 s: no timing asserted */
    tu_sleep_ms(50);
    a = tu_stats();
  }
  ck_assert_msg(a.pending_ranges == 0, "the range queued after the reuse was never flushed");
  ck_assert_uint_ge(a.flush_by_delay, 1);
  tu_opts_restore(&o);
}
END_TEST

START_TEST(delay_not_reached_keeps_queue) {
  /* With a one-hour delay, activity alone must not flush. */
  tu_opts_t o = {0};
  tu_quiet(&o);
  queue_blocks(3, 512 * KiB);
  small_activity(20000);
  hak_stats_t a = tu_stats();
  ck_assert_uint_eq(a.flush_by_delay, 0);
  ck_assert_uint_ge(a.pending_ranges, 3);
  tu_opts_restore(&o);
}
END_TEST

START_TEST(explicit_flush) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  queue_blocks(7, 512 * KiB);
  hak_stats_t a = tu_stats();
  ck_assert_uint_ge(a.pending_ranges, 7);
  hak_flush();
  hak_stats_t b = tu_stats();
  ck_assert_uint_eq(b.pending_ranges, 0);
  ck_assert_uint_eq(b.pending_bytes, 0);
  ck_assert_uint_ge(b.flush_explicit, a.flush_explicit + 1);
  ck_assert_uint_ge(b.ranges_flushed, a.ranges_flushed + 7);
  ck_assert_uint_ge(b.flushes, a.flushes + 1);
  /* Every queued range ends flushed, cancelled or dropped. */
  ck_assert_uint_eq(b.ranges_added, b.ranges_flushed + b.ranges_cancelled + b.ranges_unqueued + b.ranges_dropped);
  tu_opts_restore(&o);
}
END_TEST

START_TEST(trim_flushes_and_unmaps) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  queue_blocks(4, 1 * MiB);
  hak_stats_t a = tu_stats();
  ck_assert_uint_gt(a.cache_bytes, 0);
  ck_assert_int_eq(hak_trim(), 1);
  hak_stats_t b = tu_stats();
  ck_assert_uint_eq(b.pending_ranges, 0);
  ck_assert_uint_eq(b.cache_bytes, 0);
  ck_assert_uint_gt(b.munmap_calls, a.munmap_calls);
  /* Queued ranges of blocks it unmaps may be flushed or simply cancelled. */
  ck_assert_uint_eq(b.ranges_added, b.ranges_flushed + b.ranges_cancelled + b.ranges_unqueued + b.ranges_dropped);
  ck_assert_uint_eq(b.flush_errors, 0);
  ck_assert_int_eq(hak_trim(), 0);  /* nothing left to give back */
  tu_opts_restore(&o);
}
END_TEST

START_TEST(malloc_trim_is_hak_trim) {
#if HAK_SANITIZE
  SKIP_TEST("the sanitizer build has no malloc family");
#else
  tu_opts_t o = {0};
  tu_quiet(&o);
  queue_blocks(4, 1 * MiB);
  hak_stats_t a = tu_stats();
  ck_assert_uint_ge(a.pending_ranges, 4);
  ck_assert_int_eq(malloc_trim(0), 1);
  hak_stats_t b = tu_stats();
  ck_assert_uint_eq(b.pending_ranges, 0);
  ck_assert_uint_eq(b.cache_bytes, 0);
  ck_assert_uint_gt(b.munmap_calls, a.munmap_calls);
  tu_opts_restore(&o);
#endif
}
END_TEST

START_TEST(exit_flushes_and_reports) {
  char path[128];
  tu_tmpname(path, sizeof path, "stats");
  char file_env[160];
  snprintf(file_env, sizeof file_env, "HAKMEM_STATS_FILE=%s", path);
  const char *env[] = {"HAKMEM_STATS=json", file_env, "HAKMEM_PURGE_DELAY_MS=3600000",
                       "HAKMEM_BATCH_MAX=1024", "HAKMEM_BATCH_BYTES=16G",
                       "HAKMEM_CACHE_BYTES=1G", NULL};
  const char *argv[] = {"tests/bin/prog_queue", "12", "512", NULL};
  tu_run_t r;
  ck_assert_int_eq(tu_run(argv, env, NULL, &r), 0);
  ck_assert_msg(tu_exited_ok(&r), "prog_queue failed: 0x%x %s", r.status, r.err);
  long long before = -1;
  const char *pr = strstr(r.out, "pending_ranges=");
  ck_assert_msg(pr != NULL, "prog_queue said: %s", r.out);
  before = atoll(pr + strlen("pending_ranges="));
  ck_assert_msg(before >= 12, "prog_queue had only %lld ranges queued at exit", before);

  char *rep = tu_read_file(path, NULL);
  unlink(path);
  ck_assert_msg(rep != NULL && strstr(rep, "hakmem-stats: {") != NULL, "no JSON report in %s: %s",
                path, rep ? rep : "(missing)");
  ck_assert_msg(strstr(r.err, "hakmem-stats") == NULL, "report went to stderr despite STATS_FILE");
  ck_assert_int_eq(tu_json_need(rep, "pending_ranges"), 0);
  ck_assert_int_ge(tu_json_need(rep, "flush_explicit"), 1);
  ck_assert_int_ge(tu_json_need(rep, "flushes"), 1);
  ck_assert_int_ge(tu_json_need(rep, "ranges_flushed"), before);
  ck_assert_int_eq(tu_json_need(rep, "ranges_added"),
                   tu_json_need(rep, "ranges_flushed") + tu_json_need(rep, "ranges_cancelled") +
                       tu_json_need(rep, "ranges_unqueued") + tu_json_need(rep, "ranges_dropped"));
  free(rep);
  tu_run_free(&r);
}
END_TEST

/* exit() while other threads are inside the allocator: the exit flush and
 * the report happen, and nothing crashes or hangs (the run is repeated). */
START_TEST(exit_with_threads_running) {
  const char *argv[] = {"tests/bin/prog_exitrace", NULL};
  const char *env[] = {"HAKMEM_BATCH_MAX=8", NULL};
  for (int i = 0; i < 20; i++) {
    tu_run_t r;
    char *rep = tu_run_report(argv, env, NULL, NULL, &r);
    ck_assert_msg(tu_exited_ok(&r), "run %d: status 0x%x, stderr %s", i, r.status, r.err);
    ck_assert_msg(rep != NULL, "run %d: no exit report", i);
    ck_assert_int_eq(tu_json_need(rep, "flush_errors"), 0);
    free(rep);
    tu_run_free(&r);
  }
}
END_TEST

/* MADV_DONTNEED really gives the pages back: mincore and statm both see it,
 * and not before the flush (the free itself only queues). */
START_TEST(rss_drops_after_flush) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "ADVICE", "dontneed");
  const size_t sz = 8 * MiB;
  unsigned char *p = hak_malloc(sz);
  ck_assert_ptr_nonnull(p);
  memset(p, 0x77, sz);
  ck_assert_uint_ge(tu_resident_pages(p, sz), sz / PAGE - 1);
  hak_free(p);
  size_t queued_res = tu_resident_pages(p, sz);
  ck_assert_msg(queued_res >= sz / PAGE - 2, "free released at once (%zu pages resident)", queued_res);
  long rss_before = tu_statm_resident_pages();
  hak_flush();
  long rss_after = tu_statm_resident_pages();
  size_t flushed_res = tu_resident_pages(p, sz);  /* still mapped: it sits in the cache */
  ck_assert_msg(flushed_res <= 2, "%zu of %zu pages still resident after the flush", flushed_res,
                sz / PAGE);
  ck_assert_msg(rss_before - rss_after >= (long)(sz / PAGE) * 3 / 4,
                "statm resident went from %ld to %ld pages only", rss_before, rss_after);
  tu_opts_restore(&o);
}
END_TEST

Suite *test_triggers_suite(void) {
  Suite *s = suite_create("triggers");
  TCase *tc = tcase_create("triggers");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, count_trigger);
  tcase_add_test(tc, bytes_trigger);
  tcase_add_test(tc, delay_trigger);
  tcase_add_test(tc, delay_flush_without_activity);
  tcase_add_test(tc, delay_flush_after_reuse_emptied_queue);
  tcase_add_test(tc, delay_not_reached_keeps_queue);
  tcase_add_test(tc, explicit_flush);
  tcase_add_test(tc, trim_flushes_and_unmaps);
  tcase_add_test(tc, malloc_trim_is_hak_trim);
  tcase_add_test(tc, exit_flushes_and_reports);
  tcase_add_test(tc, exit_with_threads_running);
  tcase_add_test(tc, rss_drops_after_flush);
  suite_add_tcase(s, tc);
  return s;
}
