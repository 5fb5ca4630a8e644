/* The release backends: one small interface, so that the allocator never
 * knows which one runs. A backend gives n ranges back to the kernel with one
 * advice and says how far it got and how many system calls it made.
 *
 * The contract every backend keeps: submit returns only when the kernel
 * holds none of the ranges (no request still queued or running anywhere),
 * whatever signals, errors or closed file descriptors it met on the way.
 * It never allocates and never takes an allocator lock. Callers serialise
 * every call of one backend (the batch holds its flush lock), so a backend
 * keeps no lock of its own. */
#ifndef HAK_IO_H
#define HAK_IO_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define HAK_IO_MAX_IOV 1024  /* ranges per submit (IOV_MAX) */

typedef struct hak_io_result_s {
  size_t   ranges_done;  /* iov[0..ranges_done) were advised */
  uint64_t bytes_done;
  uint32_t syscalls;     /* advising system calls (madvise, process_madvise, io_uring_enter) */
  int      err;          /* 0, or the errno with which iov[ranges_done] failed */
} hak_io_result_t;

typedef struct hak_io_backend_s {
  const char *name;
  /* Can this backend work in this process? 0, or the errno of the failed
   * probe. */
  int (*probe)(void);
  /* Advise iov[0..n), n <= HAK_IO_MAX_IOV; stop at the first range that
   * cannot be advised. Callers serialise submits. */
  void (*submit)(const struct iovec *iov, size_t n, int advice, hak_io_result_t *res);
  /* In a child after fork: drop what belonged to the parent (a ring). */
  void (*atfork_child)(void);
} hak_io_backend_t;

extern const hak_io_backend_t _hak_io_loop;
extern const hak_io_backend_t _hak_io_vector;
extern const hak_io_backend_t _hak_io_uring;

/* The backend of a hak_flush_mode_t value (NULL for off), for the allocator
 * and for bench/vm's micro-benchmark, which times the backends directly. */
const hak_io_backend_t *_hak_io_backend(int mode);

/* err means "this backend cannot work in this process" (switch to loop for
 * good), rather than "the kernel refused this range". */
static inline bool _hak_io_backend_broken(int err) {
  return err == ENOSYS || err == EPERM || err == EBADF || err == EOPNOTSUPP;
}

#endif
