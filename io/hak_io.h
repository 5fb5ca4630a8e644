/* The release backends: one small interface, so that the allocator never
 * knows which one runs. A backend gives n ranges back to the kernel with one
 * advice and says how far it got and how many system calls it made. */
#ifndef HAK_IO_H
#define HAK_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

typedef struct hak_io_result_s {
  size_t   ranges_done;  /* ranges 0..ranges_done-1 were advised */
  uint64_t bytes_done;
  uint32_t syscalls;     /* system calls made (madvise, process_madvise, io_uring_enter) */
  int      err;          /* 0, or the errno that stopped the submission */
} hak_io_result_t;

typedef struct hak_io_backend_s {
  const char *name;
  /* Can this backend work in this process? 0, or the errno of the failed
   * probe. Called once at start and again when the mode is set. */
  int (*probe)(void);
  /* Advise iov[0..n-1]. Never blocks on allocator locks, never allocates. */
  void (*submit)(const struct iovec *iov, size_t n, int advice, hak_io_result_t *res);
  /* In a child after fork: drop what belonged to the parent (pidfd, ring). */
  void (*atfork_child)(void);
} hak_io_backend_t;

extern const hak_io_backend_t hak_io_loop;
extern const hak_io_backend_t hak_io_vector;
extern const hak_io_backend_t hak_io_uring;

/* True when err means "this backend cannot work here" (switch to loop for good)
 * rather than "this range was bad". */
static inline int hak_io_is_fatal(int err) {
  return err == 22 /*EINVAL*/ || err == 38 /*ENOSYS*/ || err == 1 /*EPERM*/ ||
         err == 9 /*EBADF*/ || err == 95 /*EOPNOTSUPP*/;
}

#endif
