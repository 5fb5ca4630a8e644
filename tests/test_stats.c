/* Statistics API: hak_stats consistency, hak_stats_reset (counters, not gauges), hak_stats_print, JSON report keys. */
#include "testutil.h"

/* Every hak_stats_t field name: the JSON report must carry each one. The
 * numbers come from hakmem.h's list itself; the rest are named here. */
static const char *const fields[] = {
#define FIELD_NAME_(name, kind, label) #name,
    HAK_STATS_FIELDS(FIELD_NAME_)
#undef FIELD_NAME_
    "pid", "flush_mode", "flush_mode_requested", "advice", "fallback_errno", "fallback_reason",
    "purge_thread", "forked_from"};

START_TEST(json_report_has_every_field) {
  const char *argv[] = {"tests/bin/prog_queue", "4", "512", NULL};
  tu_run_t r;
  char *rep = tu_run_report(argv, NULL, NULL, NULL, &r);
  ck_assert_msg(tu_exited_ok(&r), "prog_queue: 0x%x %s", r.status, r.err);
  ck_assert_msg(rep != NULL, "no report");
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", fields[i]);
    ck_assert_msg(strstr(rep, key) != NULL, "JSON report lacks %s: %s", fields[i], rep);
  }
  ck_assert_msg(rep[strlen(rep) - 1] == '}', "report line not closed: %s", rep);
  free(rep);
  tu_run_free(&r);
}
END_TEST

START_TEST(stats_to_stderr_by_default) {
  const char *env[] = {"HAKMEM_STATS=json", NULL};
  const char *argv[] = {"tests/bin/prog_queue", "2", "512", NULL};
  tu_run_t r;
  ck_assert_int_eq(tu_run(argv, env, NULL, &r), 0);
  ck_assert(tu_exited_ok(&r));
  ck_assert_int_eq(tu_count_substr(r.err, "hakmem-stats: {"), 1);
  tu_run_free(&r);
  const char *quiet[] = {NULL};
  ck_assert_int_eq(tu_run(argv, quiet, NULL, &r), 0);  /* no HAKMEM_STATS: silent */
  ck_assert(tu_exited_ok(&r));
  ck_assert_msg(r.err[0] == '\0', "stderr without HAKMEM_STATS: %s", r.err);
  tu_run_free(&r);
}
END_TEST

START_TEST(reset_keeps_gauges) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  void *v[5];
  for (int i = 0; i < 5; i++) {
    v[i] = hak_malloc(512 * KiB);
    ck_assert_ptr_nonnull(v[i]);
    memset(v[i], 1, 512 * KiB);
  }
  for (int i = 0; i < 5; i++) hak_free(v[i]);
  hak_stats_t a = tu_stats();
  ck_assert_uint_ge(a.pending_ranges, 5);
  ck_assert_uint_gt(a.alloc_large, 0);
  hak_stats_reset();
  hak_stats_t b = tu_stats();
  ck_assert_uint_eq(b.alloc_large, 0);
  ck_assert_uint_eq(b.free_large, 0);
  ck_assert_uint_eq(b.ranges_added, 0);
  ck_assert_uint_eq(b.mmap_calls, 0);
  ck_assert_uint_eq(b.pending_ranges, a.pending_ranges);  /* gauges stay */
  ck_assert_uint_eq(b.pending_bytes, a.pending_bytes);
  ck_assert_uint_eq(b.cache_bytes, a.cache_bytes);
  ck_assert_uint_eq(b.bytes_mapped_now, a.bytes_mapped_now);
  ck_assert_int_eq(b.flush_mode, a.flush_mode);
  /* The queue still flushes, and the books balance from the reset on. */
  hak_flush();
  hak_stats_t c = tu_stats();
  ck_assert_uint_eq(c.pending_ranges, 0);
  ck_assert_uint_ge(c.ranges_flushed, a.pending_ranges);
  tu_opts_restore(&o);
}
END_TEST

