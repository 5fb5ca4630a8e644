/* The release batch: one queue per process of ranges waiting to go back to
 * the kernel, flushed through one backend call so that N ranges cost one
 * TLB flush (vector) instead of N (loop).
 *
 * The invariant: a queued range is never advised after any byte of it has
 * been handed out again or unmapped. Reuse goes through hak_batch_cancel,
 * which takes the range out of the queue, or, when a flush already holds
 * it, waits for that flush to finish. The flush syscall runs holding only
 * flush_lock, never the queue lock or any allocator lock. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sdt.h>

#include "hak_io.h"
#include "internal.h"

#define QCAP (2 * HAK_BATCH_LIMIT)  /* room to keep queuing while a flush runs */

typedef struct {
  pthread_mutex_t lock;        /* the queue and the in-flight list */
  pthread_mutex_t flush_lock;  /* held across the flush syscall */
  struct iovec q[QCAP];
  uint32_t n;
  uint64_t bytes;
  uint64_t gen;                /* generation of the ranges being queued */
  _Atomic uint64_t done_gen;   /* every generation below it is out of the kernel's hands */
  _Atomic uint64_t oldest_ms;  /* queue time of the oldest range, 0 when empty */
  _Atomic int trigger;         /* 1 + HAK_FLUSH_WHY_* when a limit was reached */
  struct iovec inflight[QCAP];
  uint32_t ninflight;
  const hak_io_backend_t *io;  /* NULL: HAKMEM_FLUSH=off */
  int mode;                    /* hak_flush_mode_t in use */
  int mode_requested;
  int fallback_errno;
  char fallback_reason[64];
} batch_t;

static batch_t B = {
  .lock = PTHREAD_MUTEX_INITIALIZER,
  .flush_lock = PTHREAD_MUTEX_INITIALIZER,
  .gen = 1,
  .done_gen = 1,
  .io = &hak_io_loop,
  .mode = HAK_FLUSH_LOOP,
};

static const hak_io_backend_t *backend_of(int mode) {
  switch (mode) {
  case HAK_FLUSH_VECTOR: return &hak_io_vector;
  case HAK_FLUSH_URING: return &hak_io_uring;
  case HAK_FLUSH_OFF: return NULL;
  default: return &hak_io_loop;
  }
}

/* ---- queue ---------------------------------------------------------------*/

uint64_t hak_batch_add(void *addr, size_t len) {
  if (HAK_UNLIKELY(!B.io)) {  /* off: memory stays resident */
    hak_stat_inc(ranges_dropped);
    return 0;
  }
  pthread_mutex_lock(&B.lock);
  if (HAK_UNLIKELY(B.n == QCAP)) {
    pthread_mutex_unlock(&B.lock);
    hak_stat_inc(ranges_dropped);
    return 0;
  }
  B.q[B.n++] = (struct iovec){addr, len};
  B.bytes += len;
  uint64_t gen = B.gen;
  uint32_t pending = B.n;
  if (pending == 1) atomic_store_explicit(&B.oldest_ms, hak_coarse_ms() | 1, memory_order_relaxed);
  if (pending >= (uint32_t)hak_opt.batch_max)
    atomic_store_explicit(&B.trigger, 1 + HAK_FLUSH_WHY_COUNT, memory_order_relaxed);
  else if (B.bytes >= (uint64_t)hak_opt.batch_bytes)
    atomic_store_explicit(&B.trigger, 1 + HAK_FLUSH_WHY_BYTES, memory_order_relaxed);
  pthread_mutex_unlock(&B.lock);
  if (pending == 1) hak_purge_wake();
  hak_stat_inc(ranges_added);
  hak_stat_add(bytes_added, len);
  int mode = B.mode;
  STAP_PROBE3(hakmem, batch_add, pending, len, mode);
  return gen;
}

bool hak_batch_done(uint64_t gen) {
  return gen < atomic_load_explicit(&B.done_gen, memory_order_acquire);
}

static bool overlaps(const struct iovec *v, uintptr_t lo, uintptr_t hi) {
  uintptr_t a = (uintptr_t)v->iov_base, b = a + v->iov_len;
  return a < hi && lo < b;
}

/* Cut [lo,hi) out of q[i]; returns the bytes taken out. */
static size_t cut_entry(uint32_t i, uintptr_t lo, uintptr_t hi) {
  uintptr_t a = (uintptr_t)B.q[i].iov_base, b = a + B.q[i].iov_len;
  size_t before = B.q[i].iov_len;
  if (lo <= a && hi >= b) {              /* whole entry */
    B.q[i] = B.q[--B.n];
    return before;
  }
  if (lo <= a) {                         /* head */
    B.q[i] = (struct iovec){(void *)hi, b - hi};
  } else if (hi >= b) {                  /* tail */
    B.q[i].iov_len = lo - a;
  } else {                               /* middle: keep both sides */
    B.q[i].iov_len = lo - a;
    if (B.n < QCAP) B.q[B.n++] = (struct iovec){(void *)hi, b - hi};
    else { hak_stat_inc(ranges_dropped); return before - (lo - a); }
  }
  return before - B.q[i].iov_len;
}

