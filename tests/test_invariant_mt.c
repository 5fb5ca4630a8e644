/* Reuse-before-flush invariant under threads: reuse races with hak_flush from another thread (every backend, both advices). */
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"

enum { WORKERS = 2, ROUNDS = 150, SMALL_N = 80 };

typedef struct mt_state_s {
  atomic_int stop;
  atomic_long failures;
  atomic_long flusher_flushes;
  int pageout;  /* MADV_FREE runs reclaim pages so a wrong lazy free shows */
  char first_error[256];
  pthread_mutex_t lock;
} mt_state_t;

static void record_failure(mt_state_t *st, const char *what, const void *p, long off) {
  if (atomic_fetch_add(&st->failures, 1) == 0) {
    pthread_mutex_lock(&st->lock);
    snprintf(st->first_error, sizeof st->first_error, "%s at %p+%ld", what, p, off);
    pthread_mutex_unlock(&st->lock);
  }
}

static void verify(mt_state_t *st, const char *what, void *p, size_t n, uint64_t seed) {
  if (st->pageout) tu_pageout(p, n);
  long off = tu_check(p, n, seed);
  if (off >= 0) record_failure(st, what, p, off);
}

/* One round with a large block: alloc, fill, free (queued), alloc again
 * (cache hit cancels), fill, flush, verify. */
static void large_round(mt_state_t *st, uint64_t seed, size_t sz) {
  void *p = hak_malloc(sz);
  if (!p) return record_failure(st, "malloc", NULL, 0);
  tu_fill(p, PAGE, seed);
  hak_free(p);
  void *q = hak_malloc(sz);
  if (!q) return record_failure(st, "malloc", NULL, 0);
  tu_fill(q, sz, seed + 1);
  hak_flush();
  verify(st, "large block", q, sz, seed + 1);
  hak_free(q);
}

/* The same with a batch of small objects, whose pages empty and refill. */
static void small_round(mt_state_t *st, uint64_t seed, size_t sz) {
  void *v[SMALL_N];
  for (int i = 0; i < SMALL_N; i++) {
    v[i] = hak_malloc(sz);
    if (!v[i]) return record_failure(st, "malloc", NULL, 0);
    tu_fill(v[i], sz, seed + (uint64_t)i);
  }
  for (int i = 0; i < SMALL_N; i++) hak_free(v[i]);
  for (int i = 0; i < SMALL_N; i++) {
    v[i] = hak_malloc(sz);
    if (!v[i]) return record_failure(st, "malloc", NULL, 0);
    tu_fill(v[i], sz, seed + 1000 + (uint64_t)i);
  }
  hak_flush();
  for (int i = 0; i < SMALL_N; i++) verify(st, "small object", v[i], sz, seed + 1000 + (uint64_t)i);
  for (int i = 0; i < SMALL_N; i++) hak_free(v[i]);
}

typedef struct worker_arg_s {
  mt_state_t *st;
  int id;
} worker_arg_t;

static void *worker(void *arg) {
  worker_arg_t *w = arg;
  static const size_t large[] = {1 * MiB, 600 * KiB, 3 * MiB};
  static const size_t small[] = {1024, 8192, 4096 + 16};
  for (int r = 0; r < ROUNDS && !atomic_load(&w->st->failures); r++) {
    uint64_t seed = (uint64_t)w->id * 1000000 + (uint64_t)r * 4096;
    if (r % 2)
      large_round(w->st, seed, large[r % 3]);
    else
      small_round(w->st, seed, small[(r / 2) % 3]);
  }
  return NULL;
}

static void *flusher(void *arg) {
  mt_state_t *st = arg;
  while (!atomic_load(&st->stop)) {
    hak_flush();
    atomic_fetch_add(&st->flusher_flushes, 1);
  }
  return NULL;
}

