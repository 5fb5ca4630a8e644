/* Telemetry: the distributions of hakmem.h's HAK_STATS_HISTOGRAMS, each in a
 * fixed log-bucket histogram (four buckets per power of two: any value is
 * known within 1/8), filled with relaxed atomic adds: no allocation, no lock,
 * and only on release paths (a flush, a page or block reused), never on
 * malloc or free. HAKMEM_TELEMETRY=0 turns the recording off. */
#include <errno.h>
#include <string.h>

#include "internal.h"

#define BUCKETS (8 + 61 * 4)  /* up to 2^64 - 1 */

typedef struct {
  _Atomic uint64_t bucket[BUCKETS];
  _Atomic uint64_t max;
} hist_t;

static hist_t hist[HAK_HIST_COUNT];

/* 0..7 exactly, then four buckets per power of two. */
static unsigned bucket_of(uint64_t v) {
  if (v < 8) return (unsigned)v;
  unsigned e = 63u - (unsigned)__builtin_clzll(v);
  return 8 + (e - 3) * 4 + (unsigned)((v >> (e - 2)) & 3);
}

/* The middle of bucket b's range. */
static uint64_t value_of(unsigned b) {
  if (b < 8) return b;
  unsigned e = (b - 8) / 4 + 3, q = (b - 8) % 4;
  uint64_t lo = (1ull << e) + ((uint64_t)q << (e - 2));
  return lo + (1ull << (e - 2)) / 2;
}

void _hak_hist_add(int which, uint64_t v) {
  if (!hak_opt(TELEMETRY)) return;
  hist_t *h = &hist[which];
  atomic_fetch_add_explicit(&h->bucket[bucket_of(v)], 1, memory_order_relaxed);
  uint64_t m = atomic_load_explicit(&h->max, memory_order_relaxed);
  while (v > m && !atomic_compare_exchange_weak_explicit(&h->max, &m, v, memory_order_relaxed,
                                                         memory_order_relaxed)) {
  }
}

/* Values at or below `limit`, and the total. */
uint64_t _hak_hist_count_upto(int which, uint64_t limit, uint64_t *total) {
  uint64_t below = 0, all = 0;
  for (unsigned b = 0; b < BUCKETS; b++) {
    uint64_t n = atomic_load_explicit(&hist[which].bucket[b], memory_order_relaxed);
    all += n;
    if (value_of(b) <= limit) below += n;
  }
  *total = all;
  return below;
}

static uint64_t percentile(const uint64_t *counts, uint64_t total, double q) {
  uint64_t want = (uint64_t)((double)total * q + 0.5), seen = 0;
  if (want == 0) want = 1;
  for (unsigned b = 0; b < BUCKETS; b++) {
    seen += counts[b];
    if (seen >= want) return value_of(b);
  }
  return 0;
}

void _hak_hist_read(int which, hak_percentiles_t *out) {
  uint64_t counts[BUCKETS], total = 0;
  for (unsigned b = 0; b < BUCKETS; b++) {
    counts[b] = atomic_load_explicit(&hist[which].bucket[b], memory_order_relaxed);
    total += counts[b];
  }
  memset(out, 0, sizeof *out);
  out->count = total;
  if (!total) return;
  out->max = atomic_load_explicit(&hist[which].max, memory_order_relaxed);
  /* A bucket's middle can lie above the largest value seen. */
  out->p50 = percentile(counts, total, 0.50);
  out->p95 = percentile(counts, total, 0.95);
  out->p99 = percentile(counts, total, 0.99);
  if (out->p50 > out->max) out->p50 = out->max;
  if (out->p95 > out->max) out->p95 = out->max;
  if (out->p99 > out->max) out->p99 = out->max;
}

void _hak_hist_reset(void) {
  for (int i = 0; i < HAK_HIST_COUNT; i++) {
    for (unsigned b = 0; b < BUCKETS; b++) atomic_store(&hist[i].bucket[b], 0);
    atomic_store(&hist[i].max, 0);
  }
}

/* ---- reuse of freed memory ------------------------------------------------------*/

/* By log2(ms) between free and reuse: kept, released; then the same for
 * ranges freed before the program last went quiet and reused after it
 * (what the policy's pause rule answers for, not its arms). */
