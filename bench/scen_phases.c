/* PHASES scenario: a program whose work comes in phases with idle time in
 * between (a batch job between inputs, a compiler between files, a service
 * with a daily rhythm, compressed): each phase is a burst that keeps a
 * working set of large (2-16 MiB) and medium (32-256 KiB) blocks and keeps
 * replacing them (freed blocks are needed again within microseconds), then
 * frees all of it; then the whole process sleeps 100-300 ms (time in which
 * an allocator may return the memory to the kernel); the next phase uses
 * another size mix. The four mixes repeat in turn.
 *
 * The figures of merit are CPU per op (reuse vs. faulting memory back in)
 * and the RSS integral (memory held over time, idle gaps included). */
#include "scen_common.h"

#define PH_ROUNDS 300 /* block replacements per thread and phase */
#define PH_IDLE_MIN_MS 100
#define PH_IDLE_MAX_MS 300
#define PH_LARGE_SLOTS 4
#define PH_MEDIUM_SLOTS 64

typedef struct ph_mix {
  size_t large_lo, large_hi, medium_lo, medium_hi;
  unsigned large_pct; /* share of replacements that are large blocks */
} ph_mix_t;

#define KiB(n) ((size_t)(n) << 10)
#define MiB(n) ((size_t)(n) << 20)
static const ph_mix_t mixes[] = {
  {MiB(2), MiB(4), KiB(32), KiB(64), 20},     /* many smallish buffers */
  {MiB(8), MiB(16), KiB(128), KiB(256), 25},  /* big buffers */
  {MiB(4), MiB(8), KiB(64), KiB(128), 10},    /* mostly medium */
  {MiB(2), MiB(16), KiB(32), KiB(256), 15},   /* everything */
};
#define PH_MIXES (sizeof(mixes) / sizeof(mixes[0]))

typedef struct ph_block {
  unsigned char *p;
  size_t size;
} ph_block_t;

static void ph_drop(scen_ctx_t *c, ph_block_t *b) {
  if (!b->p) return;
  c->checksum += scen_sum(b->p, 64);
  free(b->p);
  b->p = NULL;
}

static void ph_replace(scen_ctx_t *c, ph_block_t *b, size_t lo, size_t hi) {
  ph_drop(c, b);
  b->size = scen_range(c, lo, hi);
  b->p = scen_alloc(c, b->size);
  scen_touch_pages(c, b->p, b->size);
}

static void ph_burst(scen_ctx_t *c, const ph_mix_t *m) {
  ph_block_t large[PH_LARGE_SLOTS] = {0}, medium[PH_MEDIUM_SLOTS] = {0};
  for (int r = 0; r < PH_ROUNDS; r++) {
    if (scen_chance(c, m->large_pct))
      ph_replace(c, &large[scen_rand(c) % PH_LARGE_SLOTS], m->large_lo, m->large_hi);
    else
      ph_replace(c, &medium[scen_rand(c) % PH_MEDIUM_SLOTS], m->medium_lo, m->medium_hi);
  }
  for (int i = 0; i < PH_LARGE_SLOTS; i++) ph_drop(c, &large[i]);
  for (int i = 0; i < PH_MEDIUM_SLOTS; i++) ph_drop(c, &medium[i]);
}

/* One unit is one phase: a burst, then (but after the last) the idle gap. */
void scen_phases_run(scen_ctx_t *c, uint64_t units) {
  for (uint64_t u = 0; u < units; u++) {
    ph_burst(c, &mixes[u % PH_MIXES]);
    if (u + 1 < units)
      scen_idle(c, c->tid == 0 ? (unsigned)scen_range(c, PH_IDLE_MIN_MS, PH_IDLE_MAX_MS) : 0);
  }
}