void hak_batch_cancel(void *addr, size_t len, uint64_t gen) {
  if (gen == 0 || hak_batch_done(gen)) return;
  uintptr_t lo = (uintptr_t)addr, hi = lo + len;
  uint64_t cancelled = 0, ranges = 0;
  pthread_mutex_lock(&B.lock);
  for (uint32_t i = 0; i < B.n;) {
    if (!overlaps(&B.q[i], lo, hi)) { i++; continue; }
    cancelled += cut_entry(i, lo, hi);
    ranges++;
    if (i < B.n && !overlaps(&B.q[i], lo, hi)) i++;  /* else look again at slot i */
  }
  B.bytes -= cancelled;
  if (B.n == 0) atomic_store_explicit(&B.oldest_ms, 0, memory_order_relaxed);
  bool busy = false;
  for (uint32_t i = 0; i < B.ninflight && !busy; i++) busy = overlaps(&B.inflight[i], lo, hi);
  pthread_mutex_unlock(&B.lock);
  hak_stat_add(ranges_cancelled, ranges);
  hak_stat_add(bytes_cancelled, cancelled);
  if (busy) {  /* the flush that holds it ends before flush_lock is free */
    pthread_mutex_lock(&B.flush_lock);
    pthread_mutex_unlock(&B.flush_lock);
    hak_stat_inc(inflight_waits);
  }
}

/* ---- flush ---------------------------------------------------------------*/

static const char *errno_name(int err) {
  switch (err) {
  case EINVAL: return "EINVAL";
  case ENOSYS: return "ENOSYS";
  case EPERM: return "EPERM";
  case EBADF: return "EBADF";
  case EOPNOTSUPP: return "EOPNOTSUPP";
  case ENOMEM: return "ENOMEM";
  default: return "error";
  }
}

static void fall_back(const char *from, int err) {
  B.fallback_errno = err;
  snprintf(B.fallback_reason, sizeof B.fallback_reason, "%s: %s (errno %d)", from, errno_name(err), err);
  B.io = &hak_io_loop;
  B.mode = HAK_FLUSH_LOOP;
  hak_stat_inc(fallbacks);
  if (hak_opt.verbose) hak_warn("release falls back to loop: %s\n", B.fallback_reason);
}

static void count_syscalls(int mode, uint32_t n) {
  if (mode == HAK_FLUSH_VECTOR) hak_stat_add(process_madvise_calls, n);
  else if (mode == HAK_FLUSH_URING) hak_stat_add(uring_enter_calls, n);
  else hak_stat_add(madvise_calls, n);
  hak_stat_add(flush_syscalls, n);
}

/* Give inflight[0..n) to the backend; a backend that cannot work here hands
 * the rest to loop for good; a range the kernel refuses is skipped. */
static void submit_all(uint32_t n, uint64_t *bytes_done, uint32_t *syscalls) {
  size_t done = 0;
  while (done < n && B.io) {
    hak_io_result_t res;
    int mode = B.mode;
    B.io->submit(B.inflight + done, n - done, hak_opt.advice, &res);
    count_syscalls(mode, res.syscalls);
    *syscalls += res.syscalls;
    done += res.ranges_done;
    *bytes_done += res.bytes_done;
    hak_stat_add(ranges_flushed, res.ranges_done);
    hak_stat_add(bytes_flushed, res.bytes_done);
    if (res.err == 0) break;
    if (mode != HAK_FLUSH_LOOP && hak_io_is_fatal(res.err)) {
      fall_back(B.io->name, res.err);
      continue;
    }
    hak_stat_inc(flush_errors);
    hak_stat_inc(ranges_dropped);
    done++;
  }
}

/* Caller holds flush_lock. */
static void flush_locked(int why) {
  pthread_mutex_lock(&B.lock);
  uint32_t n = B.n;
  if (n == 0) {
    atomic_store_explicit(&B.trigger, 0, memory_order_relaxed);
    pthread_mutex_unlock(&B.lock);
    return;
  }
  memcpy(B.inflight, B.q, n * sizeof(struct iovec));
  B.ninflight = n;
  uint64_t gen = B.gen++, bytes = B.bytes;
  B.n = 0;
  B.bytes = 0;
  atomic_store_explicit(&B.oldest_ms, 0, memory_order_relaxed);
  atomic_store_explicit(&B.trigger, 0, memory_order_relaxed);
  pthread_mutex_unlock(&B.lock);

  int mode = B.mode;
  STAP_PROBE3(hakmem, flush_begin, n, bytes, mode);
  uint64_t t0 = hak_now_ns(), bytes_done = 0;
  uint32_t syscalls = 0;
  submit_all(n, &bytes_done, &syscalls);
  hak_stat_add(flush_ns, hak_now_ns() - t0);
  STAP_PROBE4(hakmem, flush_end, n, bytes_done, mode, syscalls);

  pthread_mutex_lock(&B.lock);
  B.ninflight = 0;
  atomic_store_explicit(&B.done_gen, gen + 1, memory_order_release);
  pthread_mutex_unlock(&B.lock);
  hak_stat_inc(flushes);
  switch (why) {
  case HAK_FLUSH_WHY_COUNT: hak_stat_inc(flush_by_count); break;
  case HAK_FLUSH_WHY_BYTES: hak_stat_inc(flush_by_bytes); break;
  case HAK_FLUSH_WHY_DELAY: hak_stat_inc(flush_by_delay); break;
  default: hak_stat_inc(flush_explicit); break;
  }
}

