/* bench/vm's output for people: the table (a column per mode, medians over
 * the repetitions, ratio columns against loop), the summary lines and the
 * micro-benchmark table. An event that was not counted is "not supported" or
 * "not permitted", never 0. JSON and CSV are in vm_json.c. */
#include "vm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *vm_mode_name(int mode) {
  return mode == 0 ? "floor" : hak_flush_mode_name((hak_flush_mode_t)mode);
}

/* ---- one value of a run ---------------------------------------------------*/
typedef struct cell_s {
  int state;          /* hperf_state_t; -1: no perf (not asked for) */
  double v;
} cell_t;

typedef cell_t (*getter_t)(const vm_run_t *r, int arg);

static cell_t ok(double v) { return (cell_t){HPERF_COUNTED, v}; }

static cell_t event(const vm_run_t *r, int ev) {
  if (!r->have_perf) return (cell_t){-1, 0};
  const hperf_value_t *v = &r->perf.ev[ev];
  return (cell_t){v->state, (double)v->value};
}

static cell_t g_nsop(const vm_run_t *r, int a) { (void)a; return ok(r->ns_per_op); }
static cell_t g_lat(const vm_run_t *r, int a) {
  if (!r->lat.n) return (cell_t){HPERF_NOT_SUPPORTED, 0};
  return ok(a == 0 ? r->lat.p50_us : a == 1 ? r->lat.p99_us : r->lat.max_us);
}
static cell_t g_flushes(const vm_run_t *r, int a) { (void)a; return ok((double)r->flush_calls); }
static cell_t g_syscalls(const vm_run_t *r, int a) { (void)a; return ok((double)r->syscalls); }
static cell_t g_ranges(const vm_run_t *r, int a) { (void)a; return ok((double)r->ranges); }
static cell_t g_rpf(const vm_run_t *r, int a) {
  (void)a;
  return ok(r->flush_calls ? (double)r->ranges / (double)r->flush_calls : 0);
}
static cell_t g_flush_ms(const vm_run_t *r, int a) { (void)a; return ok((double)r->flush_ns / 1e6); }
static cell_t g_event(const vm_run_t *r, int ev) { return event(r, ev); }
static cell_t g_per_flush(const vm_run_t *r, int ev) {
  cell_t c = event(r, ev);
  if (c.state == HPERF_COUNTED) c.v = r->flush_calls ? c.v / (double)r->flush_calls : 0;
  return c;
}
static cell_t g_task_ms(const vm_run_t *r, int ev) {
  cell_t c = event(r, ev);
  c.v /= 1e6;
  return c;
}
static cell_t g_rss(const vm_run_t *r, int a) {
  return ok((double)(a ? r->rss_final : r->rss_peak) / (1024.0 * 1024.0));
}

typedef struct row_s {
  const char *label;
  getter_t get;
  int arg;
  int decimals;
  int perf;           /* shown only with --perf */
} row_t;

static const row_t rows[] = {
  {"time per op (ns)", g_nsop, 0, 0, 0},
  {"flush free p50 (us)", g_lat, 0, 1, 0},
  {"flush free p99 (us)", g_lat, 1, 1, 0},
  {"flush free max (us)", g_lat, 2, 1, 0},
  {"flush calls", g_flushes, 0, 0, 0},
  {"flush syscalls", g_syscalls, 0, 0, 0},
  {"ranges flushed", g_ranges, 0, 0, 0},
  {"ranges per flush", g_rpf, 0, 1, 0},
  {"time in flush (ms)", g_flush_ms, 0, 2, 0},
  {"tlb:tlb_flush", g_event, HPERF_TLB_FLUSH, 0, 1},
  {"  local MM shootdown", g_event, HPERF_TLB_LOCAL_MM, 0, 1},
  {"  remote IPI send", g_event, HPERF_TLB_REMOTE_SEND_IPI, 0, 1},
  {"  remote shootdown received", g_event, HPERF_TLB_REMOTE_SHOOTDOWN, 0, 1},
  {"  flush on task switch", g_event, HPERF_TLB_TASK_SWITCH, 0, 1},
  {"  other reasons", g_event, HPERF_TLB_OTHER, 0, 1},
  {"tlb:tlb_flush per flush call", g_per_flush, HPERF_TLB_FLUSH, 1, 1},
  {"dTLB-load-misses", g_event, HPERF_DTLB_LOAD_MISSES, 0, 1},
  {"dTLB-store-misses", g_event, HPERF_DTLB_STORE_MISSES, 0, 1},
  {"page-faults", g_event, HPERF_PAGE_FAULTS, 0, 1},
  {"  minor-faults", g_event, HPERF_MINOR_FAULTS, 0, 1},
  {"  major-faults", g_event, HPERF_MAJOR_FAULTS, 0, 1},
  {"context-switches", g_event, HPERF_CONTEXT_SWITCHES, 0, 1},
  {"cpu-migrations", g_event, HPERF_CPU_MIGRATIONS, 0, 1},
  {"task-clock (ms)", g_task_ms, HPERF_TASK_CLOCK, 1, 1},
  {"syscalls: madvise", g_event, HPERF_SYS_MADVISE, 0, 1},
  {"syscalls: process_madvise", g_event, HPERF_SYS_PROCESS_MADVISE, 0, 1},
  {"syscalls: io_uring_enter", g_event, HPERF_SYS_IO_URING_ENTER, 0, 1},
  {"peak RSS (MiB)", g_rss, 0, 1, 0},
  {"final RSS (MiB)", g_rss, 1, 1, 0},
};
#define NROWS (int)(sizeof rows / sizeof rows[0])

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Median over the repetitions of one mode; not counted if any run was not. */
static cell_t median(const vm_run_t *runs, int n, int mode, const row_t *row) {
  double v[256];
  int k = 0;
  for (int i = 0; i < n && k < 256; i++) {
    if (runs[i].mode_requested != mode) continue;
    cell_t c = row->get(&runs[i], row->arg);
    if (c.state != HPERF_COUNTED) return c;
    v[k++] = c.v;
  }
  if (!k) return (cell_t){HPERF_NOT_SUPPORTED, 0};
  qsort(v, (size_t)k, sizeof v[0], cmp_d);
  return ok(k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2);
}

