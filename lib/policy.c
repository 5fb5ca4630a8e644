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
 * ten times the best on bursty programs); the scores are discounted over
 * about a second (ARM_DISCOUNT), so a change of phase outweighs the past
 * within a second, and sooner when it changes the costs much. The realised cost
 * of the arm that ran is kept too, to check the estimate against.
 *
 * The delay never exceeds HAKMEM_PURGE_CAP_MS (1 s): nothing free stays
 * resident longer because of the policy. And an epoch in which the program
 * neither frees nor reuses memory says it went quiet: what is pending then
 * goes back or is held through the pause, as the pause rule below learned
 * from the earlier pauses (the arms answer for the program's active time
 * only: reuse across a pause would otherwise make every arm look too eager
 * when the rule gives memory back anyway). Everything here runs on the purge
 * thread; malloc and free never see it. */
#include <stdlib.h>
#include <sys/sdt.h>

#include "internal.h"

/* Also how soon a program that stopped is seen to be quiet (an epoch
 * without activity), and its free memory goes back: within two epochs.
 * Longer epochs once the choice held (200 ms) saved the purge thread three
 * quarters of its wakeups on kvserver, 1.3 ms of CPU in 1.4 s, and left
 * 17 MiB resident 100 ms after it stopped, where 50 ms epochs had given it
 * back (docs/results/2026-11-27-shorter-paths-and-resident-memory.md). */
#define EPOCH_MS 50
#define DISCOUNT 0.7              /* weight of the past per epoch */
/* ... in the arms' scores, per EPOCH_MS (a longer epoch weighs more): a
 * horizon as long as the cap. An eager arm pays its refault in one epoch,
 * when memory comes back; a lazy one pays its hold in every epoch until
 * then. Over a horizon shorter than the time between the two (0.7 is three
 * epochs, 150 ms), the refault fades before the next one and the eager arm
 * looks cheaper near the end of every cycle: on a server whose buffers come
 * back after 300 ms the policy switched arms every few epochs, and gave back
 * at each switch what came back 300 ms later
 * (docs/results/2026-11-26-policy-accounting.md). */
#define ARM_DISCOUNT 0.95
/* Until measured, what they cost on the project machine (kernel 6.18, KVM):
 * a refault 0.3 ns a byte in 4 KiB pages, 0.02 in huge pages (measured
 * here: see measure_refault); giving memory back 0.07 ns a byte (measured on the
 * program's own flushes, which pay its TLB shootdowns); and a flush call
 * some 20 us on top. */
#define REFAULT_PS_SMALL 300.0
#define REFAULT_PS_HUGE 20.0
#define RELEASE_PS 70.0
#define FLUSH_CALL_US 20.0

static const struct {
  uint32_t delay_ms;
  uint64_t batch_bytes;
} arms[HAK_POLICY_ARMS] = {
    {0, 16ull << 20}, {1, 64ull << 20}, {10, 64ull << 20}, {100, 256ull << 20}, {1000, 1ull << 30},
};
/* The laziest arm first: it gives nothing back before the estimates say
 * what comes back, and an eager arm takes over within an epoch or two when
 * nothing does (the margin keeps it from doing so on the first small
 * difference). Starting on 100 ms, a server whose buffers come back after
 * 300 ms gave them back in its first 300 ms: 3.8 MiB refaulted on kvserver,
 * none from 1000 ms. */
#define FIRST_ARM 4

#define OUT_SLOTS 32  /* epochs of released memory followed: more than the cap */
typedef struct {
  double bytes, delay;  /* still out; the delay of the arm that gave it back */
  uint64_t at_ms;
} out_t;

