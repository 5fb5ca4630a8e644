/* Signal storm (SIGALRM by setitimer, SIGUSR1 from a thread, with and without SA_RESTART) during constant flushes: live data is never released, for every backend x advice. */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/time.h>
#include <time.h>

#include "testutil.h"

enum { WORKERS = 3, SLOTS = 48, OPS = 40000 };

static atomic_long sig_alrm, sig_usr1;

static void on_alrm(int sig) {
  (void)sig;
  atomic_fetch_add_explicit(&sig_alrm, 1, memory_order_relaxed);
}

static void on_usr1(int sig) {
  (void)sig;
  atomic_fetch_add_explicit(&sig_usr1, 1, memory_order_relaxed);
}

typedef struct storm_s {
  const char *combo;
  int pageout;        /* ADVICE=free: reclaim before checking, so a wrong lazy free reads zero */
  atomic_int stop;
  atomic_long ops, bytes_verified, bad;
  char first_bad[256];
  pthread_mutex_t lock;
  pthread_t workers[WORKERS];
} storm_t;

typedef struct slot_s {
  unsigned char *p;
  size_t n;
  int ttl;  /* operations on this slot it survives */
} slot_t;

/* 70% small (16 B - 8 KiB), 25% medium (up to 256 KiB), 5% large (300 KiB - 4 MiB). */
static size_t storm_size(uint64_t *rng) {
  uint64_t r = tu_rand(rng) % 100;
  if (r < 70) return 16 + tu_rand(rng) % (8 * KiB - 15);
  if (r < 95) return 8 * KiB + tu_rand(rng) % (248 * KiB + 1);
  return 300 * KiB + tu_rand(rng) % (3796 * KiB + 1);
}

static void verify(storm_t *st, const slot_t *s, int worker, long op, const char *when) {
  if (st->pageout) tu_pageout(s->p, s->n);
  long off = tu_check_fast(s->p, s->n, (uint64_t)(uintptr_t)s->p);
  atomic_fetch_add_explicit(&st->bytes_verified, (long)s->n, memory_order_relaxed);
  if (off < 0) return;
  if (atomic_fetch_add(&st->bad, 1) == 0) {
    pthread_mutex_lock(&st->lock);
    snprintf(st->first_bad, sizeof st->first_bad,
             "%s: worker %d op %ld (%s): block %p size %zu byte %ld is 0x%02x, want 0x%02x",
             st->combo, worker, op, when, (void *)s->p, s->n, off, s->p[off],
             tu_byte((uint64_t)(uintptr_t)s->p, (size_t)off));
    pthread_mutex_unlock(&st->lock);
  }
}

typedef struct worker_arg_s {
  storm_t *st;
  int id;
} worker_arg_t;

static void *worker(void *arg) {
  worker_arg_t *w = arg;
  storm_t *st = w->st;
  uint64_t rng = 0x5157 + (uint64_t)w->id * 7919;
  slot_t slot[SLOTS];
  memset(slot, 0, sizeof slot);
  for (long op = 0; op < OPS && !atomic_load(&st->bad); op++) {
    slot_t *s = &slot[tu_rand(&rng) % SLOTS];
    if (s->p && s->ttl-- > 0) {
      if (tu_rand(&rng) % 8 == 0) verify(st, s, w->id, op, "alive");
    } else if (s->p) {
      verify(st, s, w->id, op, "before free");
      hak_free(s->p);
      s->p = NULL;
    } else {
      s->n = storm_size(&rng);
      s->p = hak_malloc(s->n);
      if (!s->p) {
        if (atomic_fetch_add(&st->bad, 1) == 0) {
          pthread_mutex_lock(&st->lock);
          snprintf(st->first_bad, sizeof st->first_bad, "malloc(%zu) failed", s->n);
          pthread_mutex_unlock(&st->lock);
        }
        break;
      }
      tu_fill_fast(s->p, s->n, (uint64_t)(uintptr_t)s->p);  /* seed = address */
      uint64_t r = tu_rand(&rng) % 100;
      s->ttl = r < 10 ? 40 + (int)(r * 4) : (int)(r % 4);  /* some stay for a while */
    }
    if (op % 16 == 15) hak_flush();  /* flushes in the threads the signals hit */
    atomic_fetch_add_explicit(&st->ops, 1, memory_order_relaxed);
  }
  for (int i = 0; i < SLOTS; i++)
    if (slot[i].p) {
      verify(st, &slot[i], w->id, OPS, "at end");
      hak_free(slot[i].p);
    }
  return NULL;
}

