/* The purge thread: drives the release batch, so that
 *  - a limit reached by a free is flushed here, not in the thread that freed
 *    (a free never waits for a flush syscall unless it reuses a range that
 *    a flush holds), and
 *  - HAKMEM_PURGE_DELAY_MS is a promise even when the program goes quiet:
 *    without the thread, a due flush waits for the allocator's next slow
 *    path, and memory freed before an idle phase stays resident.
 * It also gives back the empty pages of exited threads' heaps, and runs
 * the adaptive release policy's epochs (policy.c).
 *
 * It starts when the first range is queued (a process that never gives
 * memory back never gets a thread) and sleeps in the batch's wait. Without
 * it (HAKMEM_PURGE_THREAD=0, for programs that must stay single-threaded, or
 * when it cannot start) the allocator's slow paths do its work inline. */
#include <errno.h>
#include <signal.h>
#include <time.h>

#include "internal.h"

#define SMALL_STACK (256 * 1024)  /* plenty for a flush; glibc adds static TLS */

static _Atomic int state;         /* 1 running, 0 not started, -errno failed */
static _Atomic int starting;
static pthread_t thread;          /* valid while state is 1 */

/* Exited threads' heaps are collected at most this often. A collection
 * re-arms every page to report the next remote free, which kicks the thread:
 * a thread freeing another's blocks after it exited woke it once per free,
 * up to 270 times in a 0.3 s run of the mixed scenario. */
#define COLLECT_EVERY_MS 10

static uint64_t earliest(uint64_t a, uint64_t b) { return !a || (b && b < a) ? b : a; }

/* Kicked for a range that was taken back before the thread looked (a
 * program that frees a block and takes it again at once), the thread sleeps
 * a delay all the same: the next such range is due after that, and its free
 * need not kick. Sleeping without a deadline instead, it was kicked by the
 * next free and found the queue empty again, free after free: 300-440
 * wakeups in 400 ms at a 50 ms delay. Now at most two per delay. */
static uint64_t after_empty_kick(uint64_t now) {
  long long delay = hak_opt(PURGE_DELAY_MS);
  return delay > 0 ? now + (uint64_t)delay : 0;
}

static void *purge_main(void *arg) {
  (void)arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);  /* signals are the program's business */
  pthread_setname_np(pthread_self(), "hakmem-purge");
  uint64_t collected_ms = 0;
  bool kicked = false;
  for (;;) {
    uint64_t now = _hak_now_ms(), next_ms, tick_ms = _hak_policy_tick(now);  /* may change the delay */
    int why = _hak_batch_due(&next_ms);
    if (why != HAK_FLUSH_WHY_NONE) {
      _hak_batch_flush(why);
      continue;
    }
    if (_hak_heap_has_abandoned()) {
      if (now >= collected_ms + COLLECT_EVERY_MS) {
        _hak_heap_collect_abandoned();
        collected_ms = now;
        continue;
      }
      next_ms = earliest(next_ms, collected_ms + COLLECT_EVERY_MS);
    }
    uint64_t until = earliest(next_ms, tick_ms);
    if (kicked && !next_ms) until = earliest(until, after_empty_kick(now));
    kicked = _hak_batch_wait(until);
    hak_stat_inc(purge_wakeups);
  }
  return NULL;
}

static int create(size_t stack) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (stack) pthread_attr_setstacksize(&attr, stack);
  int err = pthread_create(&thread, &attr, purge_main, NULL);
  pthread_attr_destroy(&attr);
  return err;
}

/* A small stack, unless the program's static TLS (which glibc carves from
 * the thread's stack) does not fit in it: then the default one. */
static void start(void) {
  if (atomic_exchange(&starting, 1)) return;
  int err = create(SMALL_STACK);
  if (err == EINVAL) err = create(0);
  atomic_store(&state, err ? -err : 1);
  if (err && hak_opt(VERBOSE)) _hak_warn("cannot start the purge thread (%s); flushing on allocator activity\n",
                     _hak_errno_name(err));
}

/* Called on allocator slow paths, with no lock held. */
void _hak_purge_poll(void) {
  int st = atomic_load_explicit(&state, memory_order_relaxed);
  if (HAK_LIKELY(st == 1)) return;  /* the thread drives the batch */
  if (st == 0 && hak_opt(PURGE_THREAD) && _hak_batch_pending()) {
    start();
    if (atomic_load(&state) == 1) return;
  }
  uint64_t next_ms;
  int why = _hak_batch_due(&next_ms);
  if (why != HAK_FLUSH_WHY_NONE) _hak_batch_flush(why);
  if (_hak_heap_has_abandoned()) _hak_heap_collect_abandoned();
}

int _hak_purge_state(void) { return atomic_load(&state); }

/* What the thread has cost the program: the allocator's work off its threads. */
uint64_t _hak_purge_cpu_us(void) {
  clockid_t clock;
  struct timespec ts;
  if (atomic_load(&state) != 1 || pthread_getcpuclockid(thread, &clock) || clock_gettime(clock, &ts)) return 0;
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The thread did not survive fork: the child starts its own when needed. */
void _hak_purge_atfork_child(void) {
  atomic_store(&state, 0);
  atomic_store(&starting, 0);
}