typedef struct {
  uint64_t flush_ns, bytes_flushed, ranges_added, refault_bytes, bytes_added, bytes_cancelled;
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
  /* the pause rule: what happens to free memory when the program goes quiet */
  bool quiet;                     /* no free or reuse since the program went quiet */
  bool hold_pauses;               /* hold it through (else give it back at once) */
  bool pause_open;                /* the last pause's account is still being kept */
  uint64_t pauses;
  double stake;                   /* free bytes left since the last quiet */
  double pause_stake;             /* ... at the last quiet: what its pause decides on */
  double across[HAK_REUSE_BUCKETS]; /* of those, reused since, by reuse interval */
  double pause_cost[2];           /* discounted cost per pause (us): give back, hold */
  /* what the arm that ran gave back and is still out (see out_add) */
  out_t out[OUT_SLOTS];
  int out_head;
  double out_due[HAK_POLICY_ARMS]; /* charged at a pause, for the next epoch scored */
  /* the cost of a refault here: 4 KiB pages, huge pages, and the mix reused */
  bool measured[2];               /* refault_ps[i] measured here */
  double refault_ps[2], huge_share, refault;
  double refault_start;           /* 4 KiB pages, as measured at start */
  double sampled_ns, sampled_bytes; /* refaults timed in the program (discounted) */
  double release;                 /* ps per byte given back, from the flushes */
} P = {.lock = PTHREAD_MUTEX_INITIALIZER, .arm = FIRST_ARM, .idle = true,
       .refault_ps = {REFAULT_PS_SMALL, REFAULT_PS_HUGE}, .refault = REFAULT_PS_SMALL,
       .refault_start = REFAULT_PS_SMALL,
       .release = RELEASE_PS};

#define LOAD(f) atomic_load_explicit(&_hak_cnt.f, memory_order_relaxed)

static snapshot_t snapshot(void) {
  return (snapshot_t){LOAD(flush_ns),  LOAD(bytes_flushed), LOAD(ranges_added), LOAD(bytes_reused_released),
                      LOAD(bytes_added), LOAD(bytes_cancelled)};
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

/* HAKMEM_MEMORY_WEIGHT in microseconds per byte*ms held. */
static double weight(void) { return (double)hak_opt(MEMORY_WEIGHT) / (1048576.0 * 1000.0); }

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
  double out_hold[HAK_POLICY_ARMS];  /* byte*ms a lazier arm would have held of what went out */
} epoch_t;

/* ---- what went out ----------------------------------------------------------------
 * The memory the arm that ran gave back and the program has not taken again,
 * by when it went back. A lazier arm would have held it until its own delay
 * ran out: it is charged for that when the delay runs out, not at once, for
 * most of it may come back first (and is then charged for the time it was
 * out, in estimate()). Charging at once and crediting at the return would
 * weigh the two differently under the discount, and make the lazy arms look
 * worse after every release and better after every return. */

static void out_add(uint64_t now_ms, double bytes, double delay) {
  if (bytes <= 0) return;
  P.out_head = (P.out_head + 1) % OUT_SLOTS;
  P.out[P.out_head] = (out_t){bytes, delay, now_ms};
}

/* Released memory reused: out of the oldest slots first. */
static void out_take(double bytes) {
  for (int k = 1; k <= OUT_SLOTS && bytes > 0; k++) {
    out_t *o = &P.out[(P.out_head + k) % OUT_SLOTS];
    double take = o->bytes < bytes ? o->bytes : bytes;
    o->bytes -= take;
    bytes -= take;
  }
}

/* For each arm, what went out and stayed out until that arm's delay ran out
 * within (t0, t1]: that arm would have held it for its whole delay. */
static void out_charge(uint64_t t0, uint64_t t1, double hold[HAK_POLICY_ARMS]) {
  for (int a = 0; a < HAK_POLICY_ARMS; a++) {
    hold[a] = 0;
    for (int k = 0; k < OUT_SLOTS; k++) {
      const out_t *o = &P.out[k];
      double extra = delay_of(a) - o->delay;
      if (o->bytes <= 0 || extra <= 0) continue;
      if ((double)(t0 - o->at_ms) < extra && (double)(t1 - o->at_ms) >= extra) hold[a] += o->bytes * extra;
    }
  }
}

/* The program went quiet and what is out stays out: the pause rule gives
 * back what is still queued now, so a lazier arm would have held what went
 * out until now, and no longer. */
