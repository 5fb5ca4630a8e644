/* TLB flushes per release: tlb:tlb_flush counted (perf_event_open) over the flush of 256 queued large ranges, vector vs loop. */
#include <linux/perf_event.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/utsname.h>

#include "testutil.h"

enum { NBLOCKS = 256 };
#define BLOCK (320 * KiB) /* a large block: each one its own queued range */
/* Resident part of each block. One mmu_gather holds about 9,700 pages before
 * the kernel flushes mid-call, so 256 x 16 pages keep the vectored call at one
 * flush (256 x 80 pages gave 3 here on 6.18), while the loop still flushes
 * once per madvise. */
#define TOUCH (64 * KiB)

/* The tracepoint id from tracefs, mounting it when needed; -1 if unavailable. */
static long tlb_flush_id(void) {
  static const char *const dirs[] = {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"};
  for (int attempt = 0; attempt < 2; attempt++) {
    for (int i = 0; i < 2; i++) {
      char path[128];
      snprintf(path, sizeof path, "%s/events/tlb/tlb_flush/id", dirs[i]);
      char *s = tu_read_file(path, NULL);
      if (s) {
        long id = atol(s);
        free(s);
        return id;
      }
    }
    if (attempt == 0) mount("nodev", "/sys/kernel/tracing", "tracefs", 0, NULL);
  }
  return -1;
}

/* process_madvise batches the TLB flush over its iovec since 6.16. */
static int kernel_at_least(int major, int minor) {
  struct utsname u;
  int ma = 0, mi = 0;
  if (uname(&u) != 0 || sscanf(u.release, "%d.%d", &ma, &mi) != 2) return 0;
  return ma > major || (ma == major && mi >= minor);
}

static int open_counter(long id) {
  struct perf_event_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.size = sizeof attr;
  attr.type = PERF_TYPE_TRACEPOINT;
  attr.config = (uint64_t)id;
  attr.disabled = 1;
  /* This thread only, on whatever CPU it runs (it is pinned). */
  return (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

/* Queues NBLOCKS partly resident large ranges under mode, then counts tlb_flush
 * events during hak_flush alone. */
static long flushes_for(const char *mode, int fd, uint64_t *syscalls) {
  tu_opts_t o = {0};
  tu_opt(&o, "PURGE_THREAD", "0");  /* one thread: no remote CPU to shoot down */
  tu_quiet(&o);
  tu_opt(&o, "ADVICE", "dontneed");
  tu_opt(&o, "FLUSH", mode);
  ck_assert_str_eq(tu_mode_name(tu_stats().flush_mode), mode);
  void **v = calloc(NBLOCKS, sizeof *v);
  for (int i = 0; i < NBLOCKS; i++) {
    v[i] = hak_malloc(BLOCK);
    ck_assert_ptr_nonnull(v[i]);
    memset(v[i], 0x11, TOUCH);
  }
  for (int i = 0; i < NBLOCKS; i++) hak_free(v[i]);
  free(v);
  hak_stats_t a = tu_stats();
  ck_assert_uint_ge(a.pending_ranges, NBLOCKS);
  ioctl(fd, PERF_EVENT_IOC_RESET, 0);
  ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
  hak_flush();
  ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);
  uint64_t count = 0;
  ck_assert_int_eq(read(fd, &count, sizeof count), (ssize_t)sizeof count);
  hak_stats_t b = tu_stats();
  ck_assert_uint_ge(b.ranges_flushed - a.ranges_flushed, NBLOCKS);
  *syscalls = b.flush_syscalls - a.flush_syscalls;
  fprintf(stderr, "note: %s: %llu tlb:tlb_flush events, %llu syscalls for %d ranges\n", mode,
          (unsigned long long)count, (unsigned long long)*syscalls, NBLOCKS);
  hak_trim();
  tu_opts_restore(&o);
  return (long)count;
}

START_TEST(vector_batches_tlb_flushes) {
  if (geteuid() != 0) SKIP_TEST("needs root (tracefs and tracepoint counting)");
#ifdef __SANITIZE_THREAD__
  SKIP_TEST("ThreadSanitizer's runtime unmaps its own memory, flushing the TLB in the window");
#endif
  int err = tu_probe_vector_dontneed();
  if (err) SKIP_TEST("kernel lacks vectored MADV_DONTNEED (process_madvise: %s)", strerror(err));
  if (!kernel_at_least(6, 16)) SKIP_TEST("kernel < 6.16: process_madvise flushes per range");
  long id = tlb_flush_id();
  if (id < 0) SKIP_TEST("no tracefs events/tlb/tlb_flush");
  int fd = open_counter(id);
  if (fd < 0) SKIP_TEST("perf_event_open(tlb:tlb_flush): %s", strerror(errno));

  /* One CPU: no migration flushes, no IPIs, the count is the flush's own. */
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(sched_getcpu(), &set);
  ck_assert_int_eq(sched_setaffinity(0, sizeof set, &set), 0);

  uint64_t vec_calls = 0, loop_calls = 0;
  long loop = flushes_for("loop", fd, &loop_calls);
  long vec = flushes_for("vector", fd, &vec_calls);
  close(fd);
  ck_assert_uint_eq(loop_calls, NBLOCKS);
  ck_assert_uint_eq(vec_calls, 1);
  ck_assert_msg(loop >= NBLOCKS, "loop: %ld TLB flushes for %d ranges, want >= %d", loop, NBLOCKS,
                NBLOCKS);
  ck_assert_msg(vec <= 2, "vector: %ld TLB flushes for %d ranges, want <= 2", vec, NBLOCKS);
}
END_TEST

Suite *test_tlb_flush_suite(void) {
  Suite *s = suite_create("tlb_flush");
  TCase *tc = tcase_create("tlb_flush");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, vector_batches_tlb_flushes);
  suite_add_tcase(s, tc);
  return s;
}
