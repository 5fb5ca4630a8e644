/* Messages on stderr without allocating: the allocator cannot call malloc
 * to report that malloc is in trouble. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

static void write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n <= 0) return;
    buf += n;
    len -= (size_t)n;
  }
}

void _hak_warn(const char *fmt, ...) {
  char buf[512];
  int n = snprintf(buf, sizeof buf, "hakmem: ");
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
  va_end(ap);
  if (m < 0) return;
  size_t len = (size_t)n + (size_t)m;
  write_all(2, buf, len < sizeof buf ? len : sizeof buf - 1);
}

/* glibc reports heap corruption and aborts; so do we, with the pointer. */
void _hak_fatal_pointer(const char *what, const void *p) {
  _hak_warn("%s: %p (aborting)\n", what, p);
  abort();
}

/* The name of an errno value for messages and stats, without strerror
 * (which may allocate for unknown values). */
const char *_hak_errno_name(int err) {
  switch (err) {
  case EINVAL: return "EINVAL";
  case ENOSYS: return "ENOSYS";
  case EPERM: return "EPERM";
  case EBADF: return "EBADF";
  case EOPNOTSUPP: return "EOPNOTSUPP";
  case ENOMEM: return "ENOMEM";
  case EAGAIN: return "EAGAIN";
  case EINTR: return "EINTR";
  case EFAULT: return "EFAULT";
  case EIO: return "EIO";
  case EMFILE: return "EMFILE";
  case EACCES: return "EACCES";
  default: return "error";
  }
}