static void fmt_cell(char *buf, size_t n, cell_t c, int decimals) {
  if (c.state == HPERF_NOT_SUPPORTED) snprintf(buf, n, "not supported");
  else if (c.state == HPERF_NOT_PERMITTED) snprintf(buf, n, "not permitted");
  else if (c.state != HPERF_COUNTED) snprintf(buf, n, "-");
  else snprintf(buf, n, "%.*f", decimals, c.v);
}

static void fmt_ratio(char *buf, size_t n, cell_t base, cell_t c) {
  if (base.state != HPERF_COUNTED || c.state != HPERF_COUNTED) snprintf(buf, n, "-");
  else if (c.v == 0 && base.v == 0) snprintf(buf, n, "=");
  else if (c.v == 0) snprintf(buf, n, "inf");
  else snprintf(buf, n, "%.2fx", base.v / c.v);
}

/* The baseline of the ratio columns: loop when it ran, else the first mode. */
static int baseline(const vm_config_t *cfg) {
  for (int i = 0; i < cfg->nmodes; i++)
    if (cfg->modes[i] == HAK_FLUSH_LOOP) return HAK_FLUSH_LOOP;
  return cfg->modes[0];
}

static const vm_run_t *first_run(const vm_run_t *runs, int n, int mode) {
  for (int i = 0; i < n; i++)
    if (runs[i].mode_requested == mode) return &runs[i];
  return NULL;
}

void vm_print_table(const vm_config_t *cfg, const vm_run_t *runs, int nruns) {
  int base = baseline(cfg);
  char buf[48];
  printf("%-30s", "metric (median of runs)");
  for (int m = 0; m < cfg->nmodes; m++) printf(" %15s", vm_mode_name(cfg->modes[m]));
  for (int m = 0; m < cfg->nmodes; m++)
    if (cfg->modes[m] != base) {
      snprintf(buf, sizeof buf, "%s/%s", vm_mode_name(base), vm_mode_name(cfg->modes[m]));
      printf(" %13s", buf);
    }
  printf("\n");
  for (int i = 0; i < NROWS; i++) {
    if (rows[i].perf && !cfg->perf) continue;
    printf("%-30s", rows[i].label);
    for (int m = 0; m < cfg->nmodes; m++) {
      fmt_cell(buf, sizeof buf, median(runs, nruns, cfg->modes[m], &rows[i]), rows[i].decimals);
      printf(" %15s", buf);
    }
    cell_t b = median(runs, nruns, base, &rows[i]);
    for (int m = 0; m < cfg->nmodes; m++) {
      if (cfg->modes[m] == base) continue;
      fmt_ratio(buf, sizeof buf, b, median(runs, nruns, cfg->modes[m], &rows[i]));
      printf(" %13s", buf);
    }
    printf("\n");
  }
  for (int m = 0; m < cfg->nmodes; m++) {
    const vm_run_t *r = first_run(runs, nruns, cfg->modes[m]);
    if (r && r->mode != r->mode_requested)
      printf("note: %s ran as %s (the library fell back: %s)\n", vm_mode_name(r->mode_requested),
             vm_mode_name(r->mode), r->fallback[0] ? r->fallback : "no reason given");
    for (int i = 0; r && i < nruns; i++)
      if (runs[i].have_perf && runs[i].perf.tlb_lost)
        printf("warning: %s repetition %d lost %llu tlb:tlb_flush samples: its by-reason split is a lower bound\n",
               vm_mode_name(runs[i].mode_requested), runs[i].rep,
               (unsigned long long)runs[i].perf.tlb_lost);
  }
}

