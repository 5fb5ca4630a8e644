/* The release batch: the ranges waiting to go back to the kernel, flushed
 * through one backend call so that N ranges cost one TLB flush (vector)
 * instead of N (loop).
 *
 * The invariant: a queued range is never advised after any byte of it has
 * been handed out again or unmapped. Reuse goes through _hak_batch_cancel,
 * which takes the range out of the queue or, when a flush already holds it,
 * waits for that flush to end; and a flush ends only when the kernel holds
 * none of its ranges, whatever the backend met on the way.
 *
 * The queue is sharded by 4 MiB region, so that threads releasing different
 * memory do not contend; a flush sweeps every shard into one in-flight list,
 * sorted by address, and runs the syscalls holding only flush_lock. Adding
 * never flushes: it raises a trigger, and whoever drives the batch (the
 * purge thread, or the allocator's slow path without one) flushes. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sdt.h>
#include <time.h>

#include "hak_io.h"
#include "internal.h"

#define SHARDS 16
#define SHARD_CAP 512
#define QMAX (SHARDS * SHARD_CAP)
#define REFUSALS_MAX 3  /* ranges in a row a backend refuses and madvise takes */

typedef struct {
  uintptr_t addr;
  size_t len;
  uint64_t gen;        /* the token its owner holds */
  uint32_t advice;     /* the advice in force when the range was queued */
  uint32_t queued_ms;  /* when (wraps; only differences are used) */
} entry_t;

typedef struct {
  pthread_mutex_t lock;
  uint32_t n;                    /* entries used in its row of queues[] */
} __attribute__((aligned(64))) shard_t;

/* The big arrays live apart, in .bss: zero, and resident only where used.
 * The shards' locks sit together, apart from their entries: a flush locks
 * every shard, and with the entries behind each lock it touched a page per
 * shard (64 KiB) in a process that queues into one or two. */
static shard_t shards[SHARDS];
static entry_t queues[SHARDS][SHARD_CAP];

static entry_t *q_of(const shard_t *s) { return queues[s - shards]; }
static entry_t inflight[QMAX];   /* the flush in progress, sorted by address */
static struct iovec iovs[QMAX];

static struct {
  _Atomic uint64_t gen;          /* token of the ranges being queued */
  _Atomic uint64_t gen_ms;       /* the millisecond whose ranges it is */
  _Atomic uint64_t done_gen;     /* every token below it is out of the kernel's hands */
  _Atomic uint64_t pending, pending_bytes;
  _Atomic uint64_t oldest_ms;    /* queue time of the oldest range (| 1), 0 when empty */
  _Atomic int trigger;           /* 1 + HAK_FLUSH_WHY_* when a limit was reached */
  pthread_mutex_t flush_lock;    /* one flush at a time; held across its syscalls */
  /* the flush in progress */
  pthread_mutex_t inflight_lock;
  pthread_cond_t inflight_done;
  uint32_t ninflight;
  /* the backend: changed under flush_lock and mode_lock, read under either */
  pthread_mutex_t mode_lock;
  const hak_io_backend_t *io;    /* NULL: HAKMEM_FLUSH=off */
  _Atomic int off;
  int mode, mode_requested, fallback_errno, refusals;
  char fallback_reason[64];
  /* whoever drives the batch sleeps here */
  pthread_mutex_t wake_lock;
  pthread_cond_t wake;
  _Atomic int sleeping, kicked;
  _Atomic uint64_t wake_at;      /* ms the driver sleeps until; 0 awake, UINT64_MAX no deadline */
} B = {
  .gen = 1,
  .done_gen = 1,
  .flush_lock = PTHREAD_MUTEX_INITIALIZER,
  .inflight_lock = PTHREAD_MUTEX_INITIALIZER,
  .mode_lock = PTHREAD_MUTEX_INITIALIZER,
  .wake_lock = PTHREAD_MUTEX_INITIALIZER,
  .io = &_hak_io_loop,
  .mode = HAK_FLUSH_LOOP,
};

static shard_t *shard_of(uintptr_t addr) {
  uint64_t region = addr >> HAK_SEGMENT_SHIFT;
  return &shards[(region * 0x9E3779B97F4A7C15ull) >> 60];
}

static void init_conds(void) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&B.wake, &ca);
  pthread_cond_init(&B.inflight_done, &ca);
  pthread_condattr_destroy(&ca);
}