START_TEST(counters_are_consistent) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  void *v[40];
  for (int round = 0; round < 5; round++) {
    for (int i = 0; i < 40; i++) {
      size_t n = i % 2 ? 300 * KiB + (size_t)i * 4096 : (size_t)i * 100 + 1;
      v[i] = hak_malloc(n);
      ck_assert_ptr_nonnull(v[i]);
      memset(v[i], 1, n < 64 ? n : 64);
    }
    for (int i = 0; i < 40; i++) hak_free(v[i]);
    if (round % 2) hak_flush();
  }
  hak_flush();
  hak_stats_t s = tu_stats();
  ck_assert_uint_eq(s.alloc_large, s.free_large);
  ck_assert_uint_eq(s.cache_hits + s.cache_misses, s.alloc_large);
  ck_assert_uint_eq(s.ranges_added, s.ranges_flushed + s.ranges_cancelled + s.ranges_unqueued + s.ranges_dropped);
  ck_assert_uint_ge(s.bytes_added, s.bytes_flushed + s.bytes_cancelled);
  ck_assert_uint_le(s.flush_syscalls, s.ranges_flushed + s.flushes);
  ck_assert_uint_eq(s.pending_ranges, 0);
  ck_assert_uint_eq(s.pending_bytes, 0);
  tu_opts_restore(&o);
}
END_TEST

START_TEST(print_writes_table) {
  char path[128];
  tu_tmpname(path, sizeof path, "print");
  int fd = open(path, O_WRONLY | O_TRUNC);
  ck_assert_int_ge(fd, 0);
  void *p = hak_malloc(100);
  hak_free(p);
  hak_stats_print(fd);
  close(fd);
  char *text = tu_read_file(path, NULL);
  unlink(path);
  ck_assert_ptr_nonnull(text);
  ck_assert_msg(strstr(text, "hakmem stats") != NULL, "table: %s", text);
  ck_assert_msg(strstr(text, "ranges added") != NULL, "table: %s", text);
  ck_assert_int_ge(tu_count_substr(text, "\n"), 20);
  free(text);
}
END_TEST

/* What the purge thread costs off the program's threads is reported: its
 * wakeups and its CPU time, which only grows (0 while there is no thread). */
START_TEST(purge_thread_cost_reported) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  hak_stats_t s = tu_stats();
  if (s.purge_thread != 1) ck_assert_uint_eq(s.purge_cpu_us, 0);
  tu_opt(&o, "PURGE_DELAY_MS", "1");
  for (int i = 0; i < 20; i++) {
    void *p = hak_malloc(512 * KiB);
    memset(p, 1, 512 * KiB);
    hak_free(p);
    tu_sleep_ms(5);
  }
  TU_WAIT_STATS(s, s.purge_thread == 1 && s.purge_wakeups >= 3 && s.purge_cpu_us > 0);
  ck_assert_msg(s.purge_thread == 1 && s.purge_wakeups >= 3 && s.purge_cpu_us > 0,
                "purge thread %d: %llu wakeups, %llu us", s.purge_thread,
                (unsigned long long)s.purge_wakeups, (unsigned long long)s.purge_cpu_us);
  hak_stats_reset();  /* a gauge: the reset leaves it */
  hak_stats_t t = tu_stats();
  ck_assert_uint_ge(t.purge_cpu_us, s.purge_cpu_us);
  tu_opts_restore(&o);
}
END_TEST

Suite *test_stats_suite(void) {
  Suite *s = suite_create("stats");
  TCase *tc = tcase_create("stats");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, json_report_has_every_field);
  tcase_add_test(tc, stats_to_stderr_by_default);
  tcase_add_test(tc, reset_keeps_gauges);
  tcase_add_test(tc, counters_are_consistent);
  tcase_add_test(tc, print_writes_table);
  tcase_add_test(tc, purge_thread_cost_reported);
  suite_add_tcase(s, tc);
  return s;
}
