/* hperf splits tlb:tlb_flush by reason exactly: the buckets add up to the total, no sample is lost, one local flush per madvise shows as local MM shootdown, and samples the kernel drops are reported. */
#include <check.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "hakmem.h"
#include "hperf.h"

/* Pinned; NULL (and SKIP) when tlb:tlb_flush cannot be sampled here. */
static hperf_t *open_pinned(const char *test) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(sched_getcpu(), &set);
  ck_assert_int_eq(sched_setaffinity(0, sizeof set, &set), 0);
  hperf_t *h = hperf_open();
  ck_assert_ptr_nonnull(h);
  const hperf_value_t *v = hperf_event_state(h, HPERF_TLB_LOCAL_MM);
  if (v->state != HPERF_COUNTED || hperf_event_state(h, HPERF_TLB_FLUSH)->state != HPERF_COUNTED) {
    fprintf(stderr, "SKIP: %s: tlb:tlb_flush %s (%s)\n", test, hperf_state_name(v->state), v->why);
    hperf_close(h);
    return NULL;
  }
  return h;
}

/* n madvise calls, each on one touched page: one local TLB flush each. */
static void flush_n(hperf_t *h, int n, hperf_counts_t *c) {
  char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ck_assert_ptr_ne(p, MAP_FAILED);
  hak_flush();
  hperf_start(h);
  for (int i = 0; i < n; i++) {
    char *q = p + (size_t)(i % 256) * 4096;
    q[0] = 1;
    madvise(q, 4096, MADV_DONTNEED);
  }
  hperf_stop(h);
  hperf_read(h, c);
  munmap(p, 1 << 20);
}

START_TEST(reasons_add_up) {
#ifdef __SANITIZE_THREAD__
  /* The counter and the samples are read at two moments; the runtime's own
   * flushes land between them. */
  fprintf(stderr, "SKIP: reasons_add_up: ThreadSanitizer's runtime flushes the TLB between the two reads\n");
  return;
#endif
  hperf_t *h = open_pinned("perf_tlb_reason:split");
  if (!h) return;
  const int n = 20000;  /* more samples than one drain of the ring buffers */
  hperf_counts_t c;
  flush_n(h, n, &c);
  uint64_t sum = 0;
  for (int ev = HPERF_TLB_REASON_FIRST; ev <= HPERF_TLB_REASON_LAST; ev++) sum += c.ev[ev].value;
  ck_assert_uint_eq(c.tlb_lost, 0);
  ck_assert_uint_eq(c.tlb_samples, sum);
  ck_assert_uint_eq(sum, c.ev[HPERF_TLB_FLUSH].value);
  ck_assert_uint_ge(c.ev[HPERF_TLB_LOCAL_MM].value, (uint64_t)n);
  hperf_close(h);
}
END_TEST

/* A one-page ring buffer overflows: the loss is counted, not hidden. The
 * test runs at real-time priority on the drain thread's CPU, so that the
 * drain thread cannot keep up. */
START_TEST(lost_samples_are_reported) {
  setenv("HPERF_RING_PAGES", "1", 1);
  hperf_t *h = open_pinned("perf_tlb_reason:lost");
  if (!h) return;
  struct sched_param fifo = {.sched_priority = 1}, other = {.sched_priority = 0};
  if (sched_setscheduler(0, SCHED_FIFO, &fifo) != 0) {
    fprintf(stderr, "SKIP: perf_tlb_reason:lost: cannot use SCHED_FIFO\n");
    hperf_close(h);
    return;
  }
  hperf_counts_t c;
  flush_n(h, 50000, &c);
  sched_setscheduler(0, SCHED_OTHER, &other);
  ck_assert_uint_gt(c.tlb_lost, 0);
  ck_assert_uint_eq(c.tlb_samples + c.tlb_lost, c.ev[HPERF_TLB_FLUSH].value);
  ck_assert(c.ev[HPERF_TLB_LOCAL_MM].why[0] != 0);  /* "N samples lost: a lower bound" */
  hperf_close(h);
}
END_TEST

Suite *test_perf_tlb_reason_suite(void) {
  Suite *s = suite_create("perf_tlb_reason");
  TCase *tc = tcase_create("split");
  tcase_set_timeout(tc, 20);
  tcase_add_test(tc, reasons_add_up);
  tcase_add_test(tc, lost_samples_are_reported);
  suite_add_tcase(s, tc);
  return s;
}