/* ---- waking the driver --------------------------------------------------------*/

/* Pairs with _hak_batch_wait: the flag is set before `sleeping` is read,
 * and read after it is set, so one side always sees the other. */
void _hak_batch_kick(void) {
  atomic_store(&B.kicked, 1);
  if (!atomic_load(&B.sleeping)) return;
  pthread_mutex_lock(&B.wake_lock);
  pthread_cond_signal(&B.wake);
  pthread_mutex_unlock(&B.wake_lock);
}

static struct timespec deadline_of(uint64_t until_ms) {
  uint64_t now = _hak_now_ms(), ms = until_ms > now ? until_ms - now : 0;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t ns = (uint64_t)ts.tv_nsec + (ms ? ms : 1) * 1000000ull;
  ts.tv_sec += (time_t)(ns / 1000000000ull);
  ts.tv_nsec = (long)(ns % 1000000000ull);
  return ts;
}

/* A new oldest range, queued at now_ms, is due a delay later: wake the
 * driver, unless it sleeps until no later than that (it then finds the
 * range). It publishes its deadline before it reads `kicked`, and forgets it
 * when it wakes, so one side always sees the other: a driver that computed
 * its deadline before the range came either wakes by the range's due time
 * or is kicked. Without this, a program that frees a block and takes it back
 * at once (queue empty, one range, empty again) woke the purge thread at
 * every free: 800 wakeups in 21 ms, 12% of the VM scenario's CPU. */
static void kick_for(uint64_t now_ms) {
  long long delay = hak_opt(PURGE_DELAY_MS);
  uint64_t wake = atomic_load(&B.wake_at);
  if (wake && (delay < 0 || wake <= now_ms + (uint64_t)delay)) return;  /* (never: no deadline is late) */
  _hak_batch_kick();
}

/* Returns whether a kick ended (or skipped) the sleep. */
bool _hak_batch_wait(uint64_t until_ms) {
  int old;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
  pthread_mutex_lock(&B.wake_lock);
  atomic_store(&B.wake_at, until_ms ? until_ms : UINT64_MAX);
  atomic_store(&B.sleeping, 1);
  if (!atomic_load(&B.trigger) && !atomic_load(&B.kicked)) {
    if (until_ms == 0) {
      pthread_cond_wait(&B.wake, &B.wake_lock);
    } else {
      struct timespec ts = deadline_of(until_ms);
      pthread_cond_timedwait(&B.wake, &B.wake_lock, &ts);
    }
  }
  atomic_store(&B.wake_at, 0);
  atomic_store(&B.sleeping, 0);
  bool kicked = atomic_exchange(&B.kicked, 0);
  pthread_mutex_unlock(&B.wake_lock);
  pthread_setcancelstate(old, NULL);
  return kicked;
}

/* ---- queue ------------------------------------------------------------------------*/

static void raise_trigger(int why) {
  int none = 0;
  if (atomic_compare_exchange_strong(&B.trigger, &none, 1 + why)) _hak_batch_kick();
}

uint64_t _hak_batch_add(void *addr, size_t len) {
  if (HAK_UNLIKELY(atomic_load_explicit(&B.off, memory_order_relaxed))) {
    hak_stat_inc(ranges_dropped);  /* FLUSH=off: the memory stays resident */
    return 0;
  }
  shard_t *s = shard_of((uintptr_t)addr);
  pthread_mutex_lock(&s->lock);
  if (HAK_UNLIKELY(s->n == SHARD_CAP)) {
    pthread_mutex_unlock(&s->lock);
    hak_stat_inc(ranges_dropped);  /* resident until reused; a flush is overdue */
    raise_trigger(HAK_FLUSH_WHY_COUNT);
    return 0;
  }
  uint64_t now = _hak_now_ms();
  /* Read under the shard lock: a flush that takes this range has a
   * generation no newer than the token (see sweep). A new millisecond moves
   * the generation too: a delay flush takes ranges by age, so the ranges it
   * leaves have newer tokens than those it takes, and the done generation
   * can pass the latter (the owners learn they were released). */
  uint64_t stamp = atomic_load_explicit(&B.gen_ms, memory_order_relaxed);
  if (stamp != now && atomic_compare_exchange_strong(&B.gen_ms, &stamp, now)) atomic_fetch_add(&B.gen, 1);
  uint64_t token = atomic_load(&B.gen);
  q_of(s)[s->n++] = (entry_t){(uintptr_t)addr, len, token, (uint32_t)hak_opt(ADVICE), (uint32_t)now};
  uint64_t pending = atomic_fetch_add(&B.pending, 1) + 1;
  uint64_t bytes = atomic_fetch_add(&B.pending_bytes, len) + len;
  pthread_mutex_unlock(&s->lock);

  /* The only pending range is the oldest (ranges taken back by reuse leave
   * no stamp behind); otherwise stamp only an unstamped queue. */
  uint64_t zero = 0;
  if (pending == 1) {
    atomic_store(&B.oldest_ms, now | 1);
    kick_for(now);
  } else if (atomic_compare_exchange_strong(&B.oldest_ms, &zero, now | 1)) {
    kick_for(now);
  }
  if (pending >= (uint64_t)hak_opt(BATCH_MAX)) raise_trigger(HAK_FLUSH_WHY_COUNT);
  else if (bytes >= (uint64_t)hak_opt(BATCH_BYTES)) raise_trigger(HAK_FLUSH_WHY_BYTES);
  hak_stat_inc(ranges_added);
  hak_stat_add(bytes_added, len);
  STAP_PROBE3(hakmem, batch_add, pending, len, HAK_LOAD(B.mode));
  return token;
}

