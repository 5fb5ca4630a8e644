/* The release policy. HAKMEM_POLICY=adaptive chooses, epoch by epoch (100 ms
 * of activity), among a few settings of the purge delay and the batch byte
 * limit (the arms), the one that would have cost least:
 *
 *   cost = CPU spent giving memory back (a flush per batch, per byte)
 *        + CPU spent faulting it in again when it is reused (per byte)
 *        + HAKMEM_MEMORY_WEIGHT (microseconds per MiB held one second)
 *          x the free memory held resident meanwhile.
 *
 * Every epoch scores every arm, not only the one that ran: each reuse of a
 * freed range says how long after its free it came back (telemetry.c), and
 * an arm with delay D would have kept every range that came back within D
 * (holding it that long) and released the others (holding them D, then
 * paying the release and the fault). So no epoch is spent trying a bad arm
 * (a bandit such as UCB1 must pull each one, and the eager arms cost up to
 * ten times the best on bursty programs); the scores are discounted, so a
 * change of phase outweighs the past within a few epochs. The realised cost
 * of the arm that ran is kept too, to check the estimate against.
 *
 * The delay never exceeds HAKMEM_PURGE_CAP_MS (1 s): nothing free stays
 * resident longer because of the policy. Everything here runs on the purge
 * thread; malloc and free never see it. */
#include <sys/sdt.h>

#include "internal.h"

#define EPOCH_MS 100
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
  uint64_t flush_ns, bytes_added, ranges_added, refault_bytes;
} snapshot_t;

static struct {
  pthread_mutex_t lock;           /* the tick against stats readers */
  _Atomic bool adaptive;
  int arm;
  bool idle;                      /* the last epoch saw no activity */
  uint64_t epoch_start_ms, last_sample_ms, held_byte_ms;
  snapshot_t at_start;
  uint64_t epochs;
  double est[HAK_POLICY_ARMS];    /* discounted estimated cost, us per second */
  bool scored;
  uint64_t pulls[HAK_POLICY_ARMS];
  double real_sum[HAK_POLICY_ARMS];
} P = {.lock = PTHREAD_MUTEX_INITIALIZER, .arm = FIRST_ARM, .idle = true};

#define LOAD(f) atomic_load_explicit(&_hak_cnt.f, memory_order_relaxed)

static snapshot_t snapshot(void) {
  return (snapshot_t){LOAD(flush_ns), LOAD(bytes_added), LOAD(ranges_added), LOAD(bytes_reused_released)};
}

static void apply(int arm) {
  uint32_t delay = arms[arm].delay_ms;
  long long cap = hak_opt(PURGE_CAP_MS);
  _hak_option_store(HAK_OPT_PURGE_DELAY_MS, delay < cap ? delay : cap);
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

/* What arm a would have cost over this epoch, in microseconds: reused[b]
 * bytes came back about mid[b] ms after their free; `unused` freed bytes did
 * not come back (yet); `ranges` ranges were queued in len_ms. */
static double estimate(int a, const uint64_t reused[HAK_REUSE_BUCKETS], double unused,
                       double ranges, double len_ms) {
  double d = arms[a].delay_ms, w = (double)hak_opt(MEMORY_WEIGHT) / (1048576.0 * 1000.0);
  double cost = 0, released = unused;
  for (int b = 0; b < HAK_REUSE_BUCKETS; b++) {
    double x = b ? 0.75 * (double)(1ull << b) : 0.5, bytes = (double)reused[b];
    if (x < d) {
      cost += w * bytes * x;  /* kept, and reused */
    } else {
      cost += w * bytes * d + bytes * REFAULT_PS_PER_BYTE / 1e6;
      released += bytes;
    }
  }
  cost += w * unused * d;
  cost += released * RELEASE_PS_PER_BYTE / 1e6;
  double flushes = len_ms / (d > 0.25 ? d : 0.25);
  cost += (flushes < ranges ? flushes : ranges) * FLUSH_CALL_US;
  return cost;
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

static void score_epoch(uint64_t now_ms) {
  snapshot_t now = snapshot();
  uint64_t reused[HAK_REUSE_BUCKETS];
  _hak_reuse_take(reused);
  double len_ms = (double)(now_ms - P.epoch_start_ms), seconds = len_ms / 1000.0;
  double added = (double)(now.bytes_added - P.at_start.bytes_added), back = 0;
  for (int b = 0; b < HAK_REUSE_BUCKETS; b++) back += (double)reused[b];
  double ranges = (double)(now.ranges_added - P.at_start.ranges_added);
  double real = realised(&now);
  bool active = added > 0 || back > 0 || now.flush_ns != P.at_start.flush_ns;
  if (active && seconds > 0) {
    double unused = added > back ? added - back : 0;
    for (int a = 0; a < HAK_POLICY_ARMS; a++) {
      double e = estimate(a, reused, unused, ranges, len_ms) / seconds;
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
  P.epoch_start_ms = P.last_sample_ms = now_ms;
  P.held_byte_ms = 0;
  P.at_start = now;
}

/* ---- the purge thread's tick ----------------------------------------------------*/

uint64_t _hak_policy_tick(uint64_t now_ms) {
  if (!atomic_load_explicit(&P.adaptive, memory_order_relaxed)) return 0;
  pthread_mutex_lock(&P.lock);
  uint64_t pending = _hak_batch_pending_bytes(), next;
  if (P.idle) {
    /* Activity after a quiet spell: an epoch starts now. */
    P.idle = false;
    P.epoch_start_ms = P.last_sample_ms = now_ms;
    P.held_byte_ms = 0;
    P.at_start = snapshot();
  } else {
    uint64_t held = pending * (now_ms - P.last_sample_ms);
    P.held_byte_ms += held;
    hak_stat_add(held_mib_ms, held >> 20);
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
  }
  pthread_mutex_unlock(&P.lock);
}

void _hak_policy_atfork_prepare(void) { pthread_mutex_lock(&P.lock); }
void _hak_policy_atfork_parent(void) { pthread_mutex_unlock(&P.lock); }
