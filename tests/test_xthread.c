/* Cross-thread frees: one thread allocates and fills, 1 to 7 others verify and free, across many size classes. */
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"

enum { QCAP = 512, ITEMS = 30000 };

typedef struct item_s {
  void *p;
  size_t size;
  uint64_t seed;
} item_t;

/* A bounded queue of blocks in flight from the producer to the consumers. */
typedef struct queue_s {
  pthread_mutex_t lock;
  pthread_cond_t not_empty, not_full;
  item_t items[QCAP];
  int head, count, done;
  atomic_long bad, freed;
  char first_bad[200];
} queue_t;

static void q_push(queue_t *q, item_t it) {
  pthread_mutex_lock(&q->lock);
  while (q->count == QCAP) pthread_cond_wait(&q->not_full, &q->lock);
  q->items[(q->head + q->count) % QCAP] = it;
  q->count++;
  pthread_cond_signal(&q->not_empty);
  pthread_mutex_unlock(&q->lock);
}

/* 0 when the producer is done and the queue is empty. */
static int q_pop(queue_t *q, item_t *it) {
  pthread_mutex_lock(&q->lock);
  while (q->count == 0 && !q->done) pthread_cond_wait(&q->not_empty, &q->lock);
  int got = q->count > 0;
  if (got) {
    *it = q->items[q->head];
    q->head = (q->head + 1) % QCAP;
    q->count--;
    pthread_cond_signal(&q->not_full);
  }
  pthread_mutex_unlock(&q->lock);
  return got;
}

/* Many classes: tiny, odd sizes, page-sized, up to the large path now and then. */
static size_t size_for(int i) {
  static const size_t base[] = {1,    8,    16,    24,    40,    64,     100,    128,
                                200,  256,  500,   512,   1000,  1024,   2048,   3000,
                                4096, 5000, 8192,  12000, 16384, 32768,  65536,  100000,
                                131072, 200000, 262144};
  if (i % 97 == 0) return 300 * KiB + (size_t)(i % 5) * 100 * KiB;  /* large */
  return base[i % (sizeof base / sizeof base[0])];
}

static void *producer(void *arg) {
  queue_t *q = arg;
  for (int i = 0; i < ITEMS; i++) {
    size_t sz = size_for(i);
    void *p = hak_malloc(sz);
    if (!p) {
      atomic_fetch_add(&q->bad, 1);
      continue;
    }
    tu_fill(p, sz < 4096 ? sz : 4096, (uint64_t)i);  /* the head is enough to see a mixup */
    if (sz > 4096) tu_fill((char *)p + sz - 64, 64, (uint64_t)i + 7);
    q_push(q, (item_t){p, sz, (uint64_t)i});
  }
  pthread_mutex_lock(&q->lock);
  q->done = 1;
  pthread_cond_broadcast(&q->not_empty);
  pthread_mutex_unlock(&q->lock);
  return NULL;
}

static void *consumer(void *arg) {
  queue_t *q = arg;
  item_t it;
  while (q_pop(q, &it)) {
    size_t head = it.size < 4096 ? it.size : 4096;
    long off = tu_check(it.p, head, it.seed);
    if (off < 0 && it.size > 4096) off = tu_check((char *)it.p + it.size - 64, 64, it.seed + 7);
    if (off >= 0 && atomic_fetch_add(&q->bad, 1) == 0)
      snprintf(q->first_bad, sizeof q->first_bad, "block %p size %zu seed %llu bad at %ld", it.p,
               it.size, (unsigned long long)it.seed, off);
    hak_free(it.p);
    atomic_fetch_add(&q->freed, 1);
  }
  return NULL;
}

START_TEST(producer_consumers) {
  const int threads = _i;  /* 2..8 in all: one producer, threads-1 consumers */
  static queue_t q;
  memset(&q, 0, sizeof q);
  pthread_mutex_init(&q.lock, NULL);
  pthread_cond_init(&q.not_empty, NULL);
  pthread_cond_init(&q.not_full, NULL);
  hak_stats_reset();
  pthread_t prod, cons[8];
  ck_assert_int_eq(pthread_create(&prod, NULL, producer, &q), 0);
  for (int i = 0; i < threads - 1; i++)
    ck_assert_int_eq(pthread_create(&cons[i], NULL, consumer, &q), 0);
  pthread_join(prod, NULL);
  for (int i = 0; i < threads - 1; i++) pthread_join(cons[i], NULL);
  ck_assert_msg(atomic_load(&q.bad) == 0, "%d threads: %ld bad blocks; first: %s", threads,
                atomic_load(&q.bad), q.first_bad);
  ck_assert_int_eq(atomic_load(&q.freed), ITEMS);
  hak_stats_t s = tu_stats();
  ck_assert_msg(s.free_remote > 0, "no free counted as remote");
  hak_flush();
  ck_assert_uint_eq(tu_stats().flush_errors, 0);
}
END_TEST

/* Blocks whose owner thread has exited are freed by another thread, and the
 * memory is usable again afterwards. */
