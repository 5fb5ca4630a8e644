/* Shared pieces of the scenario benchmark (bench/scenarios): the per-thread
 * context, the deterministic PRNG and the allocation helpers that count
 * operations and make every byte handed out by malloc real work.
 *
 * The scenarios use only the standard malloc API so that one binary runs
 * under every allocator (LD_PRELOAD); nothing here links with hakmem. */
#ifndef SCEN_COMMON_H
#define SCEN_COMMON_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One operation = one malloc and its matching free. Every block a scenario
 * allocates is freed before its thread ends, so ops counts the mallocs. */
typedef struct scen_ctx {
  uint64_t rng;        /* xorshift64* state, seeded from the thread index */
  uint64_t ops;        /* mallocs done (each is freed later) */
  uint64_t checksum;   /* sum of bytes read back: defeats dead-store elision */
  uint64_t idle_ns;    /* time spent in scen_idle (deliberate sleep) */
  uint64_t stat[2];    /* a share the scenario measures: part, whole */
  int tid;             /* 0 .. nthreads-1 */
  int nthreads;
  struct scen_shared *shared; /* cross-thread hand-off (MIXED only) */
  void *state;         /* what the scenario's setup hook returned, shared */
  pthread_barrier_t *sync; /* all workers; NULL with one thread */
} scen_ctx_t;

/* Fixed seed: the same run under every allocator does the same work. */
#define SCEN_SEED 0x9e3779b97f4a7c15ULL

static inline void scen_seed(scen_ctx_t *c, int tid) {
  /* splitmix64 of seed+tid so neighbouring threads get unrelated streams */
  uint64_t z = SCEN_SEED + (uint64_t)(tid + 1) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  c->rng = (z ^ (z >> 31)) | 1;
}

static inline uint64_t scen_rand(scen_ctx_t *c) {
  uint64_t x = c->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  c->rng = x;
  return x * 0x2545f4914f6cdd1dULL;
}

/* Uniform in [lo, hi] (hi - lo small, bias irrelevant here). */
static inline size_t scen_range(scen_ctx_t *c, size_t lo, size_t hi) {
  return lo + (size_t)(scen_rand(c) % (hi - lo + 1));
}

/* True with probability pct/100. */
static inline int scen_chance(scen_ctx_t *c, unsigned pct) {
  return (unsigned)(scen_rand(c) % 100) < pct;
}

/* malloc that counts the op and aborts on failure (a benchmark has no
 * recovery path; a NULL would make the comparison meaningless). */
void *scen_alloc(scen_ctx_t *c, size_t size);

/* Fill n bytes with a pattern derived from seed (the write half of the
 * real work), and sum them back (the read half). */
void scen_fill(void *p, size_t n, uint64_t seed);
uint64_t scen_sum(const void *p, size_t n);

/* Waits for every worker thread (nothing with one thread). */
static inline void scen_sync(scen_ctx_t *c) {
  if (c->sync) pthread_barrier_wait(c->sync);
}

/* An idle gap of the whole process: every thread stops at a barrier, thread 0
 * sleeps ms, then all go on. Only thread 0 accounts the sleep (idle_ns), so
 * the driver's idle figure is the process's idle time. */
void scen_idle(scen_ctx_t *c, unsigned ms);

/* Writes one 64-byte line in every 4 KiB page of p[0..n) and reads them
 * back: each page is really used, at a fraction of a memset's cost. */
void scen_touch_pages(scen_ctx_t *c, void *p, size_t n);
/* The read half alone: the sum of the first line of every page. */
uint64_t scen_sum_pages(const void *p, size_t n);

/* ---- scenarios: each runs one thread's share of the workload ---------- */
typedef struct scen_shared scen_shared_t;

/* Units of work, also used by MIXED. `units` is how many to run. */
void scen_json_run(scen_ctx_t *c, uint64_t units);
void scen_mir_run(scen_ctx_t *c, uint64_t units);
void scen_vm_run(scen_ctx_t *c, uint64_t units);
void scen_mixed_run(scen_ctx_t *c, uint64_t units);
void scen_churn_run(scen_ctx_t *c, uint64_t units);
void scen_prodcons_run(scen_ctx_t *c, uint64_t units);
void scen_falseshare_run(scen_ctx_t *c, uint64_t units);
void scen_largechurn_run(scen_ctx_t *c, uint64_t units);
void scen_kvserver_run(scen_ctx_t *c, uint64_t units);
void scen_phases_run(scen_ctx_t *c, uint64_t units);

/* State shared by the threads of one scenario (setup before the workload,
 * outside the measurement; teardown after it). */
void *scen_prodcons_setup(int nthreads, uint64_t units);
void scen_prodcons_teardown(void *state);
void *scen_falseshare_setup(int nthreads, uint64_t units);
void scen_falseshare_teardown(void *state);
void *scen_largechurn_setup(int nthreads, uint64_t units);
void scen_largechurn_teardown(void *state);

/* The RSS sampler (a helper process, see scen_sampler.c). */
typedef struct rss_sampler rss_sampler_t;
typedef struct rss_report {
  double integral_mib_s; /* RSS integrated over the sampled interval */
  long samples;
} rss_report_t;
rss_sampler_t *rss_sampler_spawn(void);         /* NULL: not available */
void rss_sampler_start(rss_sampler_t *s);
int rss_sampler_stop(rss_sampler_t *s, rss_report_t *out); /* 0 on success */
int rss_sampler_main(int argc, char **argv);     /* the helper's own main */

/* Building blocks MIXED composes (each thread owns its state). */
typedef struct json_doc json_doc_t;
json_doc_t *json_doc_build(scen_ctx_t *c);
void json_doc_use(scen_ctx_t *c, json_doc_t *d);
void json_doc_free(json_doc_t *d);
/* The link MIXED uses to pass documents between threads. */
json_doc_t **json_doc_next(json_doc_t *d);

typedef struct mir_module mir_module_t;
mir_module_t *mir_module_new(scen_ctx_t *c);
void mir_function(scen_ctx_t *c, mir_module_t *m);
void mir_module_free(mir_module_t *m);

typedef struct vm_heap vm_heap_t;
vm_heap_t *vm_heap_new(scen_ctx_t *c, unsigned slots);
void vm_round(scen_ctx_t *c, vm_heap_t *h, unsigned max_blocks);
void vm_heap_free(vm_heap_t *h);

/* MIXED hand-off between threads; set up by the driver. */
scen_shared_t *scen_shared_new(int nthreads);
void scen_shared_free(scen_shared_t *s);

#endif