static bool overlaps(const entry_t *e, uintptr_t lo, uintptr_t hi) {
  return e->addr < hi && lo < e->addr + e->len;
}

/* Cut [lo,hi) out of q[i]; returns the bytes taken out. A piece left on
 * either side stays in this shard, with this generation. */
static size_t cut_entry(shard_t *s, uint32_t i, uintptr_t lo, uintptr_t hi) {
  entry_t *e = &q_of(s)[i];
  uintptr_t a = e->addr, b = a + e->len;
  size_t before = e->len;
  if (lo <= a && hi >= b) {              /* whole entry */
    q_of(s)[i] = q_of(s)[--s->n];
    return before;
  }
  if (lo <= a) {                         /* head */
    e->addr = hi;
    e->len = b - hi;
  } else if (hi >= b) {                  /* tail */
    e->len = lo - a;
  } else {                               /* middle: keep both sides */
    e->len = lo - a;
    if (s->n < SHARD_CAP) {
      q_of(s)[s->n++] = (entry_t){hi, b - hi, e->gen, e->advice, e->queued_ms};
    } else {
      hak_stat_inc(ranges_dropped);      /* the right side stays resident */
      return before - e->len;
    }
  }
  return before - e->len;
}

/* The flush holding [lo,hi) ends before the range may be reused. */
static void wait_inflight(uintptr_t lo, uintptr_t hi) {
  int old;
  bool waited = false;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
  pthread_mutex_lock(&B.inflight_lock);
  for (;;) {
    /* Sorted and disjoint: find the last entry starting below hi, walk down. */
    uint32_t a = 0, b = B.ninflight;
    while (a < b) {
      uint32_t m = (a + b) / 2;
      if (inflight[m].addr < hi) a = m + 1;
      else b = m;
    }
    bool busy = false;
    for (uint32_t i = a; i-- > 0 && !busy;) {
      if (inflight[i].addr + inflight[i].len <= lo) break;
      busy = overlaps(&inflight[i], lo, hi);
    }
    if (!busy) break;
    pthread_cond_wait(&B.inflight_done, &B.inflight_lock);
    waited = true;
  }
  pthread_mutex_unlock(&B.inflight_lock);
  pthread_setcancelstate(old, NULL);
  if (waited) hak_stat_inc(inflight_waits);
}

void _hak_batch_cancel(void *addr, size_t len, uint64_t token, int why) {
  if (token == 0 || token < atomic_load_explicit(&B.done_gen, memory_order_acquire)) return;
  uintptr_t lo = (uintptr_t)addr, hi = lo + len;
  shard_t *s = shard_of(lo);
  uint64_t cancelled = 0, ranges = 0;
  pthread_mutex_lock(&s->lock);
  for (uint32_t i = 0; i < s->n;) {
    if (!overlaps(&q_of(s)[i], lo, hi)) { i++; continue; }
    uint32_t n_before = s->n;
    cancelled += cut_entry(s, i, lo, hi);
    ranges++;
    if (s->n < n_before) atomic_fetch_sub(&B.pending, 1);
    else if (s->n > n_before) atomic_fetch_add(&B.pending, 1);
    if (i < s->n && !overlaps(&q_of(s)[i], lo, hi)) i++;  /* else look again at slot i */
  }
  atomic_fetch_sub(&B.pending_bytes, cancelled);
  pthread_mutex_unlock(&s->lock);
  if (why == HAK_CANCEL_REUSE) {
    hak_stat_add(ranges_cancelled, ranges);
    hak_stat_add(bytes_cancelled, cancelled);
  } else {
    hak_stat_add(ranges_unqueued, ranges);
  }
  if (token >= atomic_load_explicit(&B.done_gen, memory_order_acquire)) wait_inflight(lo, hi);
}

