/* hperf counts a known number of madvise calls exactly (pinned to one CPU), on the calling thread and on the threads it creates. */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hakmem.h"
#include "hperf.h"

#define REGION (1u << 20)
#define THREADS 4
#define PER_THREAD 250
#define STACK (2u << 20)  /* sanitizer runtimes want more than the default minimum */

static char *region;

/* Every call advises one touched page, so each also flushes the TLB. */
static void advise_n(int n, int slot) {
  for (int i = 0; i < n; i++) {
    char *p = region + (size_t)((slot * 16 + i) % 256) * 4096;
    __atomic_store_n(p, 1, __ATOMIC_RELAXED);  /* threads share pages: no data race */
    madvise(p, 4096, MADV_DONTNEED);
  }
}




/* Pinned, so that migrations do not move counts; NULL (and SKIP) when the
 * syscall tracepoint cannot be counted here. */
static hperf_t *setup(const char *test) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(sched_getcpu(), &set);
  ck_assert_int_eq(sched_setaffinity(0, sizeof set, &set), 0);
  hperf_t *h = hperf_open();
  ck_assert_ptr_nonnull(h);
  const hperf_value_t *v = hperf_event_state(h, HPERF_SYS_MADVISE);
  if (v->state != HPERF_COUNTED) {
    fprintf(stderr, "SKIP: %s: syscalls:sys_enter_madvise %s (%s)\n", test,
            hperf_state_name(v->state), v->why);
    hperf_close(h);
    return NULL;
  }
  region = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ck_assert_ptr_ne(region, MAP_FAILED);
  hak_flush();
  return h;
}

/* madvise calls the allocator itself made inside the window are expected too. */
static uint64_t lib_madvise(void) {
  hak_stats_t st;
  hak_stats(&st);
  return st.madvise_calls;
}

START_TEST(counts_own_madvise_calls) {
  hperf_t *h = setup("perf_count:own");
  if (!h) return;
  uint64_t lib0 = lib_madvise();
  hperf_start(h);
  advise_n(1000, 0);
  hperf_stop(h);
  uint64_t lib = lib_madvise() - lib0;
  hperf_counts_t c;
  hperf_read(h, &c);
  ck_assert_int_eq(c.ev[HPERF_SYS_MADVISE].state, HPERF_COUNTED);
  ck_assert_uint_eq(c.ev[HPERF_SYS_MADVISE].value, 1000 + lib);
  ck_assert_uint_eq(c.ev[HPERF_SYS_PROCESS_MADVISE].value, 0);
  /* A second window starts from zero. */
  hperf_start(h);
  advise_n(7, 0);
  hperf_stop(h);
  hperf_read(h, &c);
  ck_assert_uint_eq(c.ev[HPERF_SYS_MADVISE].value, 7);
  hperf_close(h);
}
END_TEST

static pthread_barrier_t go, done, leave;

/* Starts and ends outside the counted window: a sanitizer runtime madvises
 * its own memory when threads start and end. */
static void *counted_worker(void *arg) {
  pthread_barrier_wait(&go);
  advise_n(PER_THREAD, (int)(long)arg);
  pthread_barrier_wait(&done);
  pthread_barrier_wait(&leave);
  return NULL;
}

START_TEST(counts_threads_it_creates) {
  hperf_t *h = setup("perf_count:threads");
  if (!h) return;
  /* Our own stacks: glibc madvises the stacks it allocated when a thread exits. */
  static char stacks[THREADS][STACK] __attribute__((aligned(4096)));
  pthread_t t[THREADS];
  pthread_barrier_init(&go, NULL, THREADS + 1);
  pthread_barrier_init(&done, NULL, THREADS + 1);
  pthread_barrier_init(&leave, NULL, THREADS + 1);
  for (long i = 0; i < THREADS; i++) {
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstack(&a, stacks[i], STACK);
    ck_assert_int_eq(pthread_create(&t[i], &a, counted_worker, (void *)(i + 1)), 0);
    pthread_attr_destroy(&a);
  }
  uint64_t lib0 = lib_madvise();
  hperf_start(h);
  advise_n(100, 0);
  pthread_barrier_wait(&go);
  pthread_barrier_wait(&done);
  hperf_stop(h);
  uint64_t lib = lib_madvise() - lib0;
  pthread_barrier_wait(&leave);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  hperf_counts_t c;
  hperf_read(h, &c);
  uint64_t want = 100 + THREADS * PER_THREAD + lib;
#ifdef HAK_SANITIZE
  /* A sanitizer runtime gives memory back with madvise on its own schedule
   * (ASan's allocator, TSan's shadow): a few calls of its own may land here. */
  ck_assert_msg(c.ev[HPERF_SYS_MADVISE].value >= want && c.ev[HPERF_SYS_MADVISE].value <= want + 32,
                "%llu madvise calls counted, want %llu (+ at most 32 of the sanitizer's)",
                (unsigned long long)c.ev[HPERF_SYS_MADVISE].value, (unsigned long long)want);
#else
  ck_assert_uint_eq(c.ev[HPERF_SYS_MADVISE].value, want);
#endif
  hperf_close(h);
}
END_TEST

Suite *test_perf_count_suite(void) {
  Suite *s = suite_create("perf_count");
  TCase *tc = tcase_create("madvise");
  tcase_set_timeout(tc, 20);
  tcase_add_test(tc, counts_own_madvise_calls);
  tcase_add_test(tc, counts_threads_it_creates);
  suite_add_tcase(s, tc);
  return s;
}
