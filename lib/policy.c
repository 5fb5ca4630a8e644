/* The release policy. HAKMEM_POLICY=adaptive chooses, epoch by epoch (50 ms
 * of activity), among a few settings of the purge delay and the batch byte
 * limit (the arms), the one that would have cost least:
 *
 *   cost = CPU spent giving memory back (a flush per batch, per byte)
 *        + CPU spent faulting it in again when it is reused (per byte)
 *        + HAKMEM_MEMORY_WEIGHT (microseconds per MiB held one second)
 *          x the free memory held resident meanwhile.
 *
 * Every epoch scores every arm, not only the one that ran. The memory held
 * is sampled from the queue itself (an arm with delay D holds the queued
 * bytes younger than D); each reuse of a freed range says how long after
 * its free it came back (telemetry.c): an arm with delay D would have kept
 * every range that came back within D and released the others, paying the
 * release and the fault; and an arm longer than the one that ran would have
 * held the released ranges longer. So no epoch is spent trying a bad arm
 * (a bandit such as UCB1 must pull each one, and the eager arms cost up to
 * ten times the best on bursty programs); the scores are discounted, so a
 * change of phase outweighs the past within a few epochs. The realised cost
 * of the arm that ran is kept too, to check the estimate against.
 *
 * The delay never exceeds HAKMEM_PURGE_CAP_MS (1 s): nothing free stays
 * resident longer because of the policy. And an epoch in which the program
 * neither frees nor reuses memory says it went quiet: what is pending goes
 * back then, whatever the arm (what comes back after a pause pays a fault;
 * what does not is not held for nothing). Everything here runs on the purge
 * thread; malloc and free never see it. */
#include <sys/sdt.h>

#include "internal.h"

#define EPOCH_MS 50
#define DISCOUNT 0.7              /* weight of the past per epoch */
/* Measured on the project machine (kernel 6.18): a 4 KiB page faulted back
 * in and zeroed costs 0.36 ns/byte, a transparent huge page 0.05 ns/byte;
 * MADV_DONTNEED of 4 KiB pages 0.07 ns/byte; a flush call with its TLB
 * shootdown some 20 us. */
#define REFAULT_PS_PER_BYTE 300.0
#define RELEASE_PS_PER_BYTE 70.0
#define FLUSH_CALL_US 20.0

static const struct {
  uint32_t delay_ms;
  uint64_t batch_bytes;
} arms[HAK_POLICY_ARMS] = {
    {0, 16ull << 20}, {1, 64ull << 20}, {10, 64ull << 20}, {100, 256ull << 20}, {1000, 1ull << 30},
};
#define FIRST_ARM 3               /* 100 ms: lazy enough for bursts, quick to give back */

typedef struct {
  uint64_t flush_ns, bytes_flushed, ranges_added, refault_bytes;
} snapshot_t;

static struct {
  pthread_mutex_t lock;           /* the tick against stats readers */
  _Atomic bool adaptive;
  int arm;
  bool idle;                      /* the last epoch saw no activity */
  uint64_t epoch_start_ms, last_sample_ms, held_byte_ms;
  double held[HAK_POLICY_ARMS];   /* byte*ms each arm would have held in the queue */
  snapshot_t at_start;
  uint64_t epochs;
  double est[HAK_POLICY_ARMS];    /* discounted estimated cost, us per second */
  bool scored;
  uint64_t pulls[HAK_POLICY_ARMS];
  double real_sum[HAK_POLICY_ARMS];
} P = {.lock = PTHREAD_MUTEX_INITIALIZER, .arm = FIRST_ARM, .idle = true};

#define LOAD(f) atomic_load_explicit(&_hak_cnt.f, memory_order_relaxed)

static snapshot_t snapshot(void) {
  return (snapshot_t){LOAD(flush_ns), LOAD(bytes_flushed), LOAD(ranges_added), LOAD(bytes_reused_released)};
}

static double delay_of(int a);

static void apply(int arm) {
  _hak_option_store(HAK_OPT_PURGE_DELAY_MS, (long long)delay_of(arm));
  _hak_option_store(HAK_OPT_BATCH_BYTES, (long long)arms[arm].batch_bytes);
}

