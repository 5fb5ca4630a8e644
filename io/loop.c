/* loop: one madvise per range, the way allocators have always released memory. */
#include <errno.h>
#include <sched.h>
#include <sys/mman.h>

#include "hak_io.h"

#define AGAIN_MAX 64  /* EAGAIN: a kernel resource was briefly unavailable */

static int loop_probe(void) { return 0; }

/* One range: retried on EINTR (any signal) and, a bounded number of times,
 * on EAGAIN. Returns 0 or the errno. */
static int advise(const struct iovec *v, int advice, uint32_t *syscalls) {
  for (int again = 0;;) {
    (*syscalls)++;
    if (madvise(v->iov_base, v->iov_len, advice) == 0) return 0;
    int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN && ++again < AGAIN_MAX) { sched_yield(); continue; }
    return err;
  }
}

static void loop_submit(const struct iovec *iov, size_t n, int advice, hak_io_result_t *res) {
  *res = (hak_io_result_t){0};
  for (size_t i = 0; i < n; i++) {
    int err = advise(&iov[i], advice, &res->syscalls);
    if (err) { res->err = err; return; }
    res->ranges_done++;
    res->bytes_done += iov[i].iov_len;
  }
}

static void loop_atfork_child(void) {}

const hak_io_backend_t _hak_io_loop = {
  .name = "loop",
  .probe = loop_probe,
  .submit = loop_submit,
  .atfork_child = loop_atfork_child,
};