/* SIGUSR1 at a few kHz, to one worker at a time or to the process. */
static void *signaller(void *arg) {
  storm_t *st = arg;
  sigset_t both;
  sigemptyset(&both);
  sigaddset(&both, SIGALRM);
  sigaddset(&both, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &both, NULL);  /* the storm is for the workers */
  struct timespec ts = {0, 100 * 1000};
  for (unsigned k = 0; !atomic_load(&st->stop); k++) {
    if (k % 4 == 3) kill(getpid(), SIGUSR1);
    else pthread_kill(st->workers[k % WORKERS], SIGUSR1);
    nanosleep(&ts, NULL);
  }
  return NULL;
}

START_TEST(signal_storm_during_flushes) {
  const char *backend, *advice;
  tu_opts_t o = {0};
  tu_quiet_combo(&o, _i, &backend, &advice);
  char combo[64];
  snprintf(combo, sizeof combo, "%s/%s", backend, advice);
  tu_opt(&o, "BATCH_MAX", "4");         /* flushes all the time */
  tu_opt(&o, "PURGE_DELAY_MS", "0");
  tu_opt(&o, "CACHE_BYTES", "16M");     /* large blocks are reused from the cache and evicted */
  hak_stats_reset();

  static storm_t st;
  memset(&st, 0, sizeof st);
  pthread_mutex_init(&st.lock, NULL);
  st.combo = combo;
  st.pageout = strcmp(advice, "free") == 0;
  atomic_store(&sig_alrm, 0);
  atomic_store(&sig_usr1, 0);

  /* One handler restarts system calls, the other does not; odd rounds swap them. */
  struct sigaction sa_alrm, sa_usr1, old_alrm, old_usr1;
  memset(&sa_alrm, 0, sizeof sa_alrm);
  memset(&sa_usr1, 0, sizeof sa_usr1);
  sa_alrm.sa_handler = on_alrm;
  sa_usr1.sa_handler = on_usr1;
  sa_alrm.sa_flags = _i % 2 ? 0 : SA_RESTART;
  sa_usr1.sa_flags = _i % 2 ? SA_RESTART : 0;
  ck_assert_int_eq(sigaction(SIGALRM, &sa_alrm, &old_alrm), 0);
  ck_assert_int_eq(sigaction(SIGUSR1, &sa_usr1, &old_usr1), 0);

  worker_arg_t args[WORKERS];
  for (int i = 0; i < WORKERS; i++) {
    args[i] = (worker_arg_t){&st, i};
    ck_assert_int_eq(pthread_create(&st.workers[i], NULL, worker, &args[i]), 0);
  }
  pthread_t sig;
  ck_assert_int_eq(pthread_create(&sig, NULL, signaller, &st), 0);
  /* The process-directed signals go to a thread that does not block them:
   * not this one, which only waits. */
  sigset_t both, old_mask;
  sigemptyset(&both);
  sigaddset(&both, SIGALRM);
  sigaddset(&both, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &both, &old_mask);
  struct itimerval it = {{0, 250}, {0, 250}};  /* SIGALRM at up to 4 kHz */
  ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);

  for (int i = 0; i < WORKERS; i++) pthread_join(st.workers[i], NULL);
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  atomic_store(&st.stop, 1);
  pthread_join(sig, NULL);
  /* Signals still pending (every thread left blocks them) go now: the old
   * handlers (Check's SIGALRM handler kills the test) must never see them. */
  struct timespec zero = {0, 0};
  while (sigtimedwait(&both, NULL, &zero) > 0) {
  }
  sigaction(SIGALRM, &old_alrm, NULL);
  sigaction(SIGUSR1, &old_usr1, NULL);
  pthread_sigmask(SIG_SETMASK, &old_mask, NULL);

  hak_flush();
  hak_stats_t s = tu_stats();
  long alrm = atomic_load(&sig_alrm), usr1 = atomic_load(&sig_usr1);
  fprintf(stderr,
          "note: torture_signals %s (ran as %s): %ld ops, %ld MiB verified, %ld signals "
          "(%ld SIGALRM, %ld SIGUSR1), %llu flushes, %llu flush errors\n",
          combo, tu_mode_name(s.flush_mode), atomic_load(&st.ops),
          atomic_load(&st.bytes_verified) >> 20, alrm + usr1, alrm, usr1,
          (unsigned long long)s.flushes, (unsigned long long)s.flush_errors);
  ck_assert_msg(atomic_load(&st.bad) == 0, "%ld corrupted blocks under signals; first: %s",
                atomic_load(&st.bad), st.first_bad);
  ck_assert_msg(alrm + usr1 > 0, "no signal was delivered");
  ck_assert_uint_gt(s.flushes, 0);
  ck_assert_msg(s.flush_errors == 0, "%s: %llu ranges failed to flush under signals (EINTR?)",
                combo, (unsigned long long)s.flush_errors);
  tu_opts_restore(&o);
}
END_TEST

Suite *test_torture_signals_suite(void) {
  Suite *s = suite_create("torture_signals");
  TCase *tc = tcase_create("storm");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, signal_storm_during_flushes, 0, 6);
  suite_add_tcase(s, tc);
  return s;
}
