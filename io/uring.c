/* uring: one IORING_OP_MADVISE per range, one submit-and-wait per batch.
 * One system call for the batch, but each SQE is still its own madvise (and
 * its own TLB flush) in an io-wq worker. A range may be reused only after its
 * completion is reaped: submit waits for all of them before returning. */
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hak_io.h"

#define RING_ENTRIES 256
#define MAX_SQE_LEN (1UL << 30)  /* io_uring_prep_madvise takes a 32-bit length */

static struct io_uring ring;
static int ring_ready;           /* 1 ready, 0 not yet, -errno failed */

static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;

/* Probes from several threads may race to set the ring up: one does it. */
static int ring_open(void) {
  if (__atomic_load_n(&ring_ready, __ATOMIC_ACQUIRE) == 1) return 0;
  pthread_mutex_lock(&ring_lock);
  int rc = 0;
  if (ring_ready != 1) {
    rc = io_uring_queue_init(RING_ENTRIES, &ring, 0);
    if (rc == 0) __atomic_store_n(&ring_ready, 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&ring_lock);
  return rc < 0 ? -rc : 0;
}

static int uring_probe(void) {
  int err = ring_open();
  if (err) return err;
  struct io_uring_probe *p = io_uring_get_probe_ring(&ring);
  if (!p) return ENOSYS;
  int ok = io_uring_opcode_supported(p, IORING_OP_MADVISE);
  io_uring_free_probe(p);
  return ok ? 0 : EOPNOTSUPP;
}

/* Reap n completions; the first error wins. */
static int reap(unsigned n, uint64_t *bytes, size_t *ok) {
  int first_err = 0;
  for (unsigned i = 0; i < n; i++) {
    struct io_uring_cqe *cqe;
    int rc = io_uring_wait_cqe(&ring, &cqe);
    if (rc < 0) { if (!first_err) first_err = -rc; break; }
    if (cqe->res < 0) { if (!first_err) first_err = -cqe->res; }
    else { *bytes += (uint64_t)cqe->user_data; (*ok)++; }
    io_uring_cqe_seen(&ring, cqe);
  }
  return first_err;
}

/* Queue one range as SQEs of at most 1 GiB each; returns SQEs queued. */
static unsigned queue_range(const struct iovec *v, int advice) {
  unsigned q = 0;
  for (size_t off = 0; off < v->iov_len; off += MAX_SQE_LEN) {
    size_t len = v->iov_len - off < MAX_SQE_LEN ? v->iov_len - off : MAX_SQE_LEN;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) break;
    io_uring_prep_madvise(sqe, (char *)v->iov_base + off, (off_t)len, advice);
    sqe->user_data = len;
    q++;
  }
  return q;
}

static void uring_submit(const struct iovec *iov, size_t n, int advice, hak_io_result_t *res) {
  memset(res, 0, sizeof *res);
  int err = ring_open();
  if (err) { res->err = err; return; }
  size_t i = 0;
  while (i < n) {
    unsigned queued = 0;
    size_t first = i, ok = 0;
    while (i < n && io_uring_sq_space_left(&ring) >= (iov[i].iov_len / MAX_SQE_LEN) + 1)
      queued += queue_range(&iov[i++], advice);
    res->syscalls++;
    int rc = io_uring_submit_and_wait(&ring, queued);
    if (rc < 0) { res->err = -rc; return; }
    uint64_t bytes = 0;
    err = reap(queued, &bytes, &ok);
    res->bytes_done += bytes;
    /* Ranges count as done only when all of their SQEs are. */
    if (err) { res->err = err; return; }
    res->ranges_done += i - first;
  }
}

static void uring_atfork_child(void) {
  /* The ring's memory and file are the parent's: forget them, open anew. */
  pthread_mutex_init(&ring_lock, NULL);
  if (ring_ready == 1) {
    io_uring_queue_exit(&ring);
    ring_ready = 0;
  }
}

const hak_io_backend_t hak_io_uring = {
  .name = "uring",
  .probe = uring_probe,
  .submit = uring_submit,
  .atfork_child = uring_atfork_child,
};
