/* bench/vm's machine-readable output: JSON (an object with "kernel",
 * "config", "runs" and "micro") and CSV (one line per run). An event that was
 * not counted is null in JSON and an empty field in CSV, never 0. */
#include "vm.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

/* ---- JSON ------------------------------------------------------------------*/
static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
    else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
    else fputc(*s, f);
  }
  fputc('"', f);
}

static void json_num(FILE *f, double v) {
  if (isfinite(v)) fprintf(f, "%.3f", v);
  else fputs("null", f);
}

static void json_events(FILE *f, const hperf_counts_t *c, int have) {
  fputs("\"events\": {", f);
  for (int ev = 0; ev < HPERF_EVENT_COUNT; ev++) {
    if (ev >= HPERF_TLB_REASON_FIRST && ev <= HPERF_TLB_REASON_LAST) continue;
    fprintf(f, "%s", ev ? ", " : "");
    json_str(f, hperf_event_name(ev));
    fputs(": ", f);
    if (have) hperf_json_value(f, &c->ev[ev]); else fputs("null", f);
  }
  fputs("}, \"tlb_flush_by_reason\": {", f);
  for (int ev = HPERF_TLB_REASON_FIRST; ev <= HPERF_TLB_REASON_LAST; ev++) {
    fprintf(f, "%s\"%s\": ", ev == HPERF_TLB_REASON_FIRST ? "" : ", ", hperf_event_key(ev));
    if (have) hperf_json_value(f, &c->ev[ev]); else fputs("null", f);
  }
  fputs("}, \"tlb_samples\": ", f);
  if (have) fprintf(f, "%llu", (unsigned long long)c->tlb_samples); else fputs("null", f);
  fputs(", \"tlb_lost_samples\": ", f);
  if (have) fprintf(f, "%llu", (unsigned long long)c->tlb_lost); else fputs("null", f);
}

static void json_run(FILE *f, const vm_run_t *r) {
  fputs("    {\"flush\": ", f);
  json_str(f, vm_mode_name(r->mode_requested));
  fputs(", \"flush_used\": ", f);
  json_str(f, vm_mode_name(r->mode));
  fputs(", \"fallback\": ", f);
  json_str(f, r->fallback);
  fprintf(f, ", \"repetition\": %d, \"ops\": %llu, \"seconds\": ", r->rep, (unsigned long long)r->ops);
  json_num(f, r->seconds);
  fputs(", \"ns_per_op\": ", f);
  json_num(f, r->ns_per_op);
  fprintf(f, ", \"flush_calls\": %llu, \"syscalls\": %llu, \"ranges\": %llu, \"ranges_per_flush\": ",
          (unsigned long long)r->flush_calls, (unsigned long long)r->syscalls,
          (unsigned long long)r->ranges);
  json_num(f, r->flush_calls ? (double)r->ranges / (double)r->flush_calls : 0);
  fprintf(f, ", \"flush_ns\": %llu, \"ranges_cancelled\": %llu, \"flush_free_latency_us\": ",
          (unsigned long long)r->flush_ns, (unsigned long long)r->cancelled);
  if (r->lat.n) {
    fprintf(f, "{\"n\": %llu, \"p50\": ", (unsigned long long)r->lat.n);
    json_num(f, r->lat.p50_us);
    fputs(", \"p99\": ", f);
    json_num(f, r->lat.p99_us);
    fputs(", \"max\": ", f);
    json_num(f, r->lat.max_us);
    fputs("}", f);
  } else {
    fputs("null", f);
  }
  fprintf(f, ", \"rss_peak_bytes\": %llu, \"rss_final_bytes\": %llu, \"tlb_flush_per_flush_call\": ",
          (unsigned long long)r->rss_peak, (unsigned long long)r->rss_final);
  if (r->have_perf && r->perf.ev[HPERF_TLB_FLUSH].state == HPERF_COUNTED && r->flush_calls)
    json_num(f, (double)r->perf.ev[HPERF_TLB_FLUSH].value / (double)r->flush_calls);
  else
    fputs("null", f);
  fputs(", ", f);
  json_events(f, &r->perf, r->have_perf);
  fputs("}", f);
}

static void json_micro(FILE *f, const vm_micro_t *m) {
  fputs("    {\"flush\": ", f);
  json_str(f, m->name);
  fprintf(f, ", \"ok\": %s, \"why\": ", m->ok ? "true" : "false");
  json_str(f, m->why);
  fprintf(f, ", \"ranges\": %d, \"range_bytes\": %u, \"rounds\": %d, \"us_p50\": ",
          m->mode ? 256 : 1, m->mode ? (64u << 10) : (16u << 20), m->rounds);
  json_num(f, m->us_p50);
  fputs(", \"us_min\": ", f);
  json_num(f, m->us_min);
  fputs(", \"syscalls_per_batch\": ", f);
  json_num(f, m->syscalls);
  fputs(", ", f);
  json_events(f, &m->perf, m->have_perf);
  fputs("}", f);
}

