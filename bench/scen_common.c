/* Allocation helpers shared by the scenarios: counted malloc, and the
 * write/read work that makes every allocated byte really used. */
#include <stdio.h>
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
