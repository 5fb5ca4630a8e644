/* LARGECHURN scenario: a program that churns big buffers (image or video
 * frames, decompression buffers, batches of a data pipeline): blocks of
 * 5-25 MiB, each written in full when allocated (memset), alive for a short
 * time, and often freed by another thread than the one that allocated it.
 *
 * Each unit, a thread allocates and fills one block. One in four is a
 * temporary that it reads and frees at once; the others go into one of
 * 2 x threads shared slots (an atomic exchange), and the block that was in
 * that slot, allocated by any thread, is read and freed. So at most
 * 3 x threads blocks are alive (about 45 MiB per thread on average). */
#include "scen_common.h"

#define LC_MIN (5u << 20)
#define LC_MAX (25u << 20)
#define LC_TEMP_PCT 25

typedef struct lc_state {
  int nslots;
  unsigned char *slot[]; /* each block starts with its size */
} lc_state_t;

void *scen_largechurn_setup(int nthreads, uint64_t units) {
  (void)units;
  int n = 2 * nthreads;
  lc_state_t *s = calloc(1, sizeof(*s) + (size_t)n * sizeof(s->slot[0]));
  if (!s) abort();
  s->nslots = n;
  return s;
}

void scen_largechurn_teardown(void *state) { free(state); }

static unsigned char *lc_new(scen_ctx_t *c) {
  size_t size = scen_range(c, LC_MIN, LC_MAX);
  unsigned char *p = scen_alloc(c, size);
  scen_fill(p, size, c->rng);
  memcpy(p, &size, sizeof size);
  return p;
}

/* Reads a line of every page (the consumer of the buffer), then frees. */
static void lc_drop(scen_ctx_t *c, unsigned char *p) {
  size_t size;
  memcpy(&size, p, sizeof size);
  c->checksum += scen_sum_pages(p, size);
  free(p);
}

void scen_largechurn_run(scen_ctx_t *c, uint64_t units) {
  lc_state_t *s = c->state;
  for (uint64_t u = 0; u < units; u++) {
    unsigned char *p = lc_new(c);
    if (scen_chance(c, LC_TEMP_PCT)) {
      lc_drop(c, p);
      continue;
    }
    unsigned char *old = __atomic_exchange_n(&s->slot[scen_rand(c) % (uint64_t)s->nslots], p,
                                             __ATOMIC_ACQ_REL);
    if (old) lc_drop(c, old);
  }
  /* Once every thread has stopped exchanging, thread 0 empties the slots. */
  scen_sync(c);
  if (c->tid != 0) return;
  for (int i = 0; i < s->nslots; i++)
    if (s->slot[i]) lc_drop(c, s->slot[i]), s->slot[i] = NULL;
}