int vm_write_json(const vm_config_t *cfg, const char *path, const vm_run_t *runs, int nruns,
                  const vm_micro_t *micro, int nmicro, const char *perf_missing) {
  FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
  struct utsname u;
  if (!f) return -1;
  uname(&u);
  fputs("{\n  \"kernel\": ", f);
  json_str(f, u.release);
  fputs(",\n  \"config\": {\"flush\": [", f);
  for (int m = 0; m < cfg->nmodes; m++) {
    fputs(m ? ", " : "", f);
    json_str(f, vm_mode_name(cfg->modes[m]));
  }
  fprintf(f, "], \"threads\": %d, \"block_size\": %zu, \"blocks\": %d, \"iters\": %d, "
             "\"batch\": %d, \"advice\": \"%s\", \"repeat\": %d, \"quick\": %s, \"perf\": %s, "
             "\"purge_delay_ms\": -1, \"hakmem_version\": \"%s\"},\n",
          cfg->threads, cfg->block_size, cfg->blocks, cfg->iters, cfg->batch,
          cfg->advice_free ? "free" : "dontneed", cfg->repeat, cfg->quick ? "true" : "false",
          cfg->perf ? "true" : "false", HAKMEM_VERSION);
  fputs("  \"perf_missing\": ", f);
  json_str(f, perf_missing ? perf_missing : "");
  fputs(",\n  \"runs\": [\n", f);
  for (int i = 0; i < nruns; i++) {
    json_run(f, &runs[i]);
    fputs(i + 1 < nruns ? ",\n" : "\n", f);
  }
  fputs("  ],\n  \"micro\": [\n", f);
  for (int i = 0; i < nmicro; i++) {
    json_micro(f, &micro[i]);
    fputs(i + 1 < nmicro ? ",\n" : "\n", f);
  }
  fputs("  ]\n}\n", f);
  return f == stdout ? fflush(f) : fclose(f);
}

/* ---- CSV: one line per run, events by key, empty when not counted ----------*/
int vm_write_csv(const vm_config_t *cfg, const char *path, const vm_run_t *runs, int nruns) {
  FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
  (void)cfg;
  if (!f) return -1;
  fputs("flush,flush_used,repetition,ops,seconds,ns_per_op,flush_calls,syscalls,ranges,"
        "flush_ns,ranges_cancelled,flush_free_n,flush_free_p50_us,flush_free_p99_us,"
        "flush_free_max_us,rss_peak_bytes,rss_final_bytes", f);
  for (int ev = 0; ev < HPERF_EVENT_COUNT; ev++) fprintf(f, ",%s", hperf_event_key(ev));
  fputs(",tlb_samples,tlb_lost_samples\n", f);
  for (int i = 0; i < nruns; i++) {
    const vm_run_t *r = &runs[i];
    fprintf(f, "%s,%s,%d,%llu,%.6f,%.1f,%llu,%llu,%llu,%llu,%llu,%llu,%.1f,%.1f,%.1f,%llu,%llu",
            vm_mode_name(r->mode_requested), vm_mode_name(r->mode), r->rep,
            (unsigned long long)r->ops, r->seconds, r->ns_per_op,
            (unsigned long long)r->flush_calls, (unsigned long long)r->syscalls,
            (unsigned long long)r->ranges, (unsigned long long)r->flush_ns,
            (unsigned long long)r->cancelled, (unsigned long long)r->lat.n, r->lat.p50_us,
            r->lat.p99_us, r->lat.max_us, (unsigned long long)r->rss_peak,
            (unsigned long long)r->rss_final);
    for (int ev = 0; ev < HPERF_EVENT_COUNT; ev++) {
      if (r->have_perf && r->perf.ev[ev].state == HPERF_COUNTED)
        fprintf(f, ",%llu", (unsigned long long)r->perf.ev[ev].value);
      else
        fputs(",", f);
    }
    if (r->have_perf)
      fprintf(f, ",%llu,%llu\n", (unsigned long long)r->perf.tlb_samples,
              (unsigned long long)r->perf.tlb_lost);
    else
      fputs(",,\n", f);
  }
  return f == stdout ? fflush(f) : fclose(f);
}
