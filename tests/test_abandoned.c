/* Memory freed into the heaps of exited threads is given back by the purge thread, without trim or a new thread to adopt them. */
#include <pthread.h>
#include <time.h>

#include "testutil.h"

enum { THREADS = 64, BLOCKS = 2000 };
#define BLOCK_SIZE 256

typedef struct {
  void *blocks[BLOCKS];
} handoff_t;

/* Fills a few pages with small blocks, hands them all over, and exits. */
static void *producer(void *arg) {
  handoff_t *h = arg;
  for (int i = 0; i < BLOCKS; i++) {
    h->blocks[i] = hak_malloc(BLOCK_SIZE);
    tu_fill(h->blocks[i], BLOCK_SIZE, (uint64_t)i);
  }
  return NULL;
}

START_TEST(exited_threads_pages_released) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "PURGE_DELAY_MS", "5");
  static handoff_t h[THREADS];
  for (int t = 0; t < THREADS; t++) {
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, producer, &h[t]), 0);
    ck_assert_int_eq(pthread_join(tid, NULL), 0);
  }
  hak_stats_t a = tu_stats();
  /* Every block dies here, in pages whose owners are gone. */
  for (int t = 0; t < THREADS; t++)
    for (int i = 0; i < BLOCKS; i++) {
      ck_assert_pattern(h[t].blocks[i], BLOCK_SIZE, (uint64_t)i);
      hak_free(h[t].blocks[i]);
    }
  /* No allocator call from here on: only the purge thread can act. */
  hak_stats_t b;
  for (int waited = 0; waited < 5000; waited += 20) {
    tu_sleep_ms(20);
    b = tu_stats();
    if (b.abandoned_pages_released > a.abandoned_pages_released && b.pending_ranges == 0) break;
  }
  ck_assert_msg(b.purge_thread == 1, "purge thread state %d", b.purge_thread);
  ck_assert_msg(b.abandoned_pages_released > a.abandoned_pages_released,
                "no page of an exited thread was released (freed %d blocks into them)",
                THREADS * BLOCKS);
  ck_assert_msg(b.pending_ranges == 0, "%llu ranges still pending after the delay",
                (unsigned long long)b.pending_ranges);
  /* The pages are gone from the heaps: their memory is not resident. */
  size_t resident = 0;
  for (int t = 0; t < THREADS; t++) resident += tu_resident_pages(h[t].blocks[0], BLOCK_SIZE);
  ck_assert_msg(resident < THREADS / 4, "%zu of %d first blocks still resident", resident, THREADS);
  tu_opts_restore(&o);
}
END_TEST

Suite *test_abandoned_suite(void) {
  Suite *s = suite_create("abandoned");
  TCase *tc = tcase_create("abandoned");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, exited_threads_pages_released);
  suite_add_tcase(s, tc);
  return s;
}
