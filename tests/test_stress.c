/* Randomized stress: 4 threads malloc/realloc/aligned/free and trade blocks while another flushes, trims and switches options; contents verified. */
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"

enum { THREADS = 4, SLOTS = 400, OPS = 60000, SHARED = 64 };

typedef struct blk_s {
  unsigned char *p;
  size_t size;
  uint64_t seed;
} blk_t;

typedef struct world_s {
  pthread_mutex_t lock;
  blk_t shared[SHARED];  /* blocks in transit between threads */
  atomic_int stop;
  atomic_long bad;
  char first_bad[200];
} world_t;

static uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Mostly small, some medium, a few large; sometimes zero. */
static size_t pick_size(uint64_t *s) {
  uint64_t r = rnd(s) % 1000;
  if (r < 5) return 0;
  if (r < 700) return 1 + rnd(s) % 512;
  if (r < 950) return 512 + rnd(s) % (128 * 1024);
  return 256 * 1024 + rnd(s) % (3 * MiB);
}

/* Whole block for small sizes; head and tail for big ones (speed). */
static void mark(blk_t *b) {
  size_t n = b->size < 256 ? b->size : 128;
  tu_fill(b->p, n, b->seed);
  if (b->size > 256) tu_fill(b->p + b->size - 128, 128, b->seed + 1);
}

static void check(world_t *w, const blk_t *b, const char *when) {
  size_t n = b->size < 256 ? b->size : 128;
  long off = tu_check(b->p, n, b->seed);
  if (off < 0 && b->size > 256) off = tu_check(b->p + b->size - 128, 128, b->seed + 1);
  if (off >= 0 && atomic_fetch_add(&w->bad, 1) == 0)
    snprintf(w->first_bad, sizeof w->first_bad, "%s: block %p size %zu bad at %ld", when,
             (void *)b->p, b->size, off);
}

static void do_alloc(blk_t *b, uint64_t *s, uint64_t seed) {
  b->size = pick_size(s);
  uint64_t kind = rnd(s) % 10;
  if (kind == 0) {
    size_t al = (size_t)16 << (rnd(s) % 9);  /* 16 B .. 4 KiB */
    b->p = hak_aligned_alloc(al, b->size);
  } else if (kind == 1) {
    b->p = hak_calloc(1, b->size);
  } else {
    b->p = hak_malloc(b->size);
  }
  b->seed = seed;
  if (b->p) mark(b);
}

static void *worker(void *arg) {
  world_t *w = ((void **)arg)[0];
  uint64_t s = (uint64_t)(uintptr_t)((void **)arg)[1] * 0x9E3779B97F4A7C15ull + 1;
  blk_t slot[SLOTS];
  memset(slot, 0, sizeof slot);
  for (uint64_t op = 0; op < OPS; op++) {
    blk_t *b = &slot[rnd(&s) % SLOTS];
    uint64_t what = rnd(&s) % 10;
    if (b->p) check(w, b, "before op");
    if (!b->p) {
      do_alloc(b, &s, op * 131 + s % 97);
    } else if (what < 4) {
      hak_free(b->p);
      b->p = NULL;
    } else if (what < 7) {  /* realloc: the kept part must survive */
      size_t keep = b->size < 128 ? b->size : 128;
      size_t nsz = pick_size(&s) + 1;
      unsigned char *q = hak_realloc(b->p, nsz);
      if (q) {
        blk_t nb = {q, keep < nsz ? keep : nsz, b->seed};
        size_t n = nb.size < 128 ? nb.size : 128;
        if (tu_check(q, n, b->seed) >= 0) check(w, &nb, "after realloc");
        b->p = q;
        b->size = nsz;
        b->seed = op * 7 + 3;
        mark(b);
      }
    } else {  /* trade with another thread: it verifies and frees ours */
      pthread_mutex_lock(&w->lock);
      blk_t *t = &w->shared[rnd(&s) % SHARED];
      blk_t mine = *b;
      *b = *t;
      *t = mine;
      pthread_mutex_unlock(&w->lock);
    }
  }
  for (int i = 0; i < SLOTS; i++)
    if (slot[i].p) {
      check(w, &slot[i], "at end");
      hak_free(slot[i].p);
    }
  return NULL;
}

static void *meddler(void *arg) {
  world_t *w = arg;
  uint64_t s = 12345;
  static const char *const modes[] = {"loop", "vector", "uring"};
  static const char *const advices[] = {"dontneed", "free"};
  while (!atomic_load(&w->stop)) {
    uint64_t r = rnd(&s) % 100;
    if (r < 60) hak_flush();
    else if (r < 70) hak_trim();
    else if (r < 80) hak_option_set("FLUSH", modes[rnd(&s) % 3]);
    else if (r < 85) hak_option_set("ADVICE", advices[rnd(&s) % 2]);
    else if (r < 90) hak_option_set("BATCH_MAX", rnd(&s) % 2 ? "3" : "256");
    else if (r < 95) hak_option_set("CACHE_BYTES", rnd(&s) % 2 ? "2M" : "256M");
    else {
      hak_stats_t st;
      hak_stats(&st);
    }
    for (int i = 0; i < 20; i++) {  /* the shared blocks go through pageout too */
      pthread_mutex_lock(&w->lock);
      blk_t *t = &w->shared[rnd(&s) % SHARED];
      if (t->p) {
        check(w, t, "shared");
        if (rnd(&s) % 4 == 0) tu_pageout(t->p, t->size);
      }
      pthread_mutex_unlock(&w->lock);
    }
  }
  return NULL;
}

START_TEST(random_ops_with_meddling) {
  tu_opts_t o = {0};
  tu_opt(&o, "PURGE_DELAY_MS", "1");
  tu_opt(&o, "BATCH_MAX", "8");
  tu_opt(&o, "FLUSH", "vector");
  tu_opt(&o, "ADVICE", "dontneed");
  tu_opt(&o, "CACHE_BYTES", "64M");
  static world_t w;
  memset(&w, 0, sizeof w);
  pthread_mutex_init(&w.lock, NULL);
  pthread_t m, t[THREADS];
  void *args[THREADS][2];
  ck_assert_int_eq(pthread_create(&m, NULL, meddler, &w), 0);
  for (int i = 0; i < THREADS; i++) {
    args[i][0] = &w;
    args[i][1] = (void *)(uintptr_t)(i + 1 + _i * 10);
    ck_assert_int_eq(pthread_create(&t[i], NULL, worker, args[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  atomic_store(&w.stop, 1);
  pthread_join(m, NULL);
  for (int i = 0; i < SHARED; i++)
    if (w.shared[i].p) {
      check(&w, &w.shared[i], "shared at end");
      hak_free(w.shared[i].p);
    }
  ck_assert_msg(atomic_load(&w.bad) == 0, "%ld corrupted blocks, first: %s", atomic_load(&w.bad),
                w.first_bad);
  hak_trim();  /* the exited workers' heaps too: the purge thread may be collecting them */
  hak_stats_t st = tu_stats();
  ck_assert_uint_eq(st.flush_errors, 0);
  ck_assert_uint_eq(st.pending_ranges, 0);
  tu_opts_restore(&o);
}
END_TEST

Suite *test_stress_suite(void) {
  Suite *s = suite_create("stress");
  TCase *tc = tcase_create("stress");
  tcase_set_timeout(tc, 90);
  tcase_add_loop_test(tc, random_ops_with_meddling, 0, 3);  /* three seeds */
  suite_add_tcase(s, tc);
  return s;
}
