/* loop: one madvise per range, the way allocators have always released memory. */
#include <errno.h>
#include <sys/mman.h>

#include "hak_io.h"

static int loop_probe(void) { return 0; }

static void loop_submit(const struct iovec *iov, size_t n, int advice, hak_io_result_t *res) {
  res->ranges_done = 0;
  res->bytes_done = 0;
  res->syscalls = 0;
  res->err = 0;
  for (size_t i = 0; i < n; i++) {
    res->syscalls++;
    if (madvise(iov[i].iov_base, iov[i].iov_len, advice) != 0) {
      res->err = errno;
      return;
    }
    res->ranges_done++;
    res->bytes_done += iov[i].iov_len;
  }
}

static void loop_atfork_child(void) {}

const hak_io_backend_t hak_io_loop = {
  .name = "loop",
  .probe = loop_probe,
  .submit = loop_submit,
  .atfork_child = loop_atfork_child,
};
