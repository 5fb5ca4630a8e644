/* vector: one process_madvise(2) per batch. Since 6.13 the kernel accepts any
 * advice on the caller's own process; since 6.16 it flushes the TLB once for
 * the whole vector. The target is PIDFD_SELF (6.15+) or a pidfd of our own
 * process, which a child must open again after fork. */
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
#define HAK_IOV_MAX 1024

static _Atomic int pidfd = -1;    /* -1: not decided yet */

static long pmadvise(int fd, const struct iovec *iov, size_t n, int advice) {
  return syscall(SYS_process_madvise, fd, iov, n, advice, 0u);
}

static int open_own_pidfd(void) {
  return (int)syscall(SYS_pidfd_open, getpid(), 0u);
}

/* Advise one touched page of our own: tells whether this kernel takes
 * MADV_DONTNEED through process_madvise, and through which pidfd. */
static int vector_probe(void) {
  long psz = sysconf(_SC_PAGESIZE);
  char *page = mmap(NULL, (size_t)psz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return ENOMEM;
  page[0] = 1;
  struct iovec iov = {page, (size_t)psz};
  int err = 0, fd = HAK_PIDFD_SELF;
  if (pmadvise(fd, &iov, 1, MADV_DONTNEED) != psz) {
    err = errno;
    fd = open_own_pidfd();
    if (fd < 0) err = errno;
    else if (pmadvise(fd, &iov, 1, MADV_DONTNEED) == psz) err = 0;
    else { err = errno; close(fd); fd = -1; }
  }
  if (!err && page[0] != 0) err = EINVAL;  /* advice not applied: treat as unsupported */
  munmap(page, (size_t)psz);
  if (err) return err;
  int old = atomic_exchange(&pidfd, fd);
  if (old >= 0 && old != fd) close(old);
  return 0;
}

static int current_pidfd(void) {
  int fd = atomic_load(&pidfd);
  if (fd != -1) return fd;
  return vector_probe() == 0 ? atomic_load(&pidfd) : -1;
}

/* The kernel stops at the first failing range and returns the bytes done
 * before it, and it advises at most MAX_RW_COUNT (2 GiB - 4 KiB) of one
 * range per call: continue from where it stopped, inside a range if need be,
 * until everything is done or a range fails. */
static void vector_submit(const struct iovec *iov, size_t n, int advice, hak_io_result_t *res) {
  res->ranges_done = 0;
  res->bytes_done = 0;
  res->syscalls = 0;
  res->err = 0;
  int fd = current_pidfd();
  if (fd == -1) { res->err = EBADF; return; }
  size_t i = 0, off = 0;  /* next byte to advise: iov[i] + off */
  while (i < n) {
    long got;
    res->syscalls++;
    if (off) {
      struct iovec rest = {(char *)iov[i].iov_base + off, iov[i].iov_len - off};
      got = pmadvise(fd, &rest, 1, advice);
    } else {
      got = pmadvise(fd, iov + i, n - i < HAK_IOV_MAX ? n - i : HAK_IOV_MAX, advice);
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

static void vector_atfork_child(void) {
  int fd = atomic_exchange(&pidfd, -1);
  if (fd >= 0) close(fd);  /* it names the parent: the child opens its own */
}

const hak_io_backend_t hak_io_vector = {
  .name = "vector",
  .probe = vector_probe,
  .submit = vector_submit,
  .atfork_child = vector_atfork_child,
};
