/* uring: one IORING_OP_MADVISE per range (per GiB of it), one submit-and-wait
 * per batch. One system call for the batch, but each request is still its
 * own madvise (and its own TLB flush) in an io-wq worker.
 *
 * The kernel runs requests after the call that submitted them returns, so
 * a submit returns only when every request it made has completed: a signal
 * (EINTR) makes it wait again, never leave. Requests are tagged with the
 * flush they belong to, so that a completion can never be counted twice or
 * for the wrong flush. The ring's file descriptor is the program's to close:
 * before each use, and before closing it in a forked child, we check that
 * the number still names the ring we opened. */
#include <errno.h>
#include <liburing.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hak_io.h"

#define RING_ENTRIES 256
#define MAX_SQE_LEN (1UL << 30)       /* io_uring_prep_madvise takes a 32-bit length */
#define INDEX_MASK 0xffffffffull      /* user_data: flush tag << 32 | range index */
#define STALE (~0ull)                 /* user_data of a request we took back */
#define AGAIN_MAX 1000

static struct io_uring ring;
static int ring_ready;
static dev_t ring_dev;                /* identity of the ring's file */
static ino_t ring_ino;
static uint32_t flush_tag;
static unsigned stale;                /* taken-back requests still in the ring */

/* ---- the ring and its file descriptor ---------------------------------------*/

static bool fd_is_ring(int fd) {
  struct stat st;
  return fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == ring_dev && st.st_ino == ring_ino;
}

/* Unmap the ring; close its descriptor only if the number is still ours. */
static void forget_ring(void) {
  if (!fd_is_ring(ring.ring_fd)) ring.ring_fd = -1;  /* queue_exit's close(-1) does nothing */
  io_uring_queue_exit(&ring);
  ring_ready = 0;
  stale = 0;
}

static int open_ring(void) {
  int rc = io_uring_queue_init(RING_ENTRIES, &ring, 0);
  if (rc < 0) return -rc;
  struct stat st;
  if (fstat(ring.ring_fd, &st) != 0) {
    int err = errno;
    io_uring_queue_exit(&ring);
    return err;
  }
  ring_dev = st.st_dev;
  ring_ino = st.st_ino;
  ring_ready = 1;
  return 0;
}

/* A ring whose descriptor is ours, opened anew if the program took the old one. */
static int usable_ring(void) {
  if (ring_ready && fd_is_ring(ring.ring_fd)) return 0;
  if (ring_ready) forget_ring();
  return open_ring();
}

/* No malloc here (liburing's own probe helper allocates). */
static int uring_probe(void) {
  int err = usable_ring();
  if (!err) {
    union {
      struct io_uring_probe p;
      char buf[sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op)];
    } u;
    memset(&u, 0, sizeof u);
    int rc = io_uring_register_probe(&ring, &u.p, 256);
    if (rc < 0) err = -rc;
    else if (!io_uring_opcode_supported(&u.p, IORING_OP_MADVISE)) err = EOPNOTSUPP;
  }
  return err;
}

/* ---- one round: queue, submit, reap -----------------------------------------*/

typedef struct {
  uint64_t tag;
  size_t fail_index;                  /* lowest range that failed (SIZE_MAX: none) */
  int fail_err;
} round_t;

/* Queue requests for iov[*i] + *off onwards until the ring is full. */
static unsigned queue(const struct iovec *iov, size_t n, size_t *i, size_t *off, int advice,
                      uint64_t tag) {
  unsigned queued = 0;
  while (*i < n) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) break;
    size_t left = iov[*i].iov_len - *off, len = left < MAX_SQE_LEN ? left : MAX_SQE_LEN;
    io_uring_prep_madvise(sqe, (char *)iov[*i].iov_base + *off, (off_t)len, advice);
    sqe->user_data = tag | *i;
    queued++;
    *off += len;
    if (*off >= iov[*i].iov_len) { (*i)++; *off = 0; }
  }
  return queued;
}

/* Requests the kernel did not take stay in the ring, where a later submit
 * would run them after their memory was reused: make them no-ops. */
