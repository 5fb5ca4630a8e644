/* Differential random-operation tester: malloc/calloc/realloc/aligned_alloc/posix_memalign/free across threads against a shadow model; seeded by HAK_TEST_SEED, replayable. */
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"

/* Replay: HAK_TEST_SEED=<seed> CK_RUN_SUITE=differential CK_RUN_CASE=<case> tests/run.sh
 * (the single-thread case replays exactly; with threads, each thread's
 * sequence of operations replays, their interleaving does not).
 * HAK_TEST_OPS=<n> sets the operations per thread. */
#define DEFAULT_SEED 0x5EEDC0DEull
enum { MAX_THREADS = 4, SLOTS = 160, MAILBOX = 64, IV_MAX = MAX_THREADS * SLOTS + MAILBOX + 16,
       DEFAULT_OPS = 12000 };

typedef struct shadow_s {
  unsigned char *p;
  size_t size, align, usable;
  uint64_t seed;  /* content pattern */
} shadow_t;

/* ---- the live blocks, sorted by address: no two may overlap -------------*/
typedef struct iv_s {
  uintptr_t lo, hi;
  int thread;
  long op;
} iv_t;

typedef struct world_s {
  uint64_t seed;
  long ops;
  int nthreads;
  atomic_int failed;
  char msg[512];
  pthread_mutex_t lock;  /* msg, the interval set and the mailbox */
  iv_t iv[IV_MAX];
  int niv;
  shadow_t mailbox[MAILBOX];
  int nmail;
  atomic_long done_ops, cross_frees, bytes_checked;
} world_t;

static world_t W;

typedef struct thr_s {
  int id;
  long op;         /* index of the operation running */
  const char *what;
  uint64_t rng;
  shadow_t slot[SLOTS];
} thr_t;

