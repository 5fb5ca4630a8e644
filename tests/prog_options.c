/* Prints every option's value (hak_option_get) after some allocation from 4 threads: env parsing as seen by a program. */
#include <pthread.h>
#include <stdio.h>

#include "hakmem.h"

static const char *const names[] = {"FLUSH", "ADVICE", "BATCH_MAX", "BATCH_BYTES", "PURGE_DELAY_MS",
                                    "CACHE_BYTES", "POLICY", "MEMORY_WEIGHT", "PURGE_CAP_MS",
                                    "TELEMETRY"};

/* Several threads and both size paths, so that options read lazily (per
 * thread or per path) would be parsed, and complain, more than once. */
static void *work(void *arg) {
  (void)arg;
  for (int i = 0; i < 2000; i++) {
    void *p = hak_malloc((size_t)(i % 7 == 0 ? 300 * 1024 : 16 + i % 4096));
    if (p) *(volatile char *)p = 1;
    hak_free(p);
  }
  hak_flush();
  return NULL;
}

int main(void) {
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, work, NULL);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    printf("%s=%lld\n", names[i], hak_option_get(names[i]));
  return 0;
}