static void take_back_unsubmitted(void) {
  struct io_uring_sq *sq = &ring.sq;
  unsigned head = __atomic_load_n(sq->khead, __ATOMIC_ACQUIRE);
  for (unsigned k = head; k != sq->sqe_tail; k++) {
    struct io_uring_sqe *sqe = &sq->sqes[k & sq->ring_mask];
    io_uring_prep_nop(sqe);
    sqe->user_data = STALE;
    stale++;
  }
}

/* Submit the queued requests (after any taken-back ones, which the kernel
 * takes first); returns how many requests it took in all. */
static unsigned submit(unsigned queued, hak_io_result_t *res, int *err) {
  unsigned taken = 0, want = queued + stale;
  stale = 0;
  for (int again = 0; taken < want;) {
    res->syscalls++;
    int rc = io_uring_submit_and_wait(&ring, want - taken);
    if (rc > 0) { taken += (unsigned)rc; continue; }
    if (rc == -EINTR) continue;
    if ((rc == -EAGAIN || rc == -EBUSY || rc == 0) && ++again < AGAIN_MAX) {
      struct timespec ts = {0, 50000};
      nanosleep(&ts, NULL);
      continue;
    }
    *err = rc < 0 ? -rc : EIO;
    take_back_unsubmitted();
    break;
  }
  return taken;
}

/* Every completion counts towards the round's total; only ours say anything. */
static void note(round_t *r, const struct io_uring_cqe *cqe) {
  if (cqe->user_data == STALE || (cqe->user_data & ~INDEX_MASK) != r->tag) return;
  size_t idx = (size_t)(cqe->user_data & INDEX_MASK);
  if (cqe->res < 0 && idx < r->fail_index) {
    r->fail_index = idx;
    r->fail_err = -cqe->res;
  }
}

/* Wait for `taken` completions of this round. A signal only makes us wait
 * again; if the descriptor stopped working, the completions still arrive in
 * the mapped ring: poll it. */
static void reap(unsigned taken, round_t *r, hak_io_result_t *res) {
  unsigned got = 0;
  bool fd_lost = false;
  while (got < taken) {
    struct io_uring_cqe *cqe = NULL;
    int rc;
    if (fd_lost) {
      rc = io_uring_peek_cqe(&ring, &cqe);
      if (rc == -EAGAIN) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
        continue;
      }
    } else {
      if (io_uring_cq_ready(&ring) == 0) res->syscalls++;
      rc = io_uring_wait_cqe(&ring, &cqe);
      if (rc == -EINTR || rc == -EAGAIN) continue;
      if (rc < 0) { fd_lost = true; continue; }
    }
    if (rc < 0 || !cqe) continue;
    note(r, cqe);
    io_uring_cqe_seen(&ring, cqe);
    got++;
  }
}

static void uring_submit(const struct iovec *iov, size_t n, int advice, hak_io_result_t *res) {
  *res = (hak_io_result_t){0};
  int err = usable_ring();
  if (err) {
    res->err = err == EMFILE || err == ENFILE || err == ENOMEM ? EAGAIN : err;
    return;
  }
  round_t r = {(uint64_t)(++flush_tag) << 32, SIZE_MAX, 0};
  size_t i = 0, off = 0;
  while (i < n && r.fail_index == SIZE_MAX && !err) {
    size_t first = i;
    unsigned queued = queue(iov, n, &i, &off, advice, r.tag);
    unsigned taken = submit(queued, res, &err);
    reap(taken, &r, res);
    if (err) { r.fail_index = first; r.fail_err = err; }
  }
  size_t done = r.fail_index == SIZE_MAX ? n : r.fail_index;
  for (size_t k = 0; k < done; k++) res->bytes_done += iov[k].iov_len;
  res->ranges_done = done;
  res->err = r.fail_index == SIZE_MAX ? 0 : r.fail_err;
}

/* The ring's memory and file are the parent's: unmap our copy, and close the
 * inherited descriptor only if the program has not put something else there. */
static void uring_atfork_child(void) {
  if (ring_ready) forget_ring();
}

const hak_io_backend_t _hak_io_uring = {
  .name = "uring",
  .probe = uring_probe,
  .submit = uring_submit,
  .atfork_child = uring_atfork_child,
};