static void out_settle(uint64_t now_ms) {
  for (int k = 0; k < OUT_SLOTS; k++) {
    out_t *o = &P.out[k];
    double age = (double)(now_ms - o->at_ms);
    for (int a = 0; a < HAK_POLICY_ARMS && o->bytes > 0; a++) {
      double extra = delay_of(a) - o->delay;
      if (extra > 0 && age < extra) P.out_due[a] += o->bytes * age;
    }
    o->bytes = 0;
  }
}

/* ---- the estimate of every arm ----------------------------------------------------*/

/* What arm a would have cost over the epoch, in microseconds, when arm
 * `ran` ran: what it holds in the queue (sampled), what it would release
 * and fault back in, and, when it is lazier than the arm that ran, how much
 * longer it would have held what that arm released. */
static double estimate(int a, int ran, const epoch_t *ep) {
  double d = delay_of(a), dr = delay_of(ran), w = weight();
  double hold = P.held[a] + ep->out_hold[a], refault = 0, released = ep->lost > 0 ? ep->lost : 0;
  for (int b = 0; b < HAK_REUSE_BUCKETS; b++) {
    double x = mid_ms(b), bytes = (double)(ep->kept[b] + ep->released[b]);
    if (x >= d) {
      refault += bytes;
      released += bytes;
    }
    if (d > dr && x > dr) hold += (double)ep->released[b] * ((x < d ? x : d) - dr);
  }
  double flushes = ep->len_ms / (d > 0.25 ? d : 0.25);
  double cost = w * hold + refault * P.refault / 1e6 + released * P.release / 1e6 +
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
  double w = weight();
  return (double)(now->flush_ns - P.at_start.flush_ns) / 1e3 +
         (double)(now->refault_bytes - P.at_start.refault_bytes) * P.refault / 1e6 +
         w * (double)P.held_byte_ms;
}

/* A margin against dithering: a change must save 2%, and at least a
 * millisecond of CPU per second (less is not worth the disturbance). */
static bool worth(double from, double to) { return to < from * 0.98 && to < from - 1000; }

/* The cheapest arm, if it is worth the change; and of the arms as cheap as
 * it within the margin, the nearest to the one in force. Arms tie when an
 * epoch cannot tell them apart (nothing flushed, nothing reused: 1 ms and
 * 10 ms both cost nothing), and a tie is no evidence for the more eager arm:
 * on phases, going to 1 ms from such an epoch cost two epochs of flushes. */
int _hak_policy_pick(const double est[HAK_POLICY_ARMS], int cur) {
  int best = cur, pick;
  for (int a = 0; a < HAK_POLICY_ARMS; a++)
    if (est[a] < est[best]) best = a;
  if (!worth(est[cur], est[best])) return cur;
  pick = best;
  for (int a = 0; a < HAK_POLICY_ARMS; a++) {
    bool as_cheap = !worth(est[a], est[best]), nearer = abs(a - cur) < abs(pick - cur);
    if (as_cheap && nearer && worth(est[cur], est[a])) pick = a;
  }
  return pick;
}

static void start_epoch(uint64_t now_ms) {
  P.epoch_start_ms = P.last_sample_ms = now_ms;
  P.held_byte_ms = 0;
  for (int a = 0; a < HAK_POLICY_ARMS; a++) P.held[a] = 0;
  P.at_start = snapshot();
}

/* ---- the pause rule -------------------------------------------------------------
 * When the program goes quiet (an epoch without a free or a reuse), the free
 * memory it left is either given back at once or held through the pause (the
 * arm's delay, within the cap, still applies). Which costs less is learned
 * pause by pause, from what came back after each: given back, every byte that
 * came back was faulted in again; held, each byte was held until it came back,
 * and what never came back was held for the cap. Until a pause has been seen,
 * memory goes back: a program that goes quiet for good gets its RSS down. */

