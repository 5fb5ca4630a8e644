/* The purge thread: makes HAKMEM_PURGE_DELAY_MS a promise even when the
 * program goes quiet. Without it, a due flush waits for the allocator's next
 * slow path, and memory freed just before an idle phase stays resident.
 * It starts on the first queued range (a process that never gives memory
 * back never gets a thread), sleeps until the oldest range is due, and waits
 * without a timeout while the queue is empty. HAKMEM_PURGE_THREAD=0 turns it
 * off for programs that must stay single-threaded (unshare, some sandboxes). */
#include <signal.h>
#include <time.h>

#include "internal.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static _Atomic int started;   /* a thread runs (or is being created) */
static _Atomic int idle;      /* it waits for the queue to fill */

/* Sleep ms milliseconds (at least one: never spin). */
static void sleep_ms(uint64_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t ns = (uint64_t)ts.tv_nsec + (ms ? ms : 1) * 1000000ull;
  ts.tv_sec += (time_t)(ns / 1000000000ull);
  ts.tv_nsec = (long)(ns % 1000000000ull);
  pthread_mutex_lock(&mu);
  pthread_cond_timedwait(&cv, &mu, &ts);
  pthread_mutex_unlock(&mu);
}

static void wait_for_work(void) {
  pthread_mutex_lock(&mu);
  atomic_store(&idle, 1);
  while (atomic_load(&idle) && hak_batch_oldest_ms() == 0) pthread_cond_wait(&cv, &mu);
  atomic_store(&idle, 0);
  pthread_mutex_unlock(&mu);
}

static void *purge_main(void *arg) {
  (void)arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);  /* signals are the program's business */
  for (;;) {
    uint64_t oldest = hak_batch_oldest_ms();
    if (oldest == 0) { wait_for_work(); continue; }
    /* Same coarse clock as the queue's time stamps. */
    uint64_t due = oldest + (uint64_t)(hak_opt.purge_delay_ms > 0 ? hak_opt.purge_delay_ms : 0);
    uint64_t now = hak_coarse_ms();
    if (now < due) sleep_ms(due - now);
    else if (!hak_batch_flush_due()) sleep_ms(1);  /* another flush runs */
  }
  return NULL;
}

/* Called with no lock held, when ranges are pending. */
void hak_purge_start(void) {
  if (!hak_opt.purge_thread || hak_opt.purge_delay_ms < 0) return;
  if (atomic_load_explicit(&started, memory_order_relaxed) || atomic_exchange(&started, 1)) return;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  pthread_t tid;
  if (pthread_create(&tid, &attr, purge_main, NULL) != 0) {
    hak_opt.purge_thread = 0;  /* no thread: delays are checked on slow paths */
    if (hak_opt.verbose) hak_warn("cannot start the purge thread; flushing on allocator activity\n");
  }
  pthread_attr_destroy(&attr);
}

/* The queue went from empty to not empty. */
void hak_purge_wake(void) {
  if (!atomic_load_explicit(&idle, memory_order_relaxed)) return;
  pthread_mutex_lock(&mu);
  atomic_store(&idle, 0);
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
}

/* The thread did not survive fork: the child starts its own when needed. */
void hak_purge_atfork_child(void) {
  pthread_mutex_init(&mu, NULL);
  atomic_store(&started, 0);
  atomic_store(&idle, 0);
}
