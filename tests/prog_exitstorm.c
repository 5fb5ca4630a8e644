/* Starts argv[1] threads (default 4) hammering malloc/free/flush, then calls exit(0) after argv[2] microseconds while they are mid-malloc. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hakmem.h"

static atomic_int started;

static void *hammer(void *arg) {
  unsigned long id = (unsigned long)arg;
  unsigned long x = 0x9E3779B97F4A7C15ul * (id + 1);
  void *keep[16] = {0};
  atomic_fetch_add(&started, 1);
  for (unsigned i = 0;; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    size_t r = x % 100;
    size_t sz = r < 70 ? 16 + x % 8192 : r < 95 ? 8192 + x % (248 * 1024) : 300 * 1024 + x % (3 << 20);
    void *p = malloc(sz);
    if (p) memset(p, (int)i, sz < 4096 ? sz : 4096);
    unsigned k = (unsigned)(x >> 20) % 16;
    free(keep[k]);  /* blocks live for a while, some are freed by exit time */
    keep[k] = p;
    if (i % 32 == 0) hak_flush();
    if (i % 512 == 0) hak_trim();
  }
  return NULL;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 4;
  long us = argc > 2 ? atol(argv[2]) : 1000;
  for (long i = 0; i < n; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, hammer, (void *)i) != 0) return 2;
  }
  while (atomic_load(&started) < n) sched_yield();
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  nanosleep(&ts, NULL);
  exit(0);  /* the others are inside the allocator */
}