static void close_pause(void) {
  if (!P.pause_open) return;
  double w = weight(), cap = (double)hak_opt(PURGE_CAP_MS);
  double reused = 0, held = 0, refault = 0;
  for (int b = 0; b < HAK_REUSE_BUCKETS; b++) {
    double x = mid_ms(b), bytes = P.across[b];
    reused += bytes;
    held += bytes * (x < cap ? x : cap);
    if (x >= cap) refault += bytes;
  }
  double left = P.pause_stake > reused ? P.pause_stake - reused : 0;
  double give_back = reused * P.refault / 1e6 + P.pause_stake * P.release / 1e6 + FLUSH_CALL_US;
  double hold = w * (held + left * cap) + refault * P.refault / 1e6 +
                (left + refault) * P.release / 1e6;
  bool first = P.pauses == 0;
  P.pause_cost[0] = first ? give_back : DISCOUNT * P.pause_cost[0] + (1 - DISCOUNT) * give_back;
  P.pause_cost[1] = first ? hold : DISCOUNT * P.pause_cost[1] + (1 - DISCOUNT) * hold;
  P.hold_pauses = P.pause_cost[1] < P.pause_cost[0];
  P.pauses++;
  P.pause_open = false;
}

static void go_quiet(uint64_t now_ms) {
  close_pause();
  P.quiet = P.pause_open = true;
  P.pause_stake = P.stake > 0 ? P.stake : 0;
  P.stake = 0;
  for (int b = 0; b < HAK_REUSE_BUCKETS; b++) P.across[b] = 0;
  _hak_reuse_mark_quiet(now_ms);
  if (!P.hold_pauses) out_settle(now_ms);
  /* (after the epoch's snapshot: what this flush gives back is no arm's doing) */
  if (!P.hold_pauses && _hak_batch_pending_bytes() > 0) _hak_batch_flush(HAK_FLUSH_WHY_IDLE);
}

/* ---- the cost of a refault -------------------------------------------------------*/

/* The refault cost of this program: the two measured costs, weighed by the
 * share of its reused bytes that sits in huge pages. */
static void set_refault_mix(void) {
  P.refault = P.refault_ps[0] + P.huge_share * (P.refault_ps[1] - P.refault_ps[0]);
}

/* Measured on the purge thread: 4 KiB pages before the first epoch is
 * scored; huge pages once the program reuses released memory that sits in
 * them. The huge probe maps and faults in 2 MiB three times (0.2 ms and 2 MiB
 * more peak RSS): a program that never reuses a huge page is not charged
 * for a figure it does not need. */
static void measure_refault(bool huge) {
  double ps = _hak_os_refault_ps_per_byte(huge);
  pthread_mutex_lock(&P.lock);
  if (ps > 0) P.refault_ps[huge] = ps;
  if (ps > 0 && !huge) P.refault_start = ps;
  set_refault_mix();
  P.measured[huge] = true;
  pthread_mutex_unlock(&P.lock);
}

/* The refaults timed in the program (telemetry.c) refine the cost of a 4 KiB
 * refault measured at start, which counts as SAMPLE_PRIOR bytes of them. The
 * samples fade as new ones come, not with time: a program that stops
 * reusing released memory has not made its refaults cheaper. */
#define SAMPLE_PRIOR (256.0 * 1024)
static void take_refault_samples(void) {
  uint64_t ns, bytes;
  _hak_refault_take(&ns, &bytes);
  if (bytes == 0) return;
  P.sampled_ns = DISCOUNT * P.sampled_ns + (double)ns;
  P.sampled_bytes = DISCOUNT * P.sampled_bytes + (double)bytes;
  P.refault_ps[0] = (P.refault_start * SAMPLE_PRIOR + P.sampled_ns * 1000.0) / (SAMPLE_PRIOR + P.sampled_bytes);
  set_refault_mix();
}

/* What the program reuses is what a refault would cost it: `huge` of the
 * `all` bytes it reused were in huge pages. */
static void mix_refault(double huge, double all) {
  if (all <= 0) return;
  P.huge_share = DISCOUNT * P.huge_share + (1 - DISCOUNT) * huge / all;
  set_refault_mix();
}

/* ---- the epoch -------------------------------------------------------------------*/

/* ARM_DISCOUNT for an epoch len_ms long (a tick comes late when the thread
 * is not scheduled at once): the past fades at the same rate in time. */
static double arm_discount(double len_ms) {
  double keep = 1, n = len_ms / EPOCH_MS;
  for (; n >= 1; n--)
    if ((keep *= ARM_DISCOUNT) < 1e-6) return 0;
  return keep * (1 - (1 - ARM_DISCOUNT) * n);  /* (the fraction left, linearly) */
}

