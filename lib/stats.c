/* Statistics: the counters of hakmem.h's HAK_STATS_FIELDS, the table that
 * HAKMEM_STATS=1 prints at exit, and its one-line JSON twin (HAKMEM_STATS=json).
 *
 * The report goes to HAKMEM_STATS_FILE (with %p for the pid) or to stderr.
 * No descriptor is kept for it: a program may close every fd it did not
 * open, and the number would then name one of its own files. If stderr is
 * closed at exit (ls and other coreutils close it), the file it named at
 * start is opened again, when it was a file or a terminal and still is the
 * same one. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

hak_counters_t _hak_cnt;
static int forked_from;

static struct {
  bool known;
  dev_t dev;
  ino_t ino;
  char path[256];
} stderr_at_start;

#define HAK_KIND_C 1
#define HAK_KIND_G 0
#define LOAD(f) atomic_load_explicit(&_hak_cnt.f, memory_order_relaxed)

void hak_stats(hak_stats_t *st) {
  _hak_ensure_init();
  memset(st, 0, sizeof *st);
#define HAK_FILL_(name, kind, label) if (HAK_KIND_##kind) st->name = LOAD(name);
  HAK_STATS_FIELDS(HAK_FILL_)
#undef HAK_FILL_
  st->bytes_mapped_now = st->bytes_mapped - st->bytes_unmapped;
  _hak_heap_fill_stats(st);
  _hak_batch_fill_stats(st);
  _hak_large_fill_stats(st);
  st->purge_thread = _hak_purge_state();
  st->purge_cpu_us = _hak_purge_cpu_us();
  st->forked_from = forked_from;
#define HAK_HIST_FILL_(name, label) _hak_hist_read(HAK_HIST_##name, &st->name);
  HAK_STATS_HISTOGRAMS(HAK_HIST_FILL_)
#undef HAK_HIST_FILL_
  _hak_policy_fill_stats(st);
}

static void zero_counters(void) {
  uint64_t mapped_now = LOAD(bytes_mapped) - LOAD(bytes_unmapped);
#define HAK_ZERO_(name, kind, label) if (HAK_KIND_##kind) atomic_store(&_hak_cnt.name, 0);
  HAK_STATS_FIELDS(HAK_ZERO_)
#undef HAK_ZERO_
  atomic_store(&_hak_cnt.bytes_mapped, mapped_now);  /* so that mapped - unmapped stays true */
  _hak_heap_reset_stats();
  _hak_hist_reset();
}

void hak_stats_reset(void) {
  _hak_ensure_init();
  zero_counters();
}

/* A forked child's counters start at zero, and its report says so. */
void _hak_stats_atfork_child(int parent_pid) {
  zero_counters();
  forked_from = parent_pid;
}

/* ---- formatting --------------------------------------------------------------*/

typedef struct { char buf[12288]; size_t len; } out_t;

static void put(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out_t *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(o->buf + o->len, sizeof o->buf - o->len, fmt, ap);
  va_end(ap);
  if (n > 0) o->len += (size_t)n < sizeof o->buf - o->len ? (size_t)n : sizeof o->buf - o->len - 1;
}

static const char *advice_name(int advice) { return advice == MADV_FREE ? "free" : "dontneed"; }

static const char *purge_state_name(int state, char *buf, size_t n) {
  if (state > 0) return "running";
  if (state == 0) return "not running";
  snprintf(buf, n, "failed to start: %s", _hak_errno_name(-state));
  return buf;
}

/* "released then reused within 10 ms": of the ranges given to the kernel,
 * the share that was handed out again within 10 ms of its free. */
static double reused_soon_pct(const hak_stats_t *st) {
  uint64_t total;
  uint64_t soon = _hak_hist_count_upto(HAK_HIST_reuse_delay_ms, 10, &total);
  return st->ranges_flushed ? 100.0 * (double)soon / (double)st->ranges_flushed : 0.0;
}

static void table_hist(out_t *o, const char *label, const hak_percentiles_t *h) {
  put(o, "  %-34s p50 %llu  p95 %llu  p99 %llu  max %llu  (n %llu)\n", label,
      (unsigned long long)h->p50, (unsigned long long)h->p95, (unsigned long long)h->p99,
      (unsigned long long)h->max, (unsigned long long)h->count);
}

