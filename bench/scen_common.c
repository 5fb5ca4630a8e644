/* Allocation helpers shared by the scenarios: counted malloc, and the
 * write/read work that makes every allocated byte really used, and the
 * process-wide idle gap of the scenarios that have one. */
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include "scen_common.h"

void *scen_alloc(scen_ctx_t *c, size_t size) {
  void *p = malloc(size);
  if (!p) {
    fprintf(stderr, "scenarios: malloc(%zu) failed\n", size);
    abort();
  }
  c->ops++;
  return p;
}

/* memset: the cheapest way to write every byte; the value varies so that
 * no allocator can rely on memory being zero. */
void scen_fill(void *p, size_t n, uint64_t seed) {
  memset(p, (int)((seed >> 7) & 0xff) | 1, n);
}

/* Word-wise sum (memcpy keeps unaligned tails legal). */
uint64_t scen_sum(const void *p, size_t n) {
  const unsigned char *b = p;
  uint64_t s = 0, w;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    memcpy(&w, b + i, 8);
    s += w;
  }
  for (; i < n; i++) s += b[i];
  return s;
}

#define PAGE 4096u
#define LINE 64u

/* The line at off, cut at the end of the block. */
static size_t line_at(size_t n, size_t off) { return n - off < LINE ? n - off : LINE; }

void scen_touch_pages(scen_ctx_t *c, void *p, size_t n) {
  unsigned char *b = p;
  uint64_t seed = scen_rand(c);
  for (size_t off = 0; off < n; off += PAGE) scen_fill(b + off, line_at(n, off), seed + off);
  c->checksum += scen_sum_pages(b, n);
}

uint64_t scen_sum_pages(const void *p, size_t n) {
  const unsigned char *b = p;
  uint64_t s = 0;
  for (size_t off = 0; off < n; off += PAGE) s += scen_sum(b + off, line_at(n, off));
  return s;
}

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The other threads wait in the barrier (asleep in the kernel), so the whole
 * process is idle, as a server between bursts is: an allocator that returns
 * memory on a timer gets its chance, one that acts only inside malloc/free
 * does not. */
void scen_idle(scen_ctx_t *c, unsigned ms) {
  scen_sync(c);
  if (c->tid == 0) {
    uint64_t t0 = mono_ns();
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
    c->idle_ns += mono_ns() - t0;
  }
  scen_sync(c);
}
