/* A program with 96 KiB of static TLS frees a large block and goes quiet: prints whether the purge thread released it after PURGE_DELAY_MS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "hakmem.h"

static __thread char big[96 * 1024];  /* static TLS lives on every thread's stack */

int main(void) {
  volatile char *b = big;
  b[0] = 1;
  b[sizeof big - 1] = 1;
  const size_t n = 8 << 20;
  unsigned char *p = malloc(n);
  if (!p) return 2;
  memset(p, 0x5a, n);
  __asm__ volatile("" : : "r"(p) : "memory");  /* the pages are touched: keep the memset */
  void *addr;                                   /* looked at with mincore after the free */
  __asm__("" : "=r"(addr) : "0"(p));
  free(p);  /* queued; the block stays mapped in the cache */
  /* Quiet: no allocator call but hak_stats (which never flushes), up to 3 s. */
  hak_stats_t st;
  for (int i = 0; i < 30; i++) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    hak_stats(&st);
    if (st.pending_ranges == 0) break;
  }
  static unsigned char vec[(8 << 20) / 4096];
  size_t resident = 0;
  if (mincore(addr, n, vec) == 0)
    for (size_t i = 0; i < sizeof vec; i++) resident += vec[i] & 1;
  printf("pending=%llu flush_by_delay=%llu resident=%zu of %zu\n",
         (unsigned long long)st.pending_ranges, (unsigned long long)st.flush_by_delay, resident,
         sizeof vec);
  return 0;
}
