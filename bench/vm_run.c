/* The VM scenario, one measured run: every thread allocates its large blocks,
 * touches every page, and frees them; a barrier between the phases makes each
 * iteration queue exactly threads x blocks ranges, so that the batch fills and
 * flushes by count (not by time) and the next iteration reuses released
 * blocks. The barrier spins: a thread that waits keeps running on its CPU, as
 * a busy thread of a real program would, so every flush must shoot down its
 * TLB too (remote shootdowns). The run ends with hak_flush(), so nothing leaks
 * into the next run. */
#include "vm.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sdt.h>
#include <time.h>

/* A barrier that spins (yielding only when threads outnumber CPUs). */
typedef struct spin_barrier_s {
  atomic_uint arrived, generation;
  unsigned n;
  int yield;
} spin_barrier_t;

static void spin_wait(spin_barrier_t *b) {
  unsigned gen = atomic_load(&b->generation);
  if (atomic_fetch_add(&b->arrived, 1) + 1 == b->n) {
    atomic_store(&b->arrived, 0);
    atomic_fetch_add(&b->generation, 1);
    return;
  }
  /* No pause instruction: in a VM, pause loops make the vCPU exit to the host. */
  for (unsigned spins = 1; atomic_load_explicit(&b->generation, memory_order_acquire) == gen; spins++)
    if (b->yield && spins % 1024 == 0) sched_yield();
}

typedef struct worker_s {
  const vm_config_t *cfg;
  int id, iters;
  spin_barrier_t *bar;
  uint64_t *lat;          /* ns of every free, or NULL (warm-up) */
  void **blk;             /* the thread's blocks (allocated outside the window) */
  const char *label;      /* progress line */
  int fail;
} worker_t;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One write per 4 KiB page: every page is faulted in (a 2 MiB block is one
 * fault when it gets a transparent huge page). */
static void touch(volatile char *p, size_t n) {
  for (size_t off = 0; off < n; off += 4096) p[off] = (char)(off >> 12);
}

static void *worker(void *arg) {
  worker_t *w = arg;
  const vm_config_t *c = w->cfg;
  void **blk = w->blk;
  size_t k = 0;
  for (int it = 0; it < w->iters; it++) {
    for (int b = 0; b < c->blocks; b++) {
      blk[b] = hak_malloc(c->block_size);
      if (!blk[b]) { w->fail = 1; break; }
      touch(blk[b], c->block_size);
    }
    spin_wait(w->bar);
    for (int b = 0; b < c->blocks; b++) {
      uint64_t t0 = now_ns();
      hak_free(blk[b]);
      uint64_t t1 = now_ns();
      if (w->lat) w->lat[k++] = t1 - t0;
    }
    spin_wait(w->bar);
    if (w->id == 0 && w->label && c->progress)
      fprintf(stderr, "\r\033[K%s: iteration %d/%d", w->label, it + 1, w->iters);
  }
  return NULL;
}

static int sysconf_cpus(void) {
  cpu_set_t set;
  return sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
}

#define STACK_SIZE (1u << 20)

/* Thread stacks of our own: glibc madvises the stacks it allocated when a
 * thread exits, and those madvise calls and TLB flushes are not hakmem's. */
static char *map_stacks(int n) {
  void *p = mmap(NULL, (size_t)n * STACK_SIZE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* Runs iters iterations on cfg->threads threads; lat (or NULL) gets every free. */
static int run_threads(const vm_config_t *cfg, int iters, uint64_t *lat, const char *label,
                       char *stacks, void **blk) {
  int n = cfg->threads;
  pthread_t *t = calloc((size_t)n, sizeof *t);
  worker_t *w = calloc((size_t)n, sizeof *w);
  spin_barrier_t bar = {.n = (unsigned)n, .yield = n > sysconf_cpus()};
  int fail = 0;
  if (!t || !w) { free(t); free(w); return -1; }
  size_t per = (size_t)iters * (size_t)cfg->blocks;
  for (int i = 0; i < n; i++) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstack(&attr, stacks + (size_t)i * STACK_SIZE, STACK_SIZE);
    w[i] = (worker_t){cfg, i, iters, &bar, lat ? lat + per * (size_t)i : NULL,
                      blk + (size_t)i * (size_t)cfg->blocks, label, 0};
    if (pthread_create(&t[i], &attr, worker, &w[i]) != 0) { fprintf(stderr, "vm: pthread_create failed\n"); exit(1); }
    pthread_attr_destroy(&attr);
  }
  for (int i = 0; i < n; i++) {
    pthread_join(t[i], NULL);
    fail |= w[i].fail;
  }
  free(t);
  free(w);
  return fail ? -1 : 0;
}

static void set_option(const char *name, const char *fmt, long long v) {
  char buf[64];
  snprintf(buf, sizeof buf, fmt, v);
  if (hak_option_set(name, buf) != 0) fprintf(stderr, "vm: hak_option_set(%s, %s) failed\n", name, buf);
}

/* The batch fills by count: bytes and time never trigger first. */
static void configure(const vm_config_t *cfg, int mode) {
  long long per_iter = (long long)cfg->threads * cfg->blocks * (long long)cfg->block_size;
  /* Flushes run inside the free that reaches the limit, not on the purge
   * thread: the frees' latency then shows each flush's cost (see latency()). */
  hak_option_set("PURGE_THREAD", "0");
  hak_option_set("FLUSH", vm_mode_name(mode));
  set_option("BATCH_MAX", "%lld", cfg->batch);
  set_option("BATCH_BYTES", "%lld", (long long)cfg->batch * (long long)cfg->block_size + 4096);
  set_option("PURGE_DELAY_MS", "%lld", -1);
  set_option("CACHE_BYTES", "%lld", 2 * per_iter + (64LL << 20));
  hak_option_set("ADVICE", cfg->advice_free ? "free" : "dontneed");
}

/* VmHWM and VmRSS of /proc/self/status, in bytes. */
static void read_rss(uint64_t *peak, uint64_t *now) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  unsigned long long kb;
  *peak = *now = 0;
  if (!f) return;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "VmHWM: %llu kB", &kb) == 1) *peak = kb * 1024;
    else if (sscanf(line, "VmRSS: %llu kB", &kb) == 1) *now = kb * 1024;
  }
  fclose(f);
}

/* Writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS. */
static void reset_peak_rss(void) {
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (!f) return;
  fputs("5", f);
  fclose(f);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* The frees that triggered a flush are taken to be the k slowest: a flush
 * runs synchronously inside the free that fills the batch. */
static void latency(uint64_t *lat, size_t n, uint64_t k, vm_latency_t *out) {
  memset(out, 0, sizeof *out);
  if (k == 0 || n == 0) return;
  if (k > n) k = n;
  qsort(lat, n, sizeof *lat, cmp_u64);
  const uint64_t *top = lat + (n - k);
  out->n = k;
  out->p50_us = (double)top[(k - 1) / 2] / 1e3;
  out->p99_us = (double)top[(size_t)((double)(k - 1) * 0.99)] / 1e3;
  out->max_us = (double)top[k - 1] / 1e3;
}

static void fill_stats(vm_run_t *r, const hak_stats_t *a, const hak_stats_t *b) {
  r->mode = b->flush_mode;
  snprintf(r->fallback, sizeof r->fallback, "%s", b->fallback_reason);
  r->flush_calls = b->flushes - a->flushes;
  r->syscalls = b->flush_syscalls - a->flush_syscalls;
  r->ranges = b->ranges_flushed - a->ranges_flushed;
  r->flush_ns = b->flush_ns - a->flush_ns;
  r->cancelled = b->ranges_cancelled - a->ranges_cancelled;
  r->triggered = (b->flush_by_count - a->flush_by_count) + (b->flush_by_bytes - a->flush_by_bytes) +
                 (b->flush_by_delay - a->flush_by_delay);
}

int vm_run_scenario(const vm_config_t *cfg, hperf_t *perf, int mode, int rep, vm_run_t *out,
                    int run_index, int run_total) {
  size_t nlat = (size_t)cfg->threads * (size_t)cfg->iters * (size_t)cfg->blocks;
  uint64_t *lat = calloc(nlat, sizeof *lat);
  char *stacks = map_stacks(cfg->threads);
  void **blk = calloc((size_t)cfg->threads * (size_t)cfg->blocks, sizeof *blk);
  char label[96];
  hak_stats_t a, b;
  if (!lat || !stacks || !blk) { free(lat); free(blk); return -1; }
  memset(out, 0, sizeof *out);
  out->mode_requested = mode;
  out->rep = rep;
  snprintf(label, sizeof label, "vm: run %d/%d (%s, repetition %d)", run_index, run_total,
           vm_mode_name(mode), rep);
  configure(cfg, mode);
  /* Warm-up: maps the blocks, so that every measured run starts from a full
   * cache of released blocks whatever ran before it. */
  int rc = run_threads(cfg, 1, NULL, NULL, stacks, blk);
  hak_flush();
  reset_peak_rss();
  hak_stats(&a);
  /* volatile: perf 6.1 drops probe arguments the compiler folded to constants */
  volatile int probe_mode = mode, probe_rep = rep;
  if (perf) hperf_start(perf);
  DTRACE_PROBE2(hakmem, scenario_begin, probe_mode, probe_rep);
  uint64_t t0 = now_ns();
  rc |= run_threads(cfg, cfg->iters, lat, label, stacks, blk);
  hak_flush();
  uint64_t t1 = now_ns();
  DTRACE_PROBE2(hakmem, scenario_end, probe_mode, probe_rep);
  if (perf) {
    hperf_stop(perf);
    hperf_read(perf, &out->perf);
    out->have_perf = 1;
  }
  hak_stats(&b);
  read_rss(&out->rss_peak, &out->rss_final);
  fill_stats(out, &a, &b);
  out->ops = nlat;
  out->seconds = (double)(t1 - t0) / 1e9;
  out->ns_per_op = (double)(t1 - t0) / (double)nlat;
  latency(lat, nlat, out->triggered, &out->lat);
  if (cfg->progress) fprintf(stderr, "\r\033[K");
  free(lat);
  free(blk);
  munmap(stacks, (size_t)cfg->threads * STACK_SIZE);
  return rc;
}