static _Atomic uint64_t reuse_bytes[2][2][HAK_REUSE_BUCKETS];  /* as hak_reuse_t */
static _Atomic uint64_t reuse_huge_bytes;  /* of all of them, in ranges of huge pages */
static _Atomic uint64_t quiet_since_ms;    /* when the program last went quiet, 0: never */

void _hak_reuse_mark_quiet(uint64_t now_ms) {
  atomic_store_explicit(&quiet_since_ms, now_ms, memory_order_relaxed);
}

void _hak_reuse_note(uint64_t bytes, uint64_t now_ms, uint64_t ms, bool released) {
  unsigned b = ms ? 64u - (unsigned)__builtin_clzll(ms) : 0;  /* 0: < 1 ms, b: [2^(b-1), 2^b) */
  if (b >= HAK_REUSE_BUCKETS) b = HAK_REUSE_BUCKETS - 1;
  uint64_t quiet = atomic_load_explicit(&quiet_since_ms, memory_order_relaxed);
  bool across = quiet && now_ms - ms <= quiet;  /* freed before the quiet spell */
  atomic_fetch_add_explicit(&reuse_bytes[across][released][b], bytes, memory_order_relaxed);
  if (bytes >= HAK_HUGE_ALIGN) atomic_fetch_add_explicit(&reuse_huge_bytes, bytes, memory_order_relaxed);
  if (!released) return;
  hak_stat_inc(ranges_reused_released);
  hak_stat_add(bytes_reused_released, bytes);
  _hak_hist_add(HAK_HIST_reuse_delay_ms, ms);
}

void _hak_reuse_take(hak_reuse_t *r) {
  for (int across = 0; across < 2; across++)
    for (int released = 0; released < 2; released++)
      for (int b = 0; b < HAK_REUSE_BUCKETS; b++)
        r->bytes[across][released][b] =
            atomic_exchange_explicit(&reuse_bytes[across][released][b], 0, memory_order_relaxed);
  r->huge = atomic_exchange_explicit(&reuse_huge_bytes, 0, memory_order_relaxed);
}

/* ---- the refault, measured in the program ------------------------------------------
 * The policy measures a refault at start, in a loop in which the kernel hands
 * back the pages it was just given, hot. A program's refault costs more (1.5
 * times on the project's VM: its pages come back from the page allocator
 * cold, or from the host). So now and then (at most every SAMPLE_MS) hakmem
 * faults in the start of a released range that it hands out again, with one
 * timed MADV_POPULATE_WRITE, before the program touches it: faults the
 * program would have taken itself. Not on malloc's fast path: only where a
 * page or a cached block that had been released is handed out again. */
#define SAMPLE_MS 20
#define SAMPLE_BYTES (64u << 10)
#define SAMPLE_NEVER UINT64_MAX  /* the kernel cannot (before 5.14) or may not */
static _Atomic uint64_t sample_next_ms, sample_ns, sample_bytes;

void _hak_refault_sample(void *p, size_t len, uint64_t now_ms) {
  uint64_t next = atomic_load_explicit(&sample_next_ms, memory_order_relaxed), ns;
  if (now_ms < next || next == SAMPLE_NEVER || !hak_opt(POLICY)) return;  /* (only the policy reads them) */
  if (!atomic_compare_exchange_strong(&sample_next_ms, &next, now_ms + SAMPLE_MS)) return;
  size_t n = len < SAMPLE_BYTES ? len : SAMPLE_BYTES;
  int err = _hak_os_populate(p, n, &ns);
  if (err == EINVAL || err == EPERM || err == ENOSYS) atomic_store(&sample_next_ms, SAMPLE_NEVER);
  if (err) return;  /* (ENOMEM, EINTR...: not this time) */
  atomic_fetch_add_explicit(&sample_ns, ns, memory_order_relaxed);
  atomic_fetch_add_explicit(&sample_bytes, n, memory_order_relaxed);
  hak_stat_inc(refault_samples);
}

void _hak_refault_take(uint64_t *ns, uint64_t *bytes) {
  *ns = atomic_exchange_explicit(&sample_ns, 0, memory_order_relaxed);
  *bytes = atomic_exchange_explicit(&sample_bytes, 0, memory_order_relaxed);
}