void _hak_policy_set_adaptive(bool on) {
  pthread_mutex_lock(&P.lock);
  atomic_store(&P.adaptive, on);
  if (on) apply(P.arm);
  P.idle = true;  /* the next tick starts an epoch */
  pthread_mutex_unlock(&P.lock);
}

/* Adaptive unless the program set what it would choose: a delay or a batch
 * limit given in the environment says "fixed", unless HAKMEM_POLICY says. */
void _hak_policy_init(void) {
  bool pinned = _hak_option_from_env(HAK_OPT_PURGE_DELAY_MS) ||
                _hak_option_from_env(HAK_OPT_BATCH_BYTES) || _hak_option_from_env(HAK_OPT_BATCH_MAX);
  if (!_hak_option_from_env(HAK_OPT_POLICY) && pinned) _hak_option_store(HAK_OPT_POLICY, 0);
  if (hak_opt(POLICY)) _hak_policy_set_adaptive(true);
}

/* ---- the estimate ------------------------------------------------------------*/

static double delay_of(int a) {
  long long cap = hak_opt(PURGE_CAP_MS);
  return arms[a].delay_ms < cap ? arms[a].delay_ms : (double)cap;
}

/* The middle of a reuse bucket, in ms. */
static double mid_ms(int b) { return b ? 0.75 * (double)(1ull << b) : 0.5; }

typedef struct {
  uint64_t kept[HAK_REUSE_BUCKETS], released[HAK_REUSE_BUCKETS];
  double lost;     /* bytes released and not reused (negative when earlier ones came back) */
  double ranges;   /* ranges queued */
  double len_ms;
} epoch_t;

/* What arm a would have cost over the epoch, in microseconds, when arm
 * `ran` ran: what it holds in the queue (sampled), what it would release
 * and fault back in, and, when it is lazier than the arm that ran, how much
 * longer it would have held what that arm released. */
static double estimate(int a, int ran, const epoch_t *ep) {
  double d = delay_of(a), dr = delay_of(ran), w = (double)hak_opt(MEMORY_WEIGHT) / (1048576.0 * 1000.0);
  double hold = P.held[a], refault = 0, released = ep->lost > 0 ? ep->lost : 0;
  if (d > dr) hold += ep->lost * (d - dr);
  for (int b = 0; b < HAK_REUSE_BUCKETS; b++) {
    double x = mid_ms(b), bytes = (double)(ep->kept[b] + ep->released[b]);
    if (x >= d) {
      refault += bytes;
      released += bytes;
    }
    if (d > dr && x > dr) hold += (double)ep->released[b] * ((x < d ? x : d) - dr);
  }
  double flushes = ep->len_ms / (d > 0.25 ? d : 0.25);
  double cost = w * hold + refault * REFAULT_PS_PER_BYTE / 1e6 + released * RELEASE_PS_PER_BYTE / 1e6 +
                (flushes < ep->ranges ? flushes : ep->ranges) * FLUSH_CALL_US;
  return cost > 0 ? cost : 0;
}

/* The queue now, as each arm would hold it, integrated since the last sample. */
static void sample_queue(uint64_t now_ms) {
  uint32_t limits[HAK_POLICY_ARMS];
  uint64_t bytes[HAK_POLICY_ARMS];
  for (int a = 0; a < HAK_POLICY_ARMS; a++) limits[a] = (uint32_t)delay_of(a);
  _hak_batch_pending_ages(limits, HAK_POLICY_ARMS, bytes);
  double dt = (double)(now_ms - P.last_sample_ms);
  for (int a = 0; a < HAK_POLICY_ARMS; a++) P.held[a] += (double)bytes[a] * dt;
}

/* The realised cost of the epoch that just ran, in microseconds. */
static double realised(const snapshot_t *now) {
  double w = (double)hak_opt(MEMORY_WEIGHT) / (1048576.0 * 1000.0);
  return (double)(now->flush_ns - P.at_start.flush_ns) / 1e3 +
         (double)(now->refault_bytes - P.at_start.refault_bytes) * REFAULT_PS_PER_BYTE / 1e6 +
         w * (double)P.held_byte_ms;
}

static int best_arm(void) {
  int best = P.arm;
  for (int a = 0; a < HAK_POLICY_ARMS; a++)
    if (P.est[a] < P.est[best] * 0.98) best = a;  /* a margin against dithering */
  return best;
}

