/* Statistics: counters for every release and OS operation, the table that
 * HAKMEM_STATS=1 prints at exit, and its one-line JSON twin (HAKMEM_STATS=json). */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

hak_counters_t hak_cnt;

#define LOAD(f) atomic_load_explicit(&hak_cnt.f, memory_order_relaxed)

void hak_stats(hak_stats_t *st) {
  hak_ensure_init();
  memset(st, 0, sizeof *st);
  st->ranges_added = LOAD(ranges_added);
  st->bytes_added = LOAD(bytes_added);
  st->ranges_flushed = LOAD(ranges_flushed);
  st->bytes_flushed = LOAD(bytes_flushed);
  st->ranges_cancelled = LOAD(ranges_cancelled);
  st->bytes_cancelled = LOAD(bytes_cancelled);
  st->ranges_dropped = LOAD(ranges_dropped);
  st->flushes = LOAD(flushes);
  st->flush_syscalls = LOAD(flush_syscalls);
  st->flush_ns = LOAD(flush_ns);
  st->flush_by_count = LOAD(flush_by_count);
  st->flush_by_bytes = LOAD(flush_by_bytes);
  st->flush_by_delay = LOAD(flush_by_delay);
  st->flush_explicit = LOAD(flush_explicit);
  st->flush_errors = LOAD(flush_errors);
  st->inflight_waits = LOAD(inflight_waits);
  st->fallbacks = LOAD(fallbacks);
  st->mmap_calls = LOAD(mmap_calls);
  st->munmap_calls = LOAD(munmap_calls);
  st->madvise_calls = LOAD(madvise_calls);
  st->process_madvise_calls = LOAD(process_madvise_calls);
  st->uring_enter_calls = LOAD(uring_enter_calls);
  st->bytes_mapped = LOAD(bytes_mapped);
  st->bytes_unmapped = LOAD(bytes_unmapped);
  st->bytes_mapped_now = st->bytes_mapped - st->bytes_unmapped;
  st->cache_hits = LOAD(cache_hits);
  st->cache_misses = LOAD(cache_misses);
  st->cache_evictions = LOAD(cache_evictions);
  st->alloc_large = LOAD(alloc_large);
  st->free_large = LOAD(free_large);
  st->free_remote = LOAD(free_remote_cnt);
  st->pages_released = LOAD(pages_released);
  st->segments_mapped = LOAD(segments_mapped);
  st->segments_unmapped = LOAD(segments_unmapped);
  hak_heap_sum_stats(st);
  hak_batch_fill_stats(st);
  hak_large_fill_stats(st);
}

/* Gauges (pending, mapped now, cache bytes) describe the present: kept. */
void hak_stats_reset(void) {
  hak_ensure_init();
  uint64_t mapped_now = LOAD(bytes_mapped) - LOAD(bytes_unmapped);
  _Atomic uint64_t *f = (_Atomic uint64_t *)&hak_cnt;
  for (size_t i = 0; i < sizeof hak_cnt / sizeof *f; i++) atomic_store(&f[i], 0);
  atomic_store(&hak_cnt.bytes_mapped, mapped_now);
  hak_heap_reset_stats();
}

/* ---- printing --------------------------------------------------------------*/

typedef struct { char buf[8192]; size_t len; } out_t;

static void put(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out_t *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(o->buf + o->len, sizeof o->buf - o->len, fmt, ap);
  va_end(ap);
  if (n > 0) o->len += (size_t)n < sizeof o->buf - o->len ? (size_t)n : sizeof o->buf - o->len - 1;
}

static void emit(int fd, const out_t *o) {
  for (size_t off = 0; off < o->len;) {
    ssize_t n = write(fd, o->buf + off, o->len - off);
    if (n <= 0) return;
    off += (size_t)n;
  }
}

static const char *advice_name(int advice) { return advice == MADV_FREE ? "free" : "dontneed"; }

typedef struct { const char *key, *label; uint64_t value; } row_t;