bool _hak_batch_pending(void) {
  return atomic_load_explicit(&B.pending, memory_order_relaxed) != 0;
}

uint64_t _hak_batch_pending_bytes(void) {
  return atomic_load_explicit(&B.pending_bytes, memory_order_relaxed);
}

void _hak_batch_pending_ages(const uint32_t *limit_ms, int n, uint64_t *bytes) {
  uint32_t now = (uint32_t)_hak_now_ms();
  for (int i = 0; i < n; i++) bytes[i] = 0;
  for (int s = 0; s < SHARDS; s++) {
    shard_t *sh = &shards[s];
    pthread_mutex_lock(&sh->lock);
    for (uint32_t k = 0; k < sh->n; k++) {
      uint32_t age = now - q_of(sh)[k].queued_ms;
      for (int i = 0; i < n; i++)
        if (age < limit_ms[i]) bytes[i] += q_of(sh)[k].len;
    }
    pthread_mutex_unlock(&sh->lock);
  }
}

/* A token still held by its range's owner is either queued (its generation
 * not done) or was swept by a flush: then the kernel has had it. */
bool _hak_batch_released(uint64_t token) {
  return token && token < atomic_load_explicit(&B.done_gen, memory_order_acquire);
}

/* ---- backend state -------------------------------------------------------------*/

/* Caller holds flush_lock: this backend cannot work in this process. */
static void fall_back(const char *what, int err) {
  pthread_mutex_lock(&B.mode_lock);
  B.fallback_errno = err;
  snprintf(B.fallback_reason, sizeof B.fallback_reason, "%s: %s (errno %d)", what,
           _hak_errno_name(err), err);
  B.io = &_hak_io_loop;
  HAK_STORE(B.mode, HAK_FLUSH_LOOP);
  B.refusals = 0;
  pthread_mutex_unlock(&B.mode_lock);
  hak_stat_inc(fallbacks);
  if (hak_opt(VERBOSE)) _hak_warn("release falls back to loop: %s\n", B.fallback_reason);
}

/* ---- flush ------------------------------------------------------------------------*/

static bool entry_before(const entry_t *a, const entry_t *b) { return a->addr < b->addr; }

/* In place, no allocation: the flush must not call malloc (qsort may). */
static void sift(entry_t *v, uint32_t i, uint32_t n) {
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= n) return;
    if (c + 1 < n && entry_before(&v[c], &v[c + 1])) c++;
    if (!entry_before(&v[i], &v[c])) return;
    entry_t t = v[i]; v[i] = v[c]; v[c] = t;
    i = c;
  }
}

static void sort_entries(entry_t *v, uint32_t n) {
  for (uint32_t i = n / 2; i-- > 0;) sift(v, i, n);
  for (uint32_t end = n; end-- > 1;) {
    entry_t t = v[0]; v[0] = v[end]; v[end] = t;
    sift(v, 0, end);
  }
}

static void count_syscalls(int mode, uint32_t n) {
  if (mode == HAK_FLUSH_VECTOR) hak_stat_add(process_madvise_calls, n);
  else if (mode == HAK_FLUSH_URING) hak_stat_add(uring_enter_calls, n);
  else hak_stat_add(madvise_calls, n);
  hak_stat_add(flush_syscalls, n);
}

/* A range the backend refused goes through madvise: if the kernel takes it
 * that way, the backend is what failed (a few in a row and it is dropped);
 * if not, the kernel refused the range itself. */