START_TEST(reuse_races_concurrent_flush) {
  const char *backend, *advice;
  tu_opts_t o = {0};
  tu_quiet_combo(&o, _i, &backend, &advice);
  tu_opt(&o, "BATCH_MAX", "4");  /* count-triggered flushes from the workers too */
  hak_stats_reset();

  static mt_state_t st;
  memset(&st, 0, sizeof st);
  pthread_mutex_init(&st.lock, NULL);
  st.pageout = strcmp(advice, "free") == 0;
  pthread_t fl, th[WORKERS];
  worker_arg_t args[WORKERS];
  ck_assert_int_eq(pthread_create(&fl, NULL, flusher, &st), 0);
  for (int i = 0; i < WORKERS; i++) {
    args[i] = (worker_arg_t){&st, i + 1};
    ck_assert_int_eq(pthread_create(&th[i], NULL, worker, &args[i]), 0);
  }
  for (int i = 0; i < WORKERS; i++) pthread_join(th[i], NULL);
  atomic_store(&st.stop, 1);
  pthread_join(fl, NULL);

  ck_assert_msg(atomic_load(&st.failures) == 0, "%s/%s: %ld corrupted blocks, first: %s", backend,
                advice, atomic_load(&st.failures), st.first_error);
  hak_stats_t s = tu_stats();
  ck_assert_uint_gt(s.ranges_cancelled, 0);
  ck_assert_uint_gt(s.flushes, 0);
  ck_assert_uint_eq(s.flush_errors, 0);
  if (strcmp(tu_mode_name(s.flush_mode), backend) != 0)
    fprintf(stderr, "note: %s/%s ran as %s (%s)\n", backend, advice, tu_mode_name(s.flush_mode),
            s.fallback_reason);
  tu_opts_restore(&o);
}
END_TEST

/* Backends and advice switched while workers reuse and flush: each switch
 * flushes the queue and probes; no reused byte may be advised meanwhile. */
static void *switcher(void *arg) {
  mt_state_t *st = arg;
  static const char *const modes[] = {"loop", "vector", "uring", "loop", "vector"};
  static const char *const advices[] = {"dontneed", "free"};
  for (unsigned i = 0; !atomic_load(&st->stop); i++) {
    hak_option_set("FLUSH", modes[i % 5]);
    if (i % 3 == 0) hak_option_set("ADVICE", advices[(i / 3) % 2]);
    if (i % 4 == 0) hak_option_set("BATCH_MAX", i % 8 ? "2" : "64");
    atomic_fetch_add(&st->flusher_flushes, 1);
  }
  return NULL;
}

START_TEST(reuse_races_mode_switches) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "FLUSH", "loop");
  tu_opt(&o, "ADVICE", "dontneed");
  tu_opt(&o, "BATCH_MAX", "4");
  hak_stats_reset();
  static mt_state_t st;
  memset(&st, 0, sizeof st);
  pthread_mutex_init(&st.lock, NULL);
  st.pageout = 1;  /* some flushes use MADV_FREE */
  pthread_t sw, th[WORKERS];
  worker_arg_t args[WORKERS];
  ck_assert_int_eq(pthread_create(&sw, NULL, switcher, &st), 0);
  for (int i = 0; i < WORKERS; i++) {
    args[i] = (worker_arg_t){&st, i + 1};
    ck_assert_int_eq(pthread_create(&th[i], NULL, worker, &args[i]), 0);
  }
  for (int i = 0; i < WORKERS; i++) pthread_join(th[i], NULL);
  atomic_store(&st.stop, 1);
  pthread_join(sw, NULL);
  ck_assert_msg(atomic_load(&st.failures) == 0, "%ld corrupted blocks, first: %s",
                atomic_load(&st.failures), st.first_error);
  hak_stats_t s = tu_stats();
  ck_assert_uint_eq(s.flush_errors, 0);
  /* Switching to a backend this kernel lacks falls back at its probe, each time. */
  int verr = tu_probe_vector_dontneed(), uerr = tu_probe_uring();
  if (verr == 0 && uerr == 0)
    ck_assert_uint_eq(s.fallbacks, 0);
  else
    fprintf(stderr, "note: mode_switches: %llu probe fallbacks (process_madvise: %s, io_uring: %s)\n",
            (unsigned long long)s.fallbacks, verr ? strerror(verr) : "ok", uerr ? strerror(uerr) : "ok");
  hak_flush();
  ck_assert_uint_eq(tu_stats().pending_ranges, 0);
  tu_opts_restore(&o);
}
END_TEST

Suite *test_invariant_mt_suite(void) {
  Suite *s = suite_create("invariant_mt");
  TCase *tc = tcase_create("threads");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, reuse_races_concurrent_flush, 0, 6);
  tcase_add_test(tc, reuse_races_mode_switches);
  suite_add_tcase(s, tc);
  return s;
}
