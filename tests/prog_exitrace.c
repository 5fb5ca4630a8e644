/* Calls exit() while 3 threads allocate, free and flush: the exit flush and report must not crash or hang. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hakmem.h"

static void *churn(void *arg) {
  size_t big = (size_t)(unsigned long)arg;
  for (unsigned i = 0;; i++) {
    void *p = hak_malloc(i % 4 ? 64 + i % 2000 : big);
    if (p) memset(p, 1, 64);
    hak_free(p);
    if (i % 64 == 0) hak_flush();
  }
  return NULL;
}

int main(void) {
  pthread_t t;
  for (unsigned long i = 0; i < 3; i++)
    pthread_create(&t, NULL, churn, (void *)((300UL + i * 200) * 1024));
  struct timespec ts = {0, 30 * 1000 * 1000};
  nanosleep(&ts, NULL);
  exit(0);  /* the others are still inside the allocator */
}