static void retry_one(const struct iovec *v, int advice, const hak_io_backend_t *io, int err,
                      uint64_t *bytes_done) {
  if (io == &_hak_io_loop) {
    hak_stat_inc(flush_errors);
    return;
  }
  hak_io_result_t r;
  _hak_io_loop.submit(v, 1, advice, &r);
  count_syscalls(HAK_FLUSH_LOOP, r.syscalls);
  if (r.err == 0) {
    hak_stat_inc(range_retries);
    hak_stat_inc(ranges_flushed);
    hak_stat_add(bytes_flushed, v->iov_len);
    *bytes_done += v->iov_len;
    if (++B.refusals >= REFUSALS_MAX) fall_back(io->name, err);
  } else {
    hak_stat_inc(flush_errors);
  }
}

/* Advise iov[0..n) with one advice. Returns the number of syscalls made. */
static uint32_t submit_group(struct iovec *iov, uint32_t n, int advice, uint64_t *bytes_done) {
  uint32_t done = 0, syscalls = 0;
  while (done < n) {
    const hak_io_backend_t *io = B.io;
    if (!io) {  /* switched off while these were queued */
      hak_stat_add(ranges_dropped, n - done);
      break;
    }
    uint32_t chunk = n - done < HAK_IO_MAX_IOV ? n - done : HAK_IO_MAX_IOV;
    hak_io_result_t r;
    io->submit(iov + done, chunk, advice, &r);
    count_syscalls(B.mode, r.syscalls);
    syscalls += r.syscalls;
    hak_stat_add(ranges_flushed, r.ranges_done);
    hak_stat_add(bytes_flushed, r.bytes_done);
    *bytes_done += r.bytes_done;
    done += (uint32_t)r.ranges_done;
    if (r.err == 0) {
      if (r.ranges_done) B.refusals = 0;
      continue;
    }
    if (io != &_hak_io_loop && _hak_io_backend_broken(r.err)) {
      fall_back(io->name, r.err);  /* the rest, this range included, goes through loop */
      continue;
    }
    retry_one(&iov[done], advice, io, r.err, bytes_done);
    done++;
  }
  return syscalls;
}

/* The in-flight list, one advice at a time (almost always only one). */
static uint32_t submit_all(uint32_t n, uint64_t *bytes_done) {
  static const uint32_t advices[] = {MADV_DONTNEED, MADV_FREE};
  uint32_t syscalls = 0, seen = 0;
  for (size_t a = 0; a < sizeof advices / sizeof advices[0] && seen < n; a++) {
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++)
      if (inflight[i].advice == advices[a])
        iovs[k++] = (struct iovec){(void *)inflight[i].addr, inflight[i].len};
    seen += k;
    if (k) syscalls += submit_group(iovs, k, (int)advices[a], bytes_done);
  }
  return syscalls;
}

typedef struct {
  uint32_t n;             /* ranges taken */
  uint64_t bytes;
  uint64_t gen;           /* this flush's generation */
  uint64_t min_gen_left;  /* oldest token of the ranges left queued */
} sweep_t;

/* Restamp the queue with the oldest range left, unless an add did since. */
static void restamp(uint64_t oldest_left_ms) {
  uint64_t cur = atomic_load(&B.oldest_ms);
  while ((cur == 0 || (cur & ~1ull) > oldest_left_ms) &&
         !atomic_compare_exchange_weak(&B.oldest_ms, &cur, oldest_left_ms | 1)) {
  }
}

/* The ranges queued at least min_age_ms ago (all of them when 0) into the
 * in-flight list; the younger ones stay, with their tokens, which keep the
 * done generation from passing them (see flush_locked). The generation
 * moves first: a range queued after its shard's sweep carries a newer
 * token (see _hak_batch_add). */
static sweep_t sweep(uint64_t min_age_ms) {
  sweep_t sw = {0, 0, atomic_fetch_add(&B.gen, 1), UINT64_MAX};
  uint64_t now = _hak_now_ms(), oldest_left = UINT64_MAX;
  atomic_store(&B.oldest_ms, 0);
  atomic_store(&B.trigger, 0);
  pthread_mutex_lock(&B.inflight_lock);
  for (int i = 0; i < SHARDS; i++) {
    shard_t *s = &shards[i];
    pthread_mutex_lock(&s->lock);
    uint32_t kept = 0, taken = 0;
    for (uint32_t k = 0; k < s->n; k++) {
      entry_t *e = &q_of(s)[k];
      uint32_t age = (uint32_t)now - e->queued_ms;
      if (age >= min_age_ms) {
        inflight[sw.n + taken++] = *e;
        sw.bytes += e->len;
        continue;
      }
      if (e->gen < sw.min_gen_left) sw.min_gen_left = e->gen;
      if (now - age < oldest_left) oldest_left = now - age;
      q_of(s)[kept++] = *e;
    }
    sw.n += taken;
    atomic_fetch_sub(&B.pending, taken);
    s->n = kept;
    pthread_mutex_unlock(&s->lock);
  }
  atomic_fetch_sub(&B.pending_bytes, sw.bytes);
  if (oldest_left != UINT64_MAX) restamp(oldest_left);
  sort_entries(inflight, sw.n);
  B.ninflight = sw.n;
  pthread_mutex_unlock(&B.inflight_lock);
  return sw;
}

