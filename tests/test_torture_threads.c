/* Thread life torture: owners exit while others free into their pages, thousands of short threads stay bounded, exit() while threads are mid-malloc. */
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"

typedef struct blk_s {
  unsigned char *p;
  size_t n;
} blk_t;

/* Mostly small and medium blocks, a large one now and then. */
static size_t thread_size(uint64_t *rng) {
  uint64_t r = tu_rand(rng) % 100;
  if (r < 75) return 1 + tu_rand(rng) % (8 * KiB);
  if (r < 98) return 8 * KiB + tu_rand(rng) % (248 * KiB + 1);
  return 300 * KiB + tu_rand(rng) % (700 * KiB);
}

static blk_t new_block(uint64_t *rng) {
  blk_t b = {NULL, thread_size(rng)};
  b.p = hak_malloc(b.n);
  if (b.p) tu_fill_fast(b.p, b.n, (uint64_t)(uintptr_t)b.p);
  return b;
}

typedef struct errs_s {
  atomic_long bad, verified_bytes;
  pthread_mutex_t lock;
  char first[256];
} errs_t;

static void verify_block(errs_t *e, const blk_t *b, const char *what) {
  long off = b->p ? tu_check_fast(b->p, b->n, (uint64_t)(uintptr_t)b->p) : 0;
  atomic_fetch_add_explicit(&e->verified_bytes, (long)b->n, memory_order_relaxed);
  if (off < 0) return;
  if (atomic_fetch_add(&e->bad, 1) == 0) {
    pthread_mutex_lock(&e->lock);
    if (b->p)
      snprintf(e->first, sizeof e->first, "%s: block %p size %zu byte %ld is 0x%02x, want 0x%02x",
               what, (void *)b->p, b->n, off, b->p[off], tu_byte((uint64_t)(uintptr_t)b->p, (size_t)off));
    else
      snprintf(e->first, sizeof e->first, "%s: malloc(%zu) failed", what, b->n);
    pthread_mutex_unlock(&e->lock);
  }
}

/* ---- (a) the owner exits while another thread frees into its pages ------*/

enum { HANDOFF_N = 3000, HANDOFF_ROUNDS = 40 };

typedef struct handoff_s {
  pthread_mutex_t lock;
  pthread_cond_t cv;
  blk_t items[HANDOFF_N];
  int n, done;
  uint64_t seed;
  errs_t *errs;
} handoff_t;

static void *owner(void *arg) {
  handoff_t *h = arg;
  uint64_t rng = h->seed;
  for (int i = 0; i < HANDOFF_N; i++) {
    blk_t b = new_block(&rng);
    pthread_mutex_lock(&h->lock);
    h->items[h->n++] = b;
    if (h->n % 64 == 0) pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->lock);
  }
  pthread_mutex_lock(&h->lock);
  h->done = 1;
  pthread_cond_signal(&h->cv);
  pthread_mutex_unlock(&h->lock);
  return NULL;  /* exits with most of its blocks still to be freed by the other */
}

static void *freer(void *arg) {
  handoff_t *h = arg;
  for (int i = 0; i < HANDOFF_N; i++) {
    pthread_mutex_lock(&h->lock);
    while (i >= h->n && !h->done) pthread_cond_wait(&h->cv, &h->lock);
    int have = i < h->n;
    blk_t b = have ? h->items[i] : (blk_t){NULL, 0};
    pthread_mutex_unlock(&h->lock);
    if (!have) break;
    verify_block(h->errs, &b, "handed-off block before free");
    hak_free(b.p);
  }
  return NULL;
}

