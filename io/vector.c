/* vector: one process_madvise(2) per batch. Since 6.13 the kernel accepts any
 * advice on the caller's own process; since 6.16 it flushes the TLB once for
 * the whole vector. The target is PIDFD_SELF (6.15+); on 6.13-6.14 a pidfd
 * of our own, opened for the one call and closed after it: a file descriptor
 * kept open could be closed, or replaced, by the program, which owns every
 * fd it did not see us open. */
#include <errno.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hak_io.h"

#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#define HAK_PIDFD_SELF (-10000)   /* not in glibc 2.36 headers */
#define AGAIN_MAX 64

static _Atomic int use_self = 1;  /* PIDFD_SELF works here */

static long pmadvise(int fd, const struct iovec *iov, size_t n, int advice) {
  return syscall(SYS_process_madvise, fd, iov, n, advice, 0u);
}

static int open_own_pidfd(void) {
  return (int)syscall(SYS_pidfd_open, getpid(), 0u);  /* always O_CLOEXEC */
}

/* Advise one touched page of our own: tells whether this kernel takes
 * MADV_DONTNEED through process_madvise, and through which target. */
static int vector_probe(void) {
  long psz = sysconf(_SC_PAGESIZE);
  char *page = mmap(NULL, (size_t)psz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return ENOMEM;
  page[0] = 1;
  struct iovec iov = {page, (size_t)psz};
  int err = 0, self = 1;
  if (pmadvise(HAK_PIDFD_SELF, &iov, 1, MADV_DONTNEED) != psz) {
    err = errno;
    int fd = open_own_pidfd();
    if (fd >= 0) {  /* else the first error says more */
      if (pmadvise(fd, &iov, 1, MADV_DONTNEED) == psz) { err = 0; self = 0; }
      else err = errno;
      close(fd);
    }
  }
  if (!err && page[0] != 0) err = EINVAL;  /* advice not applied: treat as unsupported */
  munmap(page, (size_t)psz);
  if (!err) atomic_store(&use_self, self);
  return err;
}

/* One call, retried on EINTR and briefly on EAGAIN. */
static long call(int fd, const struct iovec *iov, size_t n, int advice, uint32_t *syscalls) {
  for (int again = 0;;) {
    (*syscalls)++;
    long got = pmadvise(fd, iov, n, advice);
    if (got >= 0) return got;
    if (errno == EINTR) continue;
    if (errno == EAGAIN && ++again < AGAIN_MAX) continue;
    return -1;
  }
}

/* The kernel stops at the first failing range and returns the bytes done
 * before it, and it advises at most MAX_RW_COUNT (2 GiB - 4 KiB) of one
 * range per call: continue from where it stopped, inside a range if need be,
 * until everything is done or a range fails. */
static void advise_all(int fd, const struct iovec *iov, size_t n, int advice, hak_io_result_t *res) {
  size_t i = 0, off = 0;  /* next byte to advise: iov[i] + off */
  while (i < n) {
    long got;
    if (off) {
      struct iovec rest = {(char *)iov[i].iov_base + off, iov[i].iov_len - off};
      got = call(fd, &rest, 1, advice, &res->syscalls);
    } else {
      got = call(fd, iov + i, n - i, advice, &res->syscalls);
    }
    if (got < 0) { res->err = errno; break; }
    if (got == 0) { res->err = EIO; break; }  /* no progress: never spin */
    res->bytes_done += (uint64_t)got;
    for (size_t b = (size_t)got; b > 0 && i < n;) {
      size_t left = iov[i].iov_len - off;
      if (b < left) { off += b; break; }
      b -= left;
      i++;
      off = 0;
    }
  }
  res->ranges_done = i;
}

static void vector_submit(const struct iovec *iov, size_t n, int advice, hak_io_result_t *res) {
  *res = (hak_io_result_t){0};
  if (atomic_load(&use_self)) {
    advise_all(HAK_PIDFD_SELF, iov, n, advice, res);
    return;
  }
  int fd = open_own_pidfd();
  if (fd < 0) { res->err = errno == EMFILE || errno == ENFILE ? EAGAIN : errno; return; }
  advise_all(fd, iov, n, advice, res);
  close(fd);
}

/* Nothing to drop: no descriptor outlives a submit, and the target of
 * PIDFD_SELF or of a fresh pidfd is whoever calls. */
static void vector_atfork_child(void) {}

const hak_io_backend_t _hak_io_vector = {
  .name = "vector",
  .probe = vector_probe,
  .submit = vector_submit,
  .atfork_child = vector_atfork_child,
};