#define ROWS(st) { \
  {"ranges_added", "ranges added", st->ranges_added}, \
  {"bytes_added", "bytes added", st->bytes_added}, \
  {"ranges_flushed", "ranges flushed", st->ranges_flushed}, \
  {"bytes_flushed", "bytes flushed", st->bytes_flushed}, \
  {"ranges_cancelled", "ranges cancelled (reused)", st->ranges_cancelled}, \
  {"bytes_cancelled", "bytes cancelled", st->bytes_cancelled}, \
  {"ranges_dropped", "ranges dropped", st->ranges_dropped}, \
  {"flushes", "flushes", st->flushes}, \
  {"flush_syscalls", "flush syscalls", st->flush_syscalls}, \
  {"flush_ns", "flush time (ns)", st->flush_ns}, \
  {"flush_by_count", "  by count", st->flush_by_count}, \
  {"flush_by_bytes", "  by bytes", st->flush_by_bytes}, \
  {"flush_by_delay", "  by delay", st->flush_by_delay}, \
  {"flush_explicit", "  explicit/exit", st->flush_explicit}, \
  {"flush_errors", "flush errors", st->flush_errors}, \
  {"pending_ranges", "pending ranges", st->pending_ranges}, \
  {"pending_bytes", "pending bytes", st->pending_bytes}, \
  {"inflight_waits", "waits for a flush", st->inflight_waits}, \
  {"fallbacks", "fallbacks", st->fallbacks}, \
  {"mmap_calls", "mmap calls", st->mmap_calls}, \
  {"munmap_calls", "munmap calls", st->munmap_calls}, \
  {"madvise_calls", "madvise calls", st->madvise_calls}, \
  {"process_madvise_calls", "process_madvise calls", st->process_madvise_calls}, \
  {"uring_enter_calls", "io_uring_enter calls", st->uring_enter_calls}, \
  {"bytes_mapped", "bytes mapped", st->bytes_mapped}, \
  {"bytes_unmapped", "bytes unmapped", st->bytes_unmapped}, \
  {"bytes_mapped_now", "bytes mapped now", st->bytes_mapped_now}, \
  {"cache_hits", "cache hits", st->cache_hits}, \
  {"cache_misses", "cache misses", st->cache_misses}, \
  {"cache_evictions", "cache evictions", st->cache_evictions}, \
  {"cache_bytes", "cache bytes", st->cache_bytes}, \
  {"alloc_small", "allocs small", st->alloc_small}, \
  {"alloc_large", "allocs large", st->alloc_large}, \
  {"free_small", "frees small (local)", st->free_small}, \
  {"free_remote", "frees small (remote)", st->free_remote}, \
  {"free_large", "frees large", st->free_large}, \
  {"pages_released", "pages released", st->pages_released}, \
  {"segments_mapped", "segments mapped", st->segments_mapped}, \
  {"segments_unmapped", "segments unmapped", st->segments_unmapped}, \
}

static void format_table(out_t *o, const hak_stats_t *st) {
  row_t rows[] = ROWS(st);
  put(o, "hakmem stats (pid %d)\n", (int)getpid());
  put(o, "  %-28s %s\n", "flush mode", hak_flush_mode_name((hak_flush_mode_t)st->flush_mode));
  put(o, "  %-28s %s\n", "flush mode requested", hak_flush_mode_name((hak_flush_mode_t)st->flush_mode_requested));
  put(o, "  %-28s %s\n", "advice", advice_name(st->advice));
  put(o, "  %-28s %s\n", "fallback reason", st->fallback_reason[0] ? st->fallback_reason : "-");
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    put(o, "  %-28s %llu\n", rows[i].label, (unsigned long long)rows[i].value);
    if (!strcmp(rows[i].key, "flush_syscalls"))
      put(o, "  %-28s %.1f\n", "ranges per flush",
          st->flushes ? (double)st->ranges_flushed / (double)st->flushes : 0.0);
  }
}

static void format_json(out_t *o, const hak_stats_t *st) {
  row_t rows[] = ROWS(st);
  put(o, "hakmem-stats: {\"pid\":%d,\"flush_mode\":\"%s\",\"flush_mode_requested\":\"%s\","
      "\"advice\":\"%s\",\"fallback_reason\":\"%s\",\"fallback_errno\":%d",
      (int)getpid(), hak_flush_mode_name((hak_flush_mode_t)st->flush_mode),
      hak_flush_mode_name((hak_flush_mode_t)st->flush_mode_requested), advice_name(st->advice),
      st->fallback_reason, st->fallback_errno);
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
    put(o, ",\"%s\":%llu", rows[i].key, (unsigned long long)rows[i].value);
  put(o, "}\n");
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

/* Programs like ls close stderr before exit: keep our own copy of it. */
static int report_fd = 2;

void hak_stats_init(void) {
  if (hak_opt.stats && !hak_opt.stats_file[0]) {
    int fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
    if (fd >= 0) report_fd = fd;
  }
}

void hak_stats_at_exit(void) {
  if (!hak_opt.stats) return;
  int fd = report_fd;
  if (hak_opt.stats_file[0]) {
    fd = open(hak_opt.stats_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) { hak_warn("cannot open HAKMEM_STATS_FILE %s\n", hak_opt.stats_file); fd = 2; }
  }
  write_report(fd, hak_opt.stats == 2);
  if (fd != report_fd && fd != 2) close(fd);
}