/* "256x fewer" / "1.3x more": base over other, said the right way round. */
static int say_ratio(char *buf, size_t n, cell_t b, cell_t c, const char *less, const char *more,
                     const char *what) {
  if (b.state != HPERF_COUNTED || c.state != HPERF_COUNTED || b.v <= 0 || c.v < 0) return 0;
  if (c.v == 0) return snprintf(buf, n, "no %s (loop: %.0f)", what, b.v);
  double r = b.v / c.v;
  if (r > 0.95 && r < 1.05) return snprintf(buf, n, "about the same %s", what);
  if (r >= 1) return snprintf(buf, n, "%.*fx %s %s", r >= 10 ? 0 : 1, r, less, what);
  return snprintf(buf, n, "%.*fx %s %s", 1 / r >= 10 ? 0 : 1, 1 / r, more, what);
}

void vm_print_summary(const vm_config_t *cfg, const vm_run_t *runs, int nruns) {
  static const row_t per_flush = {"", g_per_flush, HPERF_TLB_FLUSH, 0, 1};
  static const row_t flush_ms = {"", g_flush_ms, 0, 0, 0};
  static const row_t nsop = {"", g_nsop, 0, 0, 0};
  static const row_t sys = {"", g_syscalls, 0, 0, 0};
  static const row_t p99 = {"", g_lat, 1, 0, 0};
  int base = baseline(cfg);
  for (int m = 0; m < cfg->nmodes; m++) {
    int mode = cfg->modes[m];
    if (mode == base) continue;
    char parts[5][96] = {{0}};
    const row_t *r[5] = {&per_flush, &flush_ms, &sys, &p99, &nsop};
    const char *what[5] = {"TLB flushes per flush call", "time in flush", "flush syscalls",
                           "p99 flush-free latency", "time per op"};
    const char *less[5] = {"fewer", "less", "fewer", "lower", "less"};
    const char *more[5] = {"more", "more", "more", "higher", "more"};
    /* A mode that fell back ran as another: its ratios would compare a
     * backend with itself, or with the wrong one. */
    const vm_run_t *rb = first_run(runs, nruns, base), *rm = first_run(runs, nruns, mode);
    if (rb && rm && (rb->mode != rb->mode_requested || rm->mode != rm->mode_requested)) {
      printf("%s vs %s: comparison void: they ran as %s and %s (%s)\n", vm_mode_name(mode),
             vm_mode_name(base), vm_mode_name(rm->mode), vm_mode_name(rb->mode),
             rm->fallback[0] ? rm->fallback : rb->fallback[0] ? rb->fallback : "fell back");
      continue;
    }
    /* One line per key metric, so that a script can grep the one it wants. */
    for (int i = 0; i < 5; i++) {
      if (r[i]->perf && !cfg->perf) continue;
      if (!say_ratio(parts[i], sizeof parts[i], median(runs, nruns, base, r[i]),
                     median(runs, nruns, mode, r[i]), less[i], more[i], what[i])) continue;
      printf("%s vs %s: %s\n", vm_mode_name(mode), vm_mode_name(base), parts[i]);
    }
  }
}

void vm_print_micro(const vm_config_t *cfg, const vm_micro_t *m, int n) {
  printf("\nflush micro-benchmark: one batch of 256 x 64 KiB ranges (%d rounds, %d spinning sibling thread%s)\n",
         cfg->micro_rounds, cfg->threads - 1, cfg->threads == 2 ? "" : "s");
  printf("%-8s %12s %12s %10s %16s %14s %14s\n", "mode", "p50 (us)", "min (us)", "syscalls",
         "tlb_flush/batch", "local MM", "IPI send");
  for (int i = 0; i < n; i++) {
    if (!m[i].ok) { printf("%-8s not run: %s\n", m[i].name, m[i].why); continue; }
    char tl[3][32];
    const int ev[3] = {HPERF_TLB_FLUSH, HPERF_TLB_LOCAL_MM, HPERF_TLB_REMOTE_SEND_IPI};
    for (int k = 0; k < 3; k++) {
      const hperf_value_t *v = &m[i].perf.ev[ev[k]];
      if (!m[i].have_perf) snprintf(tl[k], sizeof tl[k], "-");
      else if (v->state != HPERF_COUNTED) snprintf(tl[k], sizeof tl[k], "%s", hperf_state_name(v->state));
      else snprintf(tl[k], sizeof tl[k], "%.1f", (double)v->value / m[i].rounds);
    }
    printf("%-8s %12.1f %12.1f %10.0f %16s %14s %14s\n", m[i].name, m[i].us_p50, m[i].us_min,
           m[i].syscalls, tl[0], tl[1], tl[2]);
  }
}