static void count_flush(int why) {
  hak_stat_inc(flushes);
  switch (why) {
  case HAK_FLUSH_WHY_COUNT: hak_stat_inc(flush_by_count); break;
  case HAK_FLUSH_WHY_BYTES: hak_stat_inc(flush_by_bytes); break;
  case HAK_FLUSH_WHY_DELAY: hak_stat_inc(flush_by_delay); break;
  case HAK_FLUSH_WHY_IDLE: hak_stat_inc(flush_by_idle); break;
  default: hak_stat_inc(flush_explicit); break;
  }
}

/* The telemetry of one flush: its latency, its size, and how long each of
 * its ranges had waited since it was freed. */
static void note_flush(uint32_t n, uint64_t t0, uint64_t t1) {
  if (!hak_opt(TELEMETRY)) return;
  _hak_hist_add(HAK_HIST_flush_latency_ns, t1 - t0);
  _hak_hist_add(HAK_HIST_ranges_per_flush, n);
  uint32_t now = (uint32_t)(t0 / 1000000);
  for (uint32_t i = 0; i < n; i++)
    _hak_hist_add(HAK_HIST_release_delay_ms, (uint32_t)(now - inflight[i].queued_ms));
}

/* Caller holds flush_lock. A delay flush takes the ranges that are due (and
 * those due within a quarter of the delay, to batch them), not the young
 * ones: each range waits its delay, whatever the oldest does. */
static void flush_locked(int why) {
  long long delay = hak_opt(PURGE_DELAY_MS);
  uint64_t min_age = why == HAK_FLUSH_WHY_DELAY && delay > 0 ? (uint64_t)(delay - delay / 4) : 0;
  sweep_t sw = sweep(min_age);
  uint32_t n = sw.n;
  uint64_t bytes = sw.bytes, bytes_done = 0;
  if (n) {
    int mode = B.mode;
    STAP_PROBE3(hakmem, flush_begin, n, bytes, mode);
    uint64_t t0 = _hak_now_ns();
    uint32_t syscalls = submit_all(n, &bytes_done);
    uint64_t t1 = _hak_now_ns();
    hak_stat_add(flush_ns, t1 - t0);
    STAP_PROBE4(hakmem, flush_end, n, bytes_done, mode, syscalls);
    count_flush(why);
    note_flush(n, t0, t1);
  }
  /* Only now is every range of this generation out of the kernel's hands,
   * except those left queued: the done generation stops below them. */
  uint64_t done = sw.gen + 1 < sw.min_gen_left ? sw.gen + 1 : sw.min_gen_left;
  pthread_mutex_lock(&B.inflight_lock);
  B.ninflight = 0;
  if (done > atomic_load(&B.done_gen)) atomic_store_explicit(&B.done_gen, done, memory_order_release);
  pthread_cond_broadcast(&B.inflight_done);
  pthread_mutex_unlock(&B.inflight_lock);
}

void _hak_batch_flush(int why) {
  int old;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
  pthread_mutex_lock(&B.flush_lock);
  flush_locked(why);
  pthread_mutex_unlock(&B.flush_lock);
  pthread_setcancelstate(old, NULL);
}

