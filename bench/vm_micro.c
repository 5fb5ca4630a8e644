/* The flush micro-benchmark: the time and TLB flushes of releasing one batch
 * of 256 queued 64 KiB ranges through each release backend (io/hak_io.h),
 * next to the floor: one madvise over one contiguous range of the same total
 * size. Sibling threads of the process spin on the other CPUs meanwhile, as
 * the scenario's threads do, so that a flush must reach them. */
#include "vm.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sdt.h>
#include <sys/uio.h>
#include <time.h>

#include "hak_io.h"

#define NRANGES 256
#define RANGE (64u << 10)
#define STRIDE (2 * RANGE)   /* a gap between ranges: 256 separate ranges */

static atomic_int spin_stop;

static void *spinner(void *arg) {
  (void)arg;
  /* No pause instruction: in a VM, pause loops make the vCPU exit to the host. */
  while (!atomic_load_explicit(&spin_stop, memory_order_relaxed)) {}
  return NULL;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Mode 0 is the floor: no release at all. */
static const hak_io_backend_t *backend_of(int mode) {
  return mode == 0 ? NULL : _hak_io_backend(mode);
}

static void touch_all(char *base, const struct iovec *iov, int n) {
  (void)base;
  for (int i = 0; i < n; i++)
    for (size_t off = 0; off < iov[i].iov_len; off += 4096) ((volatile char *)iov[i].iov_base)[off] = 1;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void add_counts(hperf_counts_t *sum, const hperf_counts_t *c) {
  for (int ev = 0; ev < HPERF_EVENT_COUNT; ev++) {
    if (sum->ev[ev].state == HPERF_COUNTED && c->ev[ev].state == HPERF_COUNTED)
      sum->ev[ev].value += c->ev[ev].value;
  }
  sum->tlb_samples += c->tlb_samples;
  sum->tlb_lost += c->tlb_lost;
  sum->tlb_pages_full += c->tlb_pages_full;
}

/* One mode: rounds of touch, then one timed release of the whole batch. */
static void measure(const vm_config_t *cfg, hperf_t *perf, char *region, vm_micro_t *m) {
  const hak_io_backend_t *be = backend_of(m->mode);
  struct iovec iov[NRANGES], floor_iov = {region, (size_t)NRANGES * RANGE};
  int advice = cfg->advice_free ? MADV_FREE : MADV_DONTNEED;
  double *us = calloc((size_t)cfg->micro_rounds, sizeof *us);
  uint64_t syscalls = 0;
  for (int i = 0; i < NRANGES; i++) iov[i] = (struct iovec){region + (size_t)i * STRIDE, RANGE};
  if (be) {
    int err = be->probe();
    if (err) { snprintf(m->why, sizeof m->why, "probe failed: %s", strerror(err)); free(us); return; }
  }
  volatile int probe_mode = m->mode;
  for (int r = 0; r < cfg->micro_rounds; r++) {
    hperf_counts_t c;
    hak_io_result_t res = {0};
    be ? touch_all(region, iov, NRANGES) : touch_all(region, &floor_iov, 1);
    if (perf) hperf_start(perf);
    DTRACE_PROBE1(hakmem, micro_begin, probe_mode);
    uint64_t t0 = now_ns();
    if (be) be->submit(iov, NRANGES, advice, &res);
    else res.syscalls = 1, res.err = madvise(region, floor_iov.iov_len, advice) ? errno : 0;
    uint64_t t1 = now_ns();
    DTRACE_PROBE1(hakmem, micro_end, probe_mode);
    if (perf) {
      hperf_stop(perf);
      hperf_read(perf, &c);
      if (r == 0) m->perf = c; else add_counts(&m->perf, &c);
      m->have_perf = 1;
    }
    if (res.err) { snprintf(m->why, sizeof m->why, "submit failed: %s", strerror(res.err)); free(us); return; }
    us[r] = (double)(t1 - t0) / 1e3;
    syscalls += res.syscalls;
  }
  qsort(us, (size_t)cfg->micro_rounds, sizeof *us, cmp_d);
  m->ok = 1;
  m->rounds = cfg->micro_rounds;
  m->us_p50 = us[(cfg->micro_rounds - 1) / 2];
  m->us_min = us[0];
  m->syscalls = (double)syscalls / cfg->micro_rounds;
  free(us);
}

int vm_run_micro(const vm_config_t *cfg, hperf_t *perf, vm_micro_t *out, int max) {
  size_t len = (size_t)NRANGES * STRIDE;
  char *region = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  int n = 0, nspin = cfg->threads - 1;
  pthread_t *spin = calloc((size_t)(nspin > 0 ? nspin : 1), sizeof *spin);
  if (region == MAP_FAILED || !spin) return -1;
  /* 4 KiB pages, as small pages are: no huge page may straddle two ranges. */
  madvise(region, len, MADV_NOHUGEPAGE);
  atomic_store(&spin_stop, 0);
  for (int i = 0; i < nspin; i++) pthread_create(&spin[i], NULL, spinner, NULL);
  for (int i = 0; i < cfg->nmodes && n < max - 1; i++, n++) {
    memset(&out[n], 0, sizeof out[n]);
    out[n].mode = cfg->modes[i];
    out[n].name = vm_mode_name(cfg->modes[i]);
    measure(cfg, perf, region, &out[n]);
  }
  memset(&out[n], 0, sizeof out[n]);
  out[n].mode = 0;
  out[n].name = "floor";
  measure(cfg, perf, region, &out[n++]);
  atomic_store(&spin_stop, 1);
  for (int i = 0; i < nspin; i++) pthread_join(spin[i], NULL);
  free(spin);
  munmap(region, len);
  return n;
}
