/* FALSESHARE scenario: small objects created by one thread and used by
 * others (a dispatcher creating per-connection counters, per-task state), in
 * the manner of mimalloc-bench's cache-scratch and cache-thrash. It measures
 * whether an allocator puts blocks that different threads write on one
 * cache line.
 *
 * Each unit: thread 0 (the dispatcher, also a worker) allocates FS_BLOCKS
 * blocks of 8-64 B for every thread, interleaved (thread 0's, thread 1's,
 * ...), as a dispatcher serving requests in turn would. Every worker writes
 * the blocks it was given a few times (they share lines with the other
 * workers' blocks whatever the allocator does), frees them (a remote free
 * for all but thread 0) and allocates FS_BLOCKS blocks of the same sizes
 * itself, which it writes FS_PASSES times. An allocator that hands the
 * worker the blocks it just freed (a per-thread cache fed by remote frees)
 * gives it lines the other workers write too: the writes then bounce the
 * line between CPUs (cache-scratch). One that places each thread's blocks
 * apart keeps them private (cache-thrash).
 *
 * The workers allocate, write and free in lock-step (barriers), so their
 * writes overlap in time. Write timing shows false sharing only where the
 * threads really run at the same time, so the placement is also measured
 * directly: between two barriers, each worker counts its own blocks that
 * share a cache line with another worker's own block (false_shared_pct). */
#include "scen_common.h"

#define FS_BLOCKS 32       /* blocks per thread and unit */
#define FS_HANDED_PASSES 8 /* writes of a handed-out block */
#define FS_PASSES 200      /* writes of each block the worker allocated */

typedef struct fs_block {
  unsigned char *p;
  size_t size;
} fs_block_t;

/* Two hand-out buffers: the dispatcher fills one while the workers may
 * still use the other, so one barrier per unit suffices. */
typedef struct fs_state {
  int nthreads;
  fs_block_t *handed[2]; /* [thread * FS_BLOCKS + i] */
  fs_block_t *own;       /* each worker's own blocks, published for the count */
} fs_state_t;

void *scen_falseshare_setup(int nthreads, uint64_t units) {
  (void)units;
  fs_state_t *s = calloc(1, sizeof(*s));
  if (!s) abort();
  s->nthreads = nthreads;
  for (int b = 0; b < 3; b++) {
    fs_block_t *a = calloc((size_t)nthreads * FS_BLOCKS, sizeof(fs_block_t));
    if (!a) abort();
    *(b < 2 ? &s->handed[b] : &s->own) = a;
  }
  return s;
}

void scen_falseshare_teardown(void *state) {
  fs_state_t *s = state;
  free(s->handed[0]);
  free(s->handed[1]);
  free(s->own);
  free(s);
}

/* Interleaved: consecutive allocations go to different threads. */
static void fs_dispatch(scen_ctx_t *c, fs_block_t *out) {
  for (int i = 0; i < FS_BLOCKS; i++)
    for (int t = 0; t < c->nthreads; t++) {
      fs_block_t *b = &out[t * FS_BLOCKS + i];
      b->size = scen_range(c, 8, 64);
      b->p = scen_alloc(c, b->size);
      scen_fill(b->p, b->size, 0);
    }
}

/* passes rounds over all blocks: each write is a store to the block's line. */
static void fs_write(scen_ctx_t *c, fs_block_t *b, int passes) {
  uint64_t seed = scen_rand(c);
  for (int k = 0; k < passes; k++)
    for (int i = 0; i < FS_BLOCKS; i++) scen_fill(b[i].p, b[i].size, seed + (uint64_t)k);
}

static void fs_release(scen_ctx_t *c, fs_block_t *b) {
  for (int i = 0; i < FS_BLOCKS; i++) {
    c->checksum += scen_sum(b[i].p, b[i].size);
    free(b[i].p);
  }
}

static int fs_overlap(const fs_block_t *a, const fs_block_t *b) {
  uintptr_t a0 = (uintptr_t)a->p >> 6, a1 = ((uintptr_t)a->p + a->size - 1) >> 6;
  uintptr_t b0 = (uintptr_t)b->p >> 6, b1 = ((uintptr_t)b->p + b->size - 1) >> 6;
  return a0 <= b1 && b0 <= a1;
}

/* My blocks that share a line with another worker's (all are alive now). */
static void fs_count(scen_ctx_t *c, const fs_state_t *s, const fs_block_t *own) {
  for (int i = 0; i < FS_BLOCKS; i++) {
    int shared = 0;
    for (int t = 0; t < c->nthreads && !shared; t++)
      for (int j = 0; j < FS_BLOCKS && t != c->tid && !shared; j++)
        shared = fs_overlap(&own[i], &s->own[t * FS_BLOCKS + j]);
    c->stat[0] += (uint64_t)shared;
  }
  c->stat[1] += FS_BLOCKS;
}

static void fs_unit(scen_ctx_t *c, fs_state_t *s, fs_block_t *mine) {
  fs_write(c, mine, FS_HANDED_PASSES);
  fs_release(c, mine);
  fs_block_t *own = s->own + c->tid * FS_BLOCKS;
  for (int i = 0; i < FS_BLOCKS; i++) {
    own[i].size = mine[i].size;
    own[i].p = scen_alloc(c, own[i].size);
  }
  if (c->nthreads > 1) {
    scen_sync(c); /* everyone's own blocks exist */
    fs_count(c, s, own);
    scen_sync(c); /* nobody frees one while another counts */
  }
  fs_write(c, own, FS_PASSES);
  fs_release(c, own);
}

void scen_falseshare_run(scen_ctx_t *c, uint64_t units) {
  fs_state_t *s = c->state;
  for (uint64_t u = 0; u < units; u++) {
    fs_block_t *buf = s->handed[u % 2];
    if (c->tid == 0) fs_dispatch(c, buf);
    scen_sync(c);
    fs_unit(c, s, buf + c->tid * FS_BLOCKS);
  }
}
