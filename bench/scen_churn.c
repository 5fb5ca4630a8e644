/* CHURN scenario: thread-local churn of mixed small sizes, the thread-local
 * test of the standard allocator benchmarks (mimalloc-bench's larson and
 * mstress without their hand-offs): each thread keeps a working set of
 * blocks and keeps replacing random ones by blocks of another size. */
#include "scen_common.h"

#define CHURN_SLOTS 4096 /* blocks alive per thread: ~1.2 MiB, past L2 */

typedef struct churn_block {
  size_t size;
  unsigned char *p;
} churn_block_t;

/* 16 B - 1 KiB, weighted to the small end; 2% up to 8 KiB. */
static size_t churn_size(scen_ctx_t *c) {
  unsigned r = (unsigned)(scen_rand(c) % 100);
  if (r < 60) return scen_range(c, 16, 128);
  if (r < 90) return scen_range(c, 129, 512);
  if (r < 98) return scen_range(c, 513, 1024);
  return scen_range(c, 1025, 8192);
}

/* Every byte is written when allocated ... */
static void churn_new(scen_ctx_t *c, churn_block_t *b) {
  b->size = churn_size(c);
  b->p = scen_alloc(c, b->size);
  scen_fill(b->p, b->size, c->rng);
}

/* ... and read back before it is freed. */
static void churn_drop(scen_ctx_t *c, churn_block_t *b) {
  c->checksum += scen_sum(b->p, b->size);
  free(b->p);
}

void scen_churn_run(scen_ctx_t *c, uint64_t units) {
  churn_block_t *set = scen_alloc(c, CHURN_SLOTS * sizeof(*set));
  for (int i = 0; i < CHURN_SLOTS; i++) churn_new(c, &set[i]);
  for (uint64_t u = 0; u < units; u++) {
    churn_block_t *b = &set[scen_rand(c) % CHURN_SLOTS];
    churn_drop(c, b);
    churn_new(c, b);
  }
  for (int i = 0; i < CHURN_SLOTS; i++) churn_drop(c, &set[i]);
  free(set);
}