/* The reuse the arms answer for: reuse across a pause is the pause rule's,
 * unless the rule holds memory through pauses (then the arm's delay decides
 * what is still there). Returns the bytes reused across a pause that had
 * been released. */
static double take_reuse(epoch_t *ep, double *back) {
  hak_reuse_t r;
  _hak_reuse_take(&r);
  double across_released = 0;
  *back = 0;
  for (int b = 0; b < HAK_REUSE_BUCKETS; b++) {
    ep->kept[b] = r.bytes[0][0][b];
    ep->released[b] = r.bytes[0][1][b];
    double across = (double)(r.bytes[1][0][b] + r.bytes[1][1][b]);
    P.across[b] += across;
    *back += (double)(ep->kept[b] + ep->released[b]) + across;
    across_released += (double)r.bytes[1][1][b];
    if (P.hold_pauses) {
      ep->kept[b] += r.bytes[1][0][b];
      ep->released[b] += r.bytes[1][1][b];
    }
  }
  mix_refault((double)r.huge, *back);
  return P.hold_pauses ? 0 : across_released;
}

static void score_epoch(uint64_t now_ms) {
  snapshot_t now = snapshot();
  epoch_t ep;
  double back;
  double across_released = take_reuse(&ep, &back);
  take_refault_samples();
  ep.len_ms = (double)(now_ms - P.epoch_start_ms);
  double seconds = ep.len_ms / 1000.0;
  ep.ranges = (double)(now.ranges_added - P.at_start.ranges_added);
  double flushed = (double)(now.bytes_flushed - P.at_start.bytes_flushed);
  double refaulted = (double)(now.refault_bytes - P.at_start.refault_bytes);
  if (flushed >= 1048576)  /* what giving back costs this program, TLB shootdowns and all */
    P.release = DISCOUNT * P.release +
                (1 - DISCOUNT) * (double)(now.flush_ns - P.at_start.flush_ns) * 1000.0 / flushed;
  ep.lost = flushed - (refaulted - across_released);
  out_take(refaulted);
  out_charge(P.epoch_start_ms, now_ms, ep.out_hold);
  out_add(now_ms, flushed, delay_of(P.arm));
  P.stake += (double)(now.bytes_added - P.at_start.bytes_added) -
             (double)(now.bytes_cancelled - P.at_start.bytes_cancelled) - refaulted;
  double real = realised(&now);
  bool busy = ep.ranges > 0 || back > 0;  /* the program freed or reused memory */
  bool active = busy || now.flush_ns != P.at_start.flush_ns || _hak_batch_pending_bytes() > 0;
  if (busy) P.quiet = false;
  else if (!P.quiet) go_quiet(now_ms);
  if (active && seconds > 0) {
    int ran = P.arm;
    for (int a = 0; a < HAK_POLICY_ARMS; a++) {
      ep.out_hold[a] += P.out_due[a];
      P.out_due[a] = 0;
    }
    double keep = arm_discount(ep.len_ms);
    for (int a = 0; a < HAK_POLICY_ARMS; a++) {
      double e = estimate(a, ran, &ep) / seconds;
      P.est[a] = P.scored ? keep * P.est[a] + (1 - keep) * e : e;
    }
    P.scored = true;
    P.pulls[P.arm]++;
    P.real_sum[P.arm] += real / seconds;
    P.epochs++;
    P.arm = _hak_policy_pick(P.est, P.arm);
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
  /* (only this thread writes what is read here) */
  if (!P.measured[0]) measure_refault(false);
  if (!P.measured[1] && P.huge_share > 0) measure_refault(true);
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
  st->policy_pauses = P.pauses;
  st->refault_ps_small = P.refault_ps[0];
  st->refault_ps_small_start = P.refault_start;
  st->refault_ps_huge = P.measured[1] ? P.refault_ps[1] : 0;
  st->refault_ps = P.refault;
  st->release_ps = P.release;
  st->pause_hold = P.hold_pauses;
  st->pause_cost_give_back = P.pause_cost[0];
  st->pause_cost_hold = P.pause_cost[1];
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