static void table_policy(out_t *o, const hak_stats_t *st) {
  if (!st->policy_adaptive) {
    put(o, "  %-34s fixed (delay %lld ms, batch %lld bytes)\n", "policy",
        hak_opt(PURGE_DELAY_MS), hak_opt(BATCH_BYTES));
    return;
  }
  put(o, "  %-34s adaptive, arm %d, %llu epochs scored\n", "policy", st->policy_arm,
      (unsigned long long)st->policy_epochs);
  put(o, "    %-4s %10s %12s %8s %16s %16s\n", "arm", "delay (ms)", "batch (MiB)", "epochs",
      "estimated us/s", "measured us/s");
  for (int a = 0; a < HAK_POLICY_ARMS; a++)
    put(o, "    %-4d %10llu %12llu %8llu %16.1f %16.1f%s\n", a, (unsigned long long)st->arm_delay_ms[a],
        (unsigned long long)(st->arm_batch_bytes[a] >> 20), (unsigned long long)st->arm_pulls[a],
        st->arm_cost[a], st->arm_cost_seen[a], a == st->policy_arm ? "  <- in force" : "");
  char huge[40] = "not measured: none reused";
  if (st->refault_ps_huge > 0) snprintf(huge, sizeof huge, "%.0f", st->refault_ps_huge);
  put(o, "    %-34s %.0f ps/byte (4 KiB pages %.0f: %.0f at start, %llu timed in the program; huge pages %s)\n",
      "refault cost (measured)", st->refault_ps, st->refault_ps_small, st->refault_ps_small_start,
      (unsigned long long)st->refault_samples, huge);
  put(o, "    %-34s %.0f ps/byte\n", "release cost (measured)", st->release_ps);
  put(o, "    %-34s %s after %llu pauses (us per pause: give back %.1f, hold %.1f)\n",
      "when the program goes quiet", st->pause_hold ? "hold" : "give back",
      (unsigned long long)st->policy_pauses, st->pause_cost_give_back, st->pause_cost_hold);
}