START_TEST(owner_exits_while_others_free) {
  static errs_t e;
  memset(&e, 0, sizeof e);
  pthread_mutex_init(&e.lock, NULL);
  static handoff_t h;
  hak_trim();
  hak_stats_t s0 = tu_stats();
  for (int round = 0; round < HANDOFF_ROUNDS && !atomic_load(&e.bad); round++) {
    memset(&h, 0, sizeof h);
    pthread_mutex_init(&h.lock, NULL);
    pthread_cond_init(&h.cv, NULL);
    h.seed = 1000 + (uint64_t)round;
    h.errs = &e;
    pthread_t a, b;
    ck_assert_int_eq(pthread_create(&b, NULL, freer, &h), 0);
    ck_assert_int_eq(pthread_create(&a, NULL, owner, &h), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_mutex_destroy(&h.lock);
    pthread_cond_destroy(&h.cv);
  }
  ck_assert_msg(atomic_load(&e.bad) == 0, "%ld bad blocks; first: %s", atomic_load(&e.bad), e.first);
  /* The pages the dead owners left behind are usable again. */
  uint64_t rng = 77;
  static blk_t v[4000];
  for (int i = 0; i < 4000; i++) v[i] = new_block(&rng);
  for (int i = 0; i < 4000; i++) verify_block(&e, &v[i], "after the rounds");
  for (int i = 0; i < 4000; i++) hak_free(v[i].p);
  ck_assert_msg(atomic_load(&e.bad) == 0, "%ld bad blocks; first: %s", atomic_load(&e.bad), e.first);
  hak_trim();
  hak_stats_t s1 = tu_stats();
  ck_assert_msg(s1.free_remote > s0.free_remote, "no remote free happened");
  ck_assert_uint_eq(s1.flush_errors, 0);
  /* Everything was freed: what stays mapped is a few segments, not one per round. */
  ck_assert_msg(s1.bytes_mapped_now <= s0.bytes_mapped_now + 64 * MiB,
                "%llu MiB mapped after %d rounds, %llu MiB before",
                (unsigned long long)(s1.bytes_mapped_now >> 20), HANDOFF_ROUNDS,
                (unsigned long long)(s0.bytes_mapped_now >> 20));
  fprintf(stderr, "note: torture_threads owner_exit: %d rounds x %d blocks, %ld MiB verified, "
          "%llu remote frees\n", HANDOFF_ROUNDS, HANDOFF_N, atomic_load(&e.verified_bytes) >> 20,
          (unsigned long long)(s1.free_remote - s0.free_remote));
}
END_TEST

/* ---- (b) thousands of short threads, some of their blocks kept ----------*/

enum { SHORT_THREADS = 3000, AT_ONCE = 8, KEEP = 1024, PER_THREAD = 8, HANDED = 3 };

typedef struct keeper_s {
  pthread_mutex_t lock;
  pthread_cond_t cv;
  blk_t inbox[KEEP];       /* handed in, not yet taken by the keeper */
  int in_n, stop;
  blk_t kept[KEEP];        /* the keeper's own store (a ring) */
  long next, handed;
  errs_t errs;
} keeper_t;

static keeper_t keeper;

/* A short thread hands a block to the long-lived keeper thread. */
static void keep_block(blk_t b) {
  pthread_mutex_lock(&keeper.lock);
  while (keeper.in_n == KEEP) {
    pthread_mutex_unlock(&keeper.lock);
    sched_yield();
    pthread_mutex_lock(&keeper.lock);
  }
  keeper.inbox[keeper.in_n++] = b;
  keeper.handed++;
  pthread_cond_signal(&keeper.cv);
  pthread_mutex_unlock(&keeper.lock);
}

/* Keeps the last KEEP blocks handed in; a block pushed out is verified and
 * freed here, long after the thread that allocated it is gone. */
static void *keeper_main(void *arg) {
  (void)arg;
  static blk_t batch[KEEP];
  for (;;) {
    pthread_mutex_lock(&keeper.lock);
    while (keeper.in_n == 0 && !keeper.stop) pthread_cond_wait(&keeper.cv, &keeper.lock);
    int n = keeper.in_n, stop = keeper.stop;
    memcpy(batch, keeper.inbox, (size_t)n * sizeof *batch);
    keeper.in_n = 0;
    pthread_mutex_unlock(&keeper.lock);
    for (int i = 0; i < n; i++) {
      blk_t old = keeper.kept[keeper.next % KEEP];
      keeper.kept[keeper.next++ % KEEP] = batch[i];
      if (old.p) {
        verify_block(&keeper.errs, &old, "kept block pushed out");
        hak_free(old.p);
      }
    }
    if (stop && n == 0) return NULL;
  }
}

static void *short_thread(void *arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg * 0x1234567ull + 1;
  blk_t b[PER_THREAD];
  for (int i = 0; i < PER_THREAD; i++) {
    b[i] = new_block(&rng);
    if (!b[i].p) verify_block(&keeper.errs, &b[i], "short thread");
  }
  for (int i = 0; i < PER_THREAD; i++) {
    if (!b[i].p) continue;
    if (i < HANDED && tu_rand(&rng) % 2) {
      keep_block(b[i]);
    } else {
      verify_block(&keeper.errs, &b[i], "short thread before free");
      hak_free(b[i].p);
    }
  }
  return NULL;
}

START_TEST(short_threads_stay_bounded) {
  memset(&keeper, 0, sizeof keeper);
  pthread_mutex_init(&keeper.lock, NULL);
  pthread_mutex_init(&keeper.errs.lock, NULL);
  pthread_cond_init(&keeper.cv, NULL);
  hak_trim();
  hak_stats_t s0 = tu_stats();
  long rss0 = tu_statm_resident_pages();
  pthread_t kt;
  ck_assert_int_eq(pthread_create(&kt, NULL, keeper_main, NULL), 0);
  for (int t = 0; t < SHORT_THREADS; t += AT_ONCE) {
    pthread_t th[AT_ONCE];
    for (int k = 0; k < AT_ONCE; k++)
      ck_assert_int_eq(pthread_create(&th[k], NULL, short_thread, (void *)(uintptr_t)(t + k + 1)), 0);
    for (int k = 0; k < AT_ONCE; k++) pthread_join(th[k], NULL);
  }
  pthread_mutex_lock(&keeper.lock);
  keeper.stop = 1;
  pthread_cond_signal(&keeper.cv);
  pthread_mutex_unlock(&keeper.lock);
  pthread_join(kt, NULL);  /* the keeper ends too: its blocks stay alive */
  hak_flush();
  hak_trim();
  hak_stats_t s1 = tu_stats();
  long rss1 = tu_statm_resident_pages();
  /* The blocks still alive, whose owners are all gone, are intact. */
  size_t live = 0;
  for (int i = 0; i < KEEP; i++)
    if (keeper.kept[i].p) {
      tu_pageout(keeper.kept[i].p, keeper.kept[i].n);
      verify_block(&keeper.errs, &keeper.kept[i], "kept block after the threads ended");
      live += keeper.kept[i].n;
    }
  fprintf(stderr, "note: torture_threads short_threads: %d threads, %ld blocks handed over, "
          "%ld MiB verified, mapped %llu -> %llu MiB, RSS %ld -> %ld MiB, %zu KiB live\n",
          SHORT_THREADS, keeper.handed, atomic_load(&keeper.errs.verified_bytes) >> 20,
          (unsigned long long)(s0.bytes_mapped_now >> 20),
          (unsigned long long)(s1.bytes_mapped_now >> 20), rss0 * 4 / 1024, rss1 * 4 / 1024,
          live >> 10);
  ck_assert_msg(atomic_load(&keeper.errs.bad) == 0, "%ld bad blocks; first: %s",
                atomic_load(&keeper.errs.bad), keeper.errs.first);
  /* Bounded: a few segments per concurrent thread, not some per thread ever made. */
  ck_assert_msg(s1.bytes_mapped_now <= s0.bytes_mapped_now + live + 256 * MiB,
                "%llu MiB mapped after %d threads (%llu before, %zu KiB live)",
                (unsigned long long)(s1.bytes_mapped_now >> 20), SHORT_THREADS,
                (unsigned long long)(s0.bytes_mapped_now >> 20), live >> 10);
#ifndef __SANITIZE_THREAD__  /* its runtime keeps state for every thread that ever ran */
  ck_assert_msg(rss1 <= rss0 + (long)((live + 128 * MiB) / PAGE),
                "RSS %ld MiB after %d threads (%ld before, %zu KiB live)", rss1 * 4 / 1024,
                SHORT_THREADS, rss0 * 4 / 1024, live >> 10);
#endif
  for (int i = 0; i < KEEP; i++) hak_free(keeper.kept[i].p);
  hak_flush();
  ck_assert_uint_eq(tu_stats().flush_errors, 0);
}
END_TEST

/* ---- (c) exit() while threads are mid-malloc -----------------------------*/

enum { EXIT_RUNS = 50, EXIT_BOUND_S = 20 };

START_TEST(exit_while_threads_malloc) {
  static const char *const flush[] = {"HAKMEM_FLUSH=loop", "HAKMEM_FLUSH=vector", "HAKMEM_FLUSH=uring"};
  static const char *const delay[] = {"HAKMEM_PURGE_DELAY_MS=0", "HAKMEM_PURGE_DELAY_MS=1",
                                      "HAKMEM_PURGE_DELAY_MS=10"};
  int hung = 0, bad = 0;
  char first[256] = "";
  for (int run = 0; run < EXIT_RUNS; run++) {
    char us[32], threads[16];
    snprintf(us, sizeof us, "%d", (run * 7919) % 20000);  /* exit after 0-20 ms */
    snprintf(threads, sizeof threads, "%d", 2 + run % 4);
    const char *argv[] = {"tests/bin/prog_exitstorm", threads, us, NULL};
    const char *env[] = {flush[run % 3], delay[(run / 3) % 3], "HAKMEM_BATCH_MAX=4",
                         run % 2 ? "HAKMEM_STATS=1" : "HAKMEM_STATS=0", NULL};
    char **envp = tu_env(env);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
      int null = open("/dev/null", O_RDWR);
      dup2(null, 0);
      dup2(null, 1);
      dup2(null, 2);
      execve(argv[0], (char *const *)argv, envp);
      _exit(127);
    }
    free(envp);
    int st = 0;
    int h = tu_wait_bounded(pid, EXIT_BOUND_S, &st) != 0;
    int ok = !h && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    hung += h;
    bad += !ok && !h;
    if (!ok && !first[0])
      snprintf(first, sizeof first, "run %d (%s %s, %s threads, exit after %s us): %s 0x%x", run,
               env[0], env[1], threads, us, h ? "hung, killed" : "status", st);
  }
  fprintf(stderr, "note: torture_threads exit_storm: %d runs, %d hung, %d failed\n", EXIT_RUNS,
          hung, bad);
  ck_assert_msg(hung == 0 && bad == 0, "%d of %d runs hung, %d crashed or failed; first: %s", hung,
                EXIT_RUNS, bad, first);
}
END_TEST

Suite *test_torture_threads_suite(void) {
  Suite *s = suite_create("torture_threads");
  TCase *tc = tcase_create("threads");
  tcase_set_timeout(tc, 180);
  tcase_add_test(tc, owner_exits_while_others_free);
  tcase_add_test(tc, short_threads_stay_bounded);
  tcase_add_test(tc, exit_while_threads_malloc);
  suite_add_tcase(s, tc);
  return s;
}