static void start_epoch(uint64_t now_ms) {
  P.epoch_start_ms = P.last_sample_ms = now_ms;
  P.held_byte_ms = 0;
  for (int a = 0; a < HAK_POLICY_ARMS; a++) P.held[a] = 0;
  P.at_start = snapshot();
}

static void score_epoch(uint64_t now_ms) {
  snapshot_t now = snapshot();
  epoch_t ep;
  _hak_reuse_take(ep.kept, ep.released);
  ep.len_ms = (double)(now_ms - P.epoch_start_ms);
  double seconds = ep.len_ms / 1000.0, back = 0;
  for (int b = 0; b < HAK_REUSE_BUCKETS; b++) back += (double)(ep.kept[b] + ep.released[b]);
  ep.ranges = (double)(now.ranges_added - P.at_start.ranges_added);
  ep.lost = (double)(now.bytes_flushed - P.at_start.bytes_flushed) -
            (double)(now.refault_bytes - P.at_start.refault_bytes);
  double real = realised(&now);
  bool busy = ep.ranges > 0 || back > 0;  /* the program freed or reused memory */
  bool active = busy || now.flush_ns != P.at_start.flush_ns || _hak_batch_pending_bytes() > 0;
  if (!busy && _hak_batch_pending_bytes() > 0) _hak_batch_flush(HAK_FLUSH_WHY_IDLE);
  if (active && seconds > 0) {
    int ran = P.arm;
    for (int a = 0; a < HAK_POLICY_ARMS; a++) {
      double e = estimate(a, ran, &ep) / seconds;
      P.est[a] = P.scored ? DISCOUNT * P.est[a] + (1 - DISCOUNT) * e : e;
    }
    P.scored = true;
    P.pulls[P.arm]++;
    P.real_sum[P.arm] += real / seconds;
    P.epochs++;
    P.arm = best_arm();
    apply(P.arm);
    volatile int arm = P.arm;
    volatile long cost = (long)P.est[P.arm];  /* perf 6.1 drops folded probe arguments */
    STAP_PROBE2(hakmem, policy_choose, arm, cost);
  }
  P.idle = !active;
  start_epoch(now_ms);
}

/* ---- the purge thread's tick ----------------------------------------------------*/

uint64_t _hak_policy_tick(uint64_t now_ms) {
  if (!atomic_load_explicit(&P.adaptive, memory_order_relaxed)) return 0;
  pthread_mutex_lock(&P.lock);
  uint64_t pending = _hak_batch_pending_bytes(), next;
  if (P.idle) {
    /* Activity after a quiet spell: an epoch starts now. */
    P.idle = false;
    start_epoch(now_ms);
  } else {
    uint64_t held = pending * (now_ms - P.last_sample_ms);
    P.held_byte_ms += held;
    hak_stat_add(held_mib_ms, held >> 20);
    sample_queue(now_ms);
    P.last_sample_ms = now_ms;
    if (now_ms >= P.epoch_start_ms + EPOCH_MS) score_epoch(now_ms);
  }
  next = P.idle && !pending ? 0 : P.epoch_start_ms + EPOCH_MS;
  pthread_mutex_unlock(&P.lock);
  return next;
}

void _hak_policy_fill_stats(hak_stats_t *st) {
  pthread_mutex_lock(&P.lock);
  st->policy_adaptive = atomic_load(&P.adaptive);
  st->policy_arm = st->policy_adaptive ? P.arm : -1;
  st->policy_epochs = P.epochs;
  for (int a = 0; a < HAK_POLICY_ARMS; a++) {
    st->arm_delay_ms[a] = arms[a].delay_ms;
    st->arm_batch_bytes[a] = arms[a].batch_bytes;
    st->arm_pulls[a] = P.pulls[a];
    st->arm_cost[a] = P.est[a];
    st->arm_cost_seen[a] = P.pulls[a] ? P.real_sum[a] / (double)P.pulls[a] : 0;
  }
  pthread_mutex_unlock(&P.lock);
}

void _hak_policy_atfork_prepare(void) { pthread_mutex_lock(&P.lock); }
void _hak_policy_atfork_parent(void) { pthread_mutex_unlock(&P.lock); }