void hak_batch_flush(int why) {
  pthread_mutex_lock(&B.flush_lock);
  flush_locked(why);
  pthread_mutex_unlock(&B.flush_lock);
}

/* Cheap when nothing is due: two relaxed loads. A full queue makes the
 * caller wait for the flush (the queue must stay bounded); a due delay only
 * flushes when no other flush runs. */
void hak_batch_poll(void) {
  int trig = atomic_load_explicit(&B.trigger, memory_order_relaxed);
  if (HAK_UNLIKELY(trig)) {
    hak_batch_flush(trig - 1);
    return;
  }
  if (HAK_LIKELY(atomic_load_explicit(&B.oldest_ms, memory_order_relaxed) == 0)) return;
  hak_purge_start();
  hak_batch_flush_due();
}

uint64_t hak_batch_oldest_ms(void) {
  return atomic_load_explicit(&B.oldest_ms, memory_order_relaxed) & ~1ull;
}

/* True when nothing is left to do (flushed, or nothing due). */
bool hak_batch_flush_due(void) {
  uint64_t oldest = hak_batch_oldest_ms();
  if (oldest == 0 || hak_opt.purge_delay_ms < 0) return true;
  if (hak_coarse_ms() - oldest < (uint64_t)hak_opt.purge_delay_ms) return true;
  if (pthread_mutex_trylock(&B.flush_lock) != 0) return false;
  flush_locked(HAK_FLUSH_WHY_DELAY);
  pthread_mutex_unlock(&B.flush_lock);
  return true;
}

/* ---- backend choice ------------------------------------------------------*/

/* Probe without holding any lock: a probe may allocate (liburing's does). */
int hak_batch_set_mode(int requested) {
  int mode = requested, err = 0;
  if (requested == HAK_FLUSH_AUTO || requested == HAK_FLUSH_VECTOR) {
    err = hak_io_vector.probe();
    mode = err ? HAK_FLUSH_LOOP : HAK_FLUSH_VECTOR;
  } else if (requested == HAK_FLUSH_URING) {
    err = hak_io_uring.probe();
    mode = err ? HAK_FLUSH_LOOP : HAK_FLUSH_URING;
  }
  pthread_mutex_lock(&B.flush_lock);
  flush_locked(HAK_FLUSH_WHY_EXPLICIT);
  B.mode_requested = requested;
  B.io = backend_of(mode);
  B.mode = mode;
  B.fallback_errno = 0;
  B.fallback_reason[0] = '\0';
  if (err)
    fall_back(requested == HAK_FLUSH_URING ? "io_uring probe" : "process_madvise probe", err);
  pthread_mutex_unlock(&B.flush_lock);
  return mode;
}

void hak_batch_init(void) {
  hak_batch_set_mode(hak_opt.flush_mode);
}

void hak_batch_fill_stats(hak_stats_t *st) {
  pthread_mutex_lock(&B.lock);
  st->pending_ranges = B.n;
  st->pending_bytes = B.bytes;
  st->flush_mode = B.mode;
  st->flush_mode_requested = B.mode_requested;
  st->fallback_errno = B.fallback_errno;
  memcpy(st->fallback_reason, B.fallback_reason, sizeof st->fallback_reason);
  pthread_mutex_unlock(&B.lock);
  st->advice = hak_opt.advice;
}

/* ---- fork ----------------------------------------------------------------*/

void hak_batch_atfork_prepare(void) {
  pthread_mutex_lock(&B.flush_lock);
  pthread_mutex_lock(&B.lock);
}

void hak_batch_atfork_parent(void) {
  pthread_mutex_unlock(&B.lock);
  pthread_mutex_unlock(&B.flush_lock);
}

/* The queue is the child's too (same addresses, copied memory); what names
 * the parent (pidfd, io_uring) must be opened again. */
void hak_batch_atfork_child(void) {
  pthread_mutex_init(&B.lock, NULL);
  pthread_mutex_init(&B.flush_lock, NULL);
  B.ninflight = 0;
  hak_io_vector.atfork_child();
  hak_io_uring.atfork_child();
  hak_io_loop.atfork_child();
}