static void format_table(out_t *o, const hak_stats_t *st) {
  char pbuf[64];
  put(o, "hakmem stats (pid %d)\n", (int)getpid());
  if (st->forked_from) put(o, "  %-34s %d (counters since fork)\n", "forked from pid", st->forked_from);
  put(o, "  %-34s %s\n", "flush mode", hak_flush_mode_name((hak_flush_mode_t)st->flush_mode));
  put(o, "  %-34s %s\n", "flush mode requested", hak_flush_mode_name((hak_flush_mode_t)st->flush_mode_requested));
  put(o, "  %-34s %s\n", "advice", advice_name(st->advice));
  put(o, "  %-34s %s\n", "fallback reason", st->fallback_reason[0] ? st->fallback_reason : "-");
  put(o, "  %-34s %s\n", "purge thread", purge_state_name(st->purge_thread, pbuf, sizeof pbuf));
#define HAK_ROW_(name, kind, label)                                                          \
  put(o, "  %-34s %llu\n", label, (unsigned long long)st->name);                             \
  if (!strcmp(#name, "flush_syscalls"))                                                      \
    put(o, "  %-34s %.1f\n", "ranges per flush",                                             \
        st->flushes ? (double)st->ranges_flushed / (double)st->flushes : 0.0);
  HAK_STATS_FIELDS(HAK_ROW_)
#undef HAK_ROW_
  put(o, "  %-34s %.1f%%\n", "released, reused within 10 ms", reused_soon_pct(st));
#define HAK_HIST_ROW_(name, label) table_hist(o, label, &st->name);
  HAK_STATS_HISTOGRAMS(HAK_HIST_ROW_)
#undef HAK_HIST_ROW_
  table_policy(o, st);
}

static void format_json(out_t *o, const hak_stats_t *st) {
  put(o, "hakmem-stats: {\"pid\":%d,\"forked_from\":%d,\"flush_mode\":\"%s\",\"flush_mode_requested\":\"%s\","
      "\"advice\":\"%s\",\"fallback_reason\":\"%s\",\"fallback_errno\":%d,\"purge_thread\":%d",
      (int)getpid(), st->forked_from, hak_flush_mode_name((hak_flush_mode_t)st->flush_mode),
      hak_flush_mode_name((hak_flush_mode_t)st->flush_mode_requested), advice_name(st->advice),
      st->fallback_reason, st->fallback_errno, st->purge_thread);
#define HAK_KEY_(name, kind, label) put(o, ",\"%s\":%llu", #name, (unsigned long long)st->name);
  HAK_STATS_FIELDS(HAK_KEY_)
#undef HAK_KEY_
  put(o, ",\"reused_within_10ms_pct\":%.1f", reused_soon_pct(st));
#define HAK_HIST_KEY_(name, label)                                                              \
  put(o, ",\"%s\":{\"count\":%llu,\"p50\":%llu,\"p95\":%llu,\"p99\":%llu,\"max\":%llu}", #name, \
      (unsigned long long)st->name.count, (unsigned long long)st->name.p50,                       \
      (unsigned long long)st->name.p95, (unsigned long long)st->name.p99,                         \
      (unsigned long long)st->name.max);
  HAK_STATS_HISTOGRAMS(HAK_HIST_KEY_)
#undef HAK_HIST_KEY_
  put(o, ",\"policy\":\"%s\",\"policy_arm\":%d,\"policy_epochs\":%llu,\"arms\":[",
      st->policy_adaptive ? "adaptive" : "fixed", st->policy_arm,
      (unsigned long long)st->policy_epochs);
  for (int a = 0; a < HAK_POLICY_ARMS; a++)
    put(o, "%s{\"delay_ms\":%llu,\"batch_bytes\":%llu,\"epochs\":%llu,\"cost_us_per_s\":%.1f,"
        "\"cost_seen_us_per_s\":%.1f}",
        a ? "," : "", (unsigned long long)st->arm_delay_ms[a],
        (unsigned long long)st->arm_batch_bytes[a], (unsigned long long)st->arm_pulls[a],
        st->arm_cost[a], st->arm_cost_seen[a]);
  put(o, "],\"pause_rule\":\"%s\",\"pauses\":%llu,\"pause_cost_give_back_us\":%.1f,"
      "\"pause_cost_hold_us\":%.1f,\"refault_ps_per_byte\":%.1f,\"refault_ps_small\":%.1f,"
      "\"refault_ps_small_start\":%.1f,\"refault_ps_huge\":%.1f,\"release_ps_per_byte\":%.1f}\n",
      st->pause_hold ? "hold" : "give_back", (unsigned long long)st->policy_pauses,
      st->pause_cost_give_back, st->pause_cost_hold, st->refault_ps, st->refault_ps_small,
      st->refault_ps_small_start, st->refault_ps_huge, st->release_ps);
}

static void emit(int fd, const out_t *o) {
  for (size_t off = 0; off < o->len;) {
    ssize_t n = write(fd, o->buf + off, o->len - off);
    if (n <= 0) return;
    off += (size_t)n;
  }
}

/* One report, as a table or one JSON line, built on the caller's stack. */
static void write_report(int fd, bool json) {
  hak_stats_t st;
  hak_stats(&st);
  out_t o;
  o.len = 0;
  if (json) format_json(&o, &st);
  else format_table(&o, &st);
  emit(fd, &o);
}

void hak_stats_print(int fd) { write_report(fd, false); }

/* ---- where the report goes -------------------------------------------------*/

void _hak_stats_init(void) {
  if (!hak_opt(STATS)) return;
  struct stat st;
  if (fstat(2, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISCHR(st.st_mode))) return;
  ssize_t n = readlink("/proc/self/fd/2", stderr_at_start.path, sizeof stderr_at_start.path - 1);
  if (n <= 0 || stderr_at_start.path[0] != '/') return;
  stderr_at_start.path[n] = '\0';
  stderr_at_start.dev = st.st_dev;
  stderr_at_start.ino = st.st_ino;
  stderr_at_start.known = true;
}

/* HAKMEM_STATS_FILE with %p as the pid and %% as a percent sign. */
static bool expand(const char *pattern, char *out, size_t n) {
  size_t k = 0;
  for (const char *p = pattern; *p; p++) {
    char num[16];
    const char *piece = num;
    if (p[0] == '%' && p[1] == 'p') { snprintf(num, sizeof num, "%d", (int)getpid()); p++; }
    else if (p[0] == '%' && p[1] == '%') { num[0] = '%'; num[1] = '\0'; p++; }
    else { num[0] = *p; num[1] = '\0'; }
    size_t len = strlen(piece);
    if (k + len >= n) return false;
    memcpy(out + k, piece, len);
    k += len;
  }
  out[k] = '\0';
  return true;
}

/* stderr at exit, or the file it was at start if the program closed it. */
static int open_stderr_again(void) {
  if (fcntl(2, F_GETFD) >= 0) return 2;
  if (!stderr_at_start.known) return -1;
  int fd = open(stderr_at_start.path, O_WRONLY | O_APPEND | O_NOCTTY | O_CLOEXEC);
  struct stat st;
  if (fd >= 0 && (fstat(fd, &st) != 0 || st.st_dev != stderr_at_start.dev ||
                  st.st_ino != stderr_at_start.ino)) {
    close(fd);
    fd = -1;
  }
  return fd;
}

void _hak_stats_at_exit(void) {
  long long mode = hak_opt(STATS);
  if (!mode) return;
  char pattern[256], path[512];
  _hak_option_stats_file(pattern, sizeof pattern);
  int fd;
  if (pattern[0]) {
    fd = expand(pattern, path, sizeof path) ? open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
    if (fd < 0) {
      /* Children inherit the variable; one that dropped privileges may not
       * write there, and its stderr may be checked by its parent. */
      if (hak_opt(VERBOSE)) _hak_warn("cannot open HAKMEM_STATS_FILE %s\n", pattern);
      return;
    }
  } else {
    fd = open_stderr_again();
    if (fd < 0) return;
  }
  write_report(fd, mode == 2);
  if (fd != 2) close(fd);
}