static void *alloc_and_exit(void *arg) {
  void **v = arg;
  for (int i = 0; i < 5000; i++) {
    v[i] = hak_malloc(size_for(i));
    if (v[i]) tu_fill(v[i], size_for(i) < 256 ? size_for(i) : 256, (uint64_t)i);
  }
  return NULL;
}

START_TEST(free_after_owner_exit) {
  static void *v[5000];
  for (int round = 0; round < 3; round++) {
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, alloc_and_exit, v), 0);
    pthread_join(t, NULL);
    for (int i = 0; i < 5000; i++) {
      ck_assert_ptr_nonnull(v[i]);
      ck_assert_pattern(v[i], size_for(i) < 256 ? size_for(i) : 256, (uint64_t)i);
      hak_free(v[i]);
    }
  }
  /* The freed memory is reused: a fresh batch, written whole, verifies. */
  for (int i = 0; i < 5000; i++) {
    v[i] = hak_malloc(size_for(i));
    ck_assert_ptr_nonnull(v[i]);
    tu_fill(v[i], size_for(i), (uint64_t)i + 99);
  }
  for (int i = 0; i < 5000; i++) {
    ck_assert_pattern(v[i], size_for(i), (uint64_t)i + 99);
    hak_free(v[i]);
  }
}
END_TEST

/* free's fast path knows the owner by the page's thread id, the thread
 * pointer (%fs:0) of its heap's thread. A thread created after another one
 * exited usually gets the dead one's thread pointer (glibc reuses its stack
 * and TCB): its free into the dead thread's pages must still be another
 * thread's free (counted free_remote), not a push on lists it does not own.
 * One free only: a slow free may start the purge thread, whose creation
 * allocates, and the thread then adopts the pooled heap, rightly. */
typedef struct heir_arg_s {
  void **v;
  uintptr_t tp;
} heir_arg_t;

static void *heir_alloc(void *arg) {
  heir_arg_t *a = arg;
  a->tp = (uintptr_t)__builtin_thread_pointer();
  for (int i = 0; i < 1000; i++) a->v[i] = hak_malloc(64);
  return NULL;
}

static void *heir_free(void *arg) {  /* no malloc first: this thread has no heap */
  heir_arg_t *a = arg;
  a->tp = (uintptr_t)__builtin_thread_pointer();
  hak_free(a->v[999]);  /* the last one: its page is not full */
  return NULL;
}

START_TEST(free_by_thread_with_dead_threads_pointer) {
  static void *v[1000];
  heir_arg_t dead = {v, 0}, heir = {v, 0};
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, heir_alloc, &dead), 0);
  pthread_join(t, NULL);
  hak_stats_t a = tu_stats();
  ck_assert_int_eq(pthread_create(&t, NULL, heir_free, &heir), 0);
  pthread_join(t, NULL);
  hak_stats_t b = tu_stats();
  if (heir.tp != dead.tp) printf("note: the second thread got a new thread pointer here\n");
  ck_assert_uint_eq(b.free_remote - a.free_remote, 1);
  for (int i = 0; i < 999; i++) hak_free(v[i]);
}
END_TEST

/* Every thread frees what its neighbour allocated, at the same time. */
typedef struct ring_arg_s {
  void **mine, **theirs;
  int n;
  pthread_barrier_t *bar;
  atomic_long *bad;
} ring_arg_t;

static void *ring_worker(void *arg) {
  ring_arg_t *a = arg;
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < a->n; i++) {
      a->mine[i] = hak_malloc(size_for(i + round));
      if (a->mine[i]) tu_fill(a->mine[i], size_for(i + round) < 64 ? size_for(i + round) : 64,
                              (uint64_t)(i + round));
    }
    pthread_barrier_wait(a->bar);
    for (int i = 0; i < a->n; i++) {
      size_t n = size_for(i + round) < 64 ? size_for(i + round) : 64;
      if (!a->theirs[i] || tu_check(a->theirs[i], n, (uint64_t)(i + round)) >= 0)
        atomic_fetch_add(a->bad, 1);
      hak_free(a->theirs[i]);
    }
    pthread_barrier_wait(a->bar);
  }
  return NULL;
}

START_TEST(all_to_all_ring) {
  const int threads = _i;
  enum { N = 400 };
  static void *slots[8][N];
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, (unsigned)threads);
  atomic_long bad = 0;
  ring_arg_t args[8];
  pthread_t th[8];
  for (int t = 0; t < threads; t++)
    args[t] = (ring_arg_t){slots[t], slots[(t + 1) % threads], N, &bar, &bad};
  for (int t = 0; t < threads; t++)
    ck_assert_int_eq(pthread_create(&th[t], NULL, ring_worker, &args[t]), 0);
  for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
  pthread_barrier_destroy(&bar);
  ck_assert_int_eq(atomic_load(&bad), 0);
}
END_TEST

Suite *test_xthread_suite(void) {
  Suite *s = suite_create("xthread");
  TCase *tc = tcase_create("xthread");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, producer_consumers, 2, 9);
  tcase_add_test(tc, free_after_owner_exit);
  tcase_add_test(tc, free_by_thread_with_dead_threads_pointer);
  tcase_add_loop_test(tc, all_to_all_ring, 2, 9);
  suite_add_tcase(s, tc);
  return s;
}
