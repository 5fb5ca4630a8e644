/* PRODCONS scenario: producer/consumer pipelines (a network stage handing
 * buffers to workers, a logger thread, a work queue). Producers allocate
 * blocks of 64 B - 4 KiB, write them and pass them through a bounded
 * lock-free queue to a consumer, which reads and frees them: every block is
 * freed by another thread than the one that allocated it.
 *
 * Threads pair up: thread 2k produces for thread 2k+1. A thread without a
 * partner (one thread, or the last of an odd count) alternates the roles on
 * its own: it produces a batch of PC_BATCH blocks, then consumes it (so with
 * one thread nothing is freed remotely; it is the baseline). */
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "scen_common.h"

#define PC_CAP 1024 /* queue slots: a power of two */
#define PC_BATCH 64 /* blocks per role switch of a lone thread */
#define PC_SPIN 200 /* pauses (a few µs) before a side goes to sleep */

typedef struct pc_item {
  unsigned char *p;
  size_t size;
} pc_item_t;

/* Single producer, single consumer; 32-bit positions (futex words) that
 * wrap, compared by difference. Each side's position and its "asleep" flag
 * share a line of their own: the queue itself must not be false sharing. */
typedef struct pc_queue {
  _Alignas(64) uint32_t tail; /* next slot the producer fills */
  uint32_t prod_waiting;
  _Alignas(64) uint32_t head; /* next slot the consumer takes */
  uint32_t cons_waiting;
  _Alignas(64) pc_item_t slot[PC_CAP];
} pc_queue_t;

typedef struct pc_state {
  int pairs;
  pc_queue_t *q; /* one per pair */
} pc_state_t;

void *scen_prodcons_setup(int nthreads, uint64_t units) {
  (void)units;
  pc_state_t *s = calloc(1, sizeof(*s));
  if (!s) abort();
  s->pairs = nthreads / 2;
  if (s->pairs && posix_memalign((void **)&s->q, 64, (size_t)s->pairs * sizeof(pc_queue_t)))
    abort();
  if (s->pairs) memset(s->q, 0, (size_t)s->pairs * sizeof(pc_queue_t));
  return s;
}

void scen_prodcons_teardown(void *state) {
  pc_state_t *s = state;
  free(s->q);
  free(s);
}

/* Log-uniform over 64 B - 4 KiB: as many 64-128 B blocks as 2-4 KiB ones. */
static size_t pc_size(scen_ctx_t *c) {
  size_t lo = (size_t)64 << (scen_rand(c) % 6);
  return scen_range(c, lo, 2 * lo);
}

static pc_item_t pc_make(scen_ctx_t *c) {
  pc_item_t it = {NULL, pc_size(c)};
  it.p = scen_alloc(c, it.size);
  scen_fill(it.p, it.size, c->rng);
  return it;
}

static void pc_eat(scen_ctx_t *c, pc_item_t it) {
  c->checksum += scen_sum(it.p, it.size);
  free(it.p);
}

static uint32_t ld(uint32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static void st(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }

static void futex(uint32_t *word, int op, uint32_t val) {
  syscall(SYS_futex, word, op | FUTEX_PRIVATE_FLAG, val, NULL, NULL, 0);
}

/* Waits while *pos == seen (the other side has not moved). Spins first:
 * with a CPU each, the partner moves within microseconds; then sleeps, so
 * that CPU time counts work and not waiting. The flag is set before *pos is
 * read again and the partner stores its position before it reads the flag
 * (both sequentially consistent): one of the two sees the other. */
static void pc_wait(uint32_t *pos, uint32_t seen, uint32_t *waiting) {
  for (int i = 0; i < PC_SPIN; i++) {
    if (ld(pos) != seen) return;
    __builtin_ia32_pause();
  }
  st(waiting, 1);
  if (ld(pos) == seen) futex(pos, FUTEX_WAIT, seen);
  st(waiting, 0);
}

/* The sleeper is woken when the queue is half full (half empty): one wake
 * system call per PC_CAP/2 blocks instead of one per block. */
static void pc_produce(scen_ctx_t *c, pc_queue_t *q, uint64_t n) {
  for (uint32_t i = 0; i < n; i++) {
    pc_item_t it = pc_make(c);
    uint32_t h;
    while (i - (h = ld(&q->head)) >= PC_CAP) pc_wait(&q->head, h, &q->prod_waiting);
    q->slot[i % PC_CAP] = it;
    st(&q->tail, i + 1);
    if (ld(&q->cons_waiting) && (i + 1 - h >= PC_CAP / 2 || i + 1 == n))
      futex(&q->tail, FUTEX_WAKE, 1);
  }
}

static void pc_consume(scen_ctx_t *c, pc_queue_t *q, uint64_t n) {
  for (uint32_t i = 0; i < n; i++) {
    uint32_t t;
    while ((t = ld(&q->tail)) == i) pc_wait(&q->tail, t, &q->cons_waiting);
    pc_item_t it = q->slot[i % PC_CAP];
    st(&q->head, i + 1);
    if (ld(&q->prod_waiting) && t - (i + 1) <= PC_CAP / 2) futex(&q->head, FUTEX_WAKE, 1);
    pc_eat(c, it);
  }
}

/* The lone thread: the same work, through a local FIFO. */
static void pc_alone(scen_ctx_t *c, uint64_t n) {
  pc_item_t batch[PC_BATCH];
  for (uint64_t done = 0; done < n;) {
    unsigned k = n - done < PC_BATCH ? (unsigned)(n - done) : PC_BATCH;
    for (unsigned i = 0; i < k; i++) batch[i] = pc_make(c);
    for (unsigned i = 0; i < k; i++) pc_eat(c, batch[i]);
    done += k;
  }
}

/* A pair moves 2 x units blocks, a lone thread units: every thread does
 * the same share (a producer's half of a block plus a consumer's half). */
void scen_prodcons_run(scen_ctx_t *c, uint64_t units) {
  pc_state_t *s = c->state;
  int pair = c->tid / 2;
  if (pair >= s->pairs) {
    pc_alone(c, units);
  } else if (c->tid % 2 == 0) {
    pc_produce(c, &s->q[pair], 2 * units);
  } else {
    pc_consume(c, &s->q[pair], 2 * units);
  }
}