static void dfail(thr_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dfail(thr_t *t, const char *fmt, ...) {
  if (atomic_exchange(&W.failed, 1)) return;
  char what[300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&W.lock);
  snprintf(W.msg, sizeof W.msg, "seed 0x%llx, thread %d of %d, operation %ld (%s): %s "
           "[replay: HAK_TEST_SEED=0x%llx]", (unsigned long long)W.seed, t->id, W.nthreads, t->op,
           t->what, what, (unsigned long long)W.seed);
  pthread_mutex_unlock(&W.lock);
}

static int iv_lower(uintptr_t lo) {
  int a = 0, b = W.niv;
  while (a < b) {
    int m = (a + b) / 2;
    if (W.iv[m].lo < lo) a = m + 1;
    else b = m;
  }
  return a;
}

static void iv_insert(thr_t *t, const shadow_t *s) {
  uintptr_t lo = (uintptr_t)s->p, hi = lo + (s->usable ? s->usable : 1);
  pthread_mutex_lock(&W.lock);
  int i = iv_lower(lo);
  const iv_t *clash = NULL;
  if (i > 0 && W.iv[i - 1].hi > lo) clash = &W.iv[i - 1];
  else if (i < W.niv && W.iv[i].lo < hi) clash = &W.iv[i];
  iv_t c = clash ? *clash : (iv_t){0, 0, 0, 0};
  if (!clash && W.niv < IV_MAX) {
    memmove(&W.iv[i + 1], &W.iv[i], (size_t)(W.niv - i) * sizeof(iv_t));
    W.iv[i] = (iv_t){lo, hi, t->id, t->op};
    W.niv++;
  }
  pthread_mutex_unlock(&W.lock);
  if (clash)
    dfail(t, "new block [%p, +%zu) overlaps the live block [%p, +%zu) of thread %d op %ld",
         (void *)lo, (size_t)(hi - lo), (void *)c.lo, (size_t)(c.hi - c.lo), c.thread, c.op);
}

static void iv_remove(thr_t *t, const shadow_t *s) {
  uintptr_t lo = (uintptr_t)s->p;
  pthread_mutex_lock(&W.lock);
  int i = iv_lower(lo);
  int found = i < W.niv && W.iv[i].lo == lo;
  if (found) {
    memmove(&W.iv[i], &W.iv[i + 1], (size_t)(W.niv - i - 1) * sizeof(iv_t));
    W.niv--;
  }
  pthread_mutex_unlock(&W.lock);
  if (!found) dfail(t, "internal: block %p not in the interval set", (void *)lo);
}

/* ---- the model's checks ----------------------------------------------------*/

static size_t rand_size(uint64_t *rng) {
  uint64_t r = tu_rand(rng) % 100;
  if (r < 50) return tu_rand(rng) % 257;                          /* 0..256 */
  if (r < 80) return 257 + tu_rand(rng) % (16 * KiB);
  if (r < 93) return 16 * KiB + tu_rand(rng) % (284 * KiB);
  if (r < 99) return 300 * KiB + tu_rand(rng) % (1748 * KiB);
  return 2 * MiB + tu_rand(rng) % (2 * MiB);                       /* a few MiB */
}

static size_t rand_align(uint64_t *rng) { return (size_t)8 << (tu_rand(rng) % 14); } /* 8..64 KiB */

static int content_ok(thr_t *t, const shadow_t *s, size_t n, const char *when) {
  long off = tu_check_fast(s->p, n, s->seed);
  atomic_fetch_add_explicit(&W.bytes_checked, (long)n, memory_order_relaxed);
  if (off < 0) return 1;
  dfail(t, "%s: block %p (size %zu, align %zu) byte %ld is 0x%02x, want 0x%02x", when,
       (void *)s->p, s->size, s->align, off, s->p[off], tu_byte(s->seed, (size_t)off));
  return 0;
}

/* A block the allocator just returned: check it, enter it, fill it. */
static int adopt(thr_t *t, shadow_t *s, void *p, size_t size, size_t align, int zeroed,
                 size_t keep, const shadow_t *old) {
  if (!p) {
    dfail(t, "returned NULL for size %zu align %zu (errno %d)", size, align, errno);
    return 0;
  }
  s->p = p;
  s->size = size;
  s->align = align;
  s->usable = hak_usable_size(p);
  if ((uintptr_t)p % align) {
    dfail(t, "%p is not %zu-aligned (size %zu)", p, align, size);
    return 0;
  }
  if (s->usable < size) {
    dfail(t, "usable size %zu < %zu asked at %p", s->usable, size, p);
    return 0;
  }
  if (zeroed) {
    for (size_t i = 0; i < size; i++)
      if (s->p[i]) {
        dfail(t, "calloc'd %p (size %zu) byte %zu is 0x%02x", p, size, i, s->p[i]);
        return 0;
      }
  }
  if (old && keep) {  /* realloc: the prefix moved with the block */
    shadow_t moved = *old;
    moved.p = s->p;
    if (!content_ok(t, &moved, keep, "realloc prefix")) return 0;
  }
  iv_insert(t, s);
  s->seed = tu_rand(&t->rng);
  tu_fill_fast(s->p, size, s->seed);
  return !atomic_load(&W.failed);
}

static void release(thr_t *t, shadow_t *s) {
  if (!content_ok(t, s, s->size, "before free")) return;
  iv_remove(t, s);
  hak_free(s->p);
  s->p = NULL;
}

/* ---- one thread's random operations ---------------------------------------*/

static void one_op(thr_t *t) {
  uint64_t *rng = &t->rng;
  shadow_t *s = &t->slot[tu_rand(rng) % SLOTS];
  uint64_t r = tu_rand(rng) % 100;
  if (s->p && r < 55) {  /* an occupied slot: free it or realloc it */
    if (r < 35) {
      t->what = "free";
      release(t, s);
    } else {
      t->what = "realloc";
      size_t n = rand_size(rng);
      if (!content_ok(t, s, s->size, "before realloc")) return;
      shadow_t old = *s;
      iv_remove(t, s);
      void *q = hak_realloc(s->p, n);
      if (!q && n == 0) { s->p = NULL; return; }  /* realloc(p, 0) freed it (glibc's choice) */
      if (!q) {
        dfail(t, "realloc(%p, %zu) returned NULL", (void *)old.p, n);
        return;
      }
      adopt(t, s, q, n, 16, 0, old.size < n ? old.size : n, &old);
    }
    return;
  }
  if (s->p) {
    if (r < 80) {  /* give it to another thread */
      t->what = "hand over";
      pthread_mutex_lock(&W.lock);
      int ok = W.nmail < MAILBOX;
      if (ok) W.mailbox[W.nmail++] = *s;
      pthread_mutex_unlock(&W.lock);
      if (ok) s->p = NULL;
    }
    return;
  }
  /* An empty slot: allocate, or take a block another thread handed over. */
  size_t n = rand_size(rng), a = rand_align(rng);
  if (r < 30) {
    t->what = "malloc";
    adopt(t, s, hak_malloc(n), n, 16, 0, 0, NULL);
  } else if (r < 45) {
    t->what = "calloc";
    size_t k = 1 + tu_rand(rng) % 16, m = n / k;
    adopt(t, s, hak_calloc(k, m), k * m, 16, 1, 0, NULL);
  } else if (r < 60) {
    t->what = "aligned_alloc";
    adopt(t, s, hak_aligned_alloc(a, n), n, a, 0, 0, NULL);
  } else if (r < 75) {
    t->what = "posix_memalign";
    void *p = NULL;
    int rc = hak_posix_memalign(&p, a, n);
    if (rc != 0) dfail(t, "posix_memalign(%zu, %zu) = %d", a, n, rc);
    else adopt(t, s, p, n, a, 0, 0, NULL);
  } else if (r < 90 && W.nthreads > 1) {
    t->what = "take over";
    pthread_mutex_lock(&W.lock);
    int ok = W.nmail > 0;
    if (ok) *s = W.mailbox[--W.nmail];
    pthread_mutex_unlock(&W.lock);
    if (ok) atomic_fetch_add(&W.cross_frees, 1);  /* freed or realloc'd here later */
  } else {
    t->what = "malloc";
    adopt(t, s, hak_malloc(n), n, 16, 0, 0, NULL);
  }
}

static void *runner(void *arg) {
  thr_t *t = arg;
  for (t->op = 0; t->op < W.ops && !atomic_load(&W.failed); t->op++) one_op(t);
  t->what = "final free";
  for (int i = 0; i < SLOTS && !atomic_load(&W.failed); i++)
    if (t->slot[i].p) release(t, &t->slot[i]);
  atomic_fetch_add(&W.done_ops, t->op);
  return NULL;
}

static uint64_t env_u64(const char *name, uint64_t def) {
  const char *v = getenv(name);
  if (!v || !*v) return def;
  return strtoull(v, NULL, 0);
}

static void run_world(int nthreads, int combo) {
  const char *backend, *advice;
  tu_backend_combo(combo, &backend, &advice);
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "FLUSH", backend);
  tu_opt(&o, "ADVICE", "dontneed");
  tu_opt(&o, "BATCH_MAX", "4");
  tu_opt(&o, "PURGE_DELAY_MS", "0");
  tu_opt(&o, "CACHE_BYTES", "32M");
  memset(&W, 0, sizeof W);
  pthread_mutex_init(&W.lock, NULL);
  W.seed = env_u64("HAK_TEST_SEED", DEFAULT_SEED);
  W.ops = (long)env_u64("HAK_TEST_OPS", DEFAULT_OPS);
  W.nthreads = nthreads;
  static thr_t th[MAX_THREADS];
  memset(th, 0, sizeof th);
  pthread_t pt[MAX_THREADS];
  for (int i = 0; i < nthreads; i++) {
    th[i].id = i;
    th[i].rng = W.seed ^ (0xA24BAED4963EE407ull * (uint64_t)(i + 1));
    th[i].what = "start";
  }
  if (nthreads == 1) {
    runner(&th[0]);
  } else {
    for (int i = 0; i < nthreads; i++) ck_assert_int_eq(pthread_create(&pt[i], NULL, runner, &th[i]), 0);
    for (int i = 0; i < nthreads; i++) pthread_join(pt[i], NULL);
  }
  /* Blocks left in the mailbox are freed by the main thread. */
  thr_t main_t = {.id = -1, .op = 0, .what = "mailbox free"};
  for (int i = 0; i < W.nmail && !atomic_load(&W.failed); i++) release(&main_t, &W.mailbox[i]);
  hak_flush();
  hak_stats_t st = tu_stats();
  fprintf(stderr, "note: differential %s, %d thread%s, seed 0x%llx: %ld operations, %ld handed "
          "over, %ld MiB checked\n", backend, nthreads, nthreads > 1 ? "s" : "",
          (unsigned long long)W.seed, atomic_load(&W.done_ops), atomic_load(&W.cross_frees),
          atomic_load(&W.bytes_checked) >> 20);
  ck_assert_msg(!atomic_load(&W.failed), "%s", W.msg);
  ck_assert_msg(W.niv == 0, "%d blocks left in the interval set", W.niv);
  ck_assert_uint_eq(st.flush_errors, 0);
  tu_opts_restore(&o);
}

/* _i: backend (loop, vector, uring) */
START_TEST(differential_threads) { run_world(3, _i); }
END_TEST

START_TEST(differential_single_thread) { run_world(1, _i); }
END_TEST

Suite *test_differential_suite(void) {
  Suite *s = suite_create("differential");
  TCase *tc = tcase_create("differential");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, differential_threads, 0, 3);
  tcase_add_loop_test(tc, differential_single_thread, 0, 3);
  suite_add_tcase(s, tc);
  return s;
}