/* What is due: a limit reached, or the oldest range older than the delay. */
int _hak_batch_due(uint64_t *next_ms) {
  *next_ms = 0;
  int trig = atomic_load_explicit(&B.trigger, memory_order_relaxed);
  if (trig) return trig - 1;
  uint64_t pending = atomic_load_explicit(&B.pending, memory_order_relaxed);
  if (pending == 0) return HAK_FLUSH_WHY_NONE;
  /* Limits are looked at again here: one may have been lowered since. */
  if (pending >= (uint64_t)hak_opt(BATCH_MAX)) return HAK_FLUSH_WHY_COUNT;
  if (atomic_load(&B.pending_bytes) >= (uint64_t)hak_opt(BATCH_BYTES)) return HAK_FLUSH_WHY_BYTES;
  long long delay = hak_opt(PURGE_DELAY_MS);
  if (delay < 0) return HAK_FLUSH_WHY_NONE;
  uint64_t oldest = atomic_load_explicit(&B.oldest_ms, memory_order_relaxed) & ~1ull;
  uint64_t now = _hak_now_ms();
  if (oldest == 0) oldest = now;  /* a range is being added: its stamp follows */
  if (now - oldest >= (uint64_t)delay) return HAK_FLUSH_WHY_DELAY;
  *next_ms = oldest + (uint64_t)delay;
  return HAK_FLUSH_WHY_NONE;
}

/* ---- backend choice ------------------------------------------------------------*/

/* Between flushes: ranges queued before are flushed with the old backend,
 * then the new one is probed (under flush_lock, which serialises every use
 * of a backend's state) and switched to. */
int _hak_batch_set_mode(int requested) {
  int mode = requested, err = 0, old;
  const char *what = NULL;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
  pthread_mutex_lock(&B.flush_lock);
  flush_locked(HAK_FLUSH_WHY_EXPLICIT);
  if (requested == HAK_FLUSH_AUTO || requested == HAK_FLUSH_VECTOR) {
    err = _hak_io_vector.probe();
    mode = err ? HAK_FLUSH_LOOP : HAK_FLUSH_VECTOR;
    what = "process_madvise probe";
  } else if (requested == HAK_FLUSH_URING) {
    err = _hak_io_uring.probe();
    mode = err ? HAK_FLUSH_LOOP : HAK_FLUSH_URING;
    what = "io_uring probe";
  }
  pthread_mutex_lock(&B.mode_lock);
  B.mode_requested = requested;
  B.io = _hak_io_backend(mode);
  HAK_STORE(B.mode, mode);
  B.refusals = 0;
  B.fallback_errno = 0;
  B.fallback_reason[0] = '\0';
  atomic_store(&B.off, mode == HAK_FLUSH_OFF);
  pthread_mutex_unlock(&B.mode_lock);
  if (err) fall_back(what, err);
  pthread_mutex_unlock(&B.flush_lock);
  pthread_setcancelstate(old, NULL);
  return mode;
}

void _hak_batch_init(void) {
  init_conds();
  _hak_batch_set_mode((int)hak_opt(FLUSH));
}

void _hak_batch_fill_stats(hak_stats_t *st) {
  st->pending_ranges = atomic_load(&B.pending);
  st->pending_bytes = atomic_load(&B.pending_bytes);
  pthread_mutex_lock(&B.mode_lock);
  st->flush_mode = B.mode;
  st->flush_mode_requested = B.mode_requested;
  st->fallback_errno = B.fallback_errno;
  memcpy(st->fallback_reason, B.fallback_reason, sizeof st->fallback_reason);
  pthread_mutex_unlock(&B.mode_lock);
  st->advice = (int)hak_opt(ADVICE);
}

/* ---- fork ---------------------------------------------------------------------------*/

void _hak_batch_atfork_prepare(void) {
  pthread_mutex_lock(&B.flush_lock);
  pthread_mutex_lock(&B.mode_lock);
  pthread_mutex_lock(&B.inflight_lock);
  for (int i = 0; i < SHARDS; i++) pthread_mutex_lock(&shards[i].lock);
  pthread_mutex_lock(&B.wake_lock);
}

void _hak_batch_atfork_parent(void) {
  pthread_mutex_unlock(&B.wake_lock);
  for (int i = SHARDS; i-- > 0;) pthread_mutex_unlock(&shards[i].lock);
  pthread_mutex_unlock(&B.inflight_lock);
  pthread_mutex_unlock(&B.mode_lock);
  pthread_mutex_unlock(&B.flush_lock);
}

/* The queue is the child's too (same addresses, copied memory); what names
 * the parent (a ring) is dropped by the backends. No flush was in flight:
 * prepare held flush_lock. */
void _hak_batch_atfork_child(void) {
  init_conds();
  atomic_store(&B.sleeping, 0);
  B.ninflight = 0;
  _hak_io_vector.atfork_child();
  _hak_io_uring.atfork_child();
  _hak_io_loop.atfork_child();
  _hak_batch_atfork_parent();  /* the same locks, held by this same thread */
}
