/* bench/vm: what vectored release saves, in perf's own terms.
 * Shared types of vm.c (options, orchestration), vm_run.c (the scenario),
 * vm_micro.c (the flush micro-benchmark) and vm_report.c (table, JSON, CSV). */
#ifndef BENCH_VM_H
#define BENCH_VM_H

#include <stddef.h>
#include <stdint.h>

#include "hakmem.h"
#include "hperf.h"

#define VM_MAX_MODES 3

typedef struct vm_config_s {
  int modes[VM_MAX_MODES];      /* hak_flush_mode_t, in the order given */
  int nmodes;
  int threads;
  size_t block_size;
  int blocks;                   /* per thread per iteration */
  int iters;
  int batch;                    /* HAKMEM_BATCH_MAX for the runs */
  int advice_free;              /* 0 dontneed, 1 free */
  int repeat;
  int quick;
  int perf;
  int micro;                    /* 0 no, 1 also, 2 only (subcommand) */
  int micro_rounds;
  const char *json, *csv;
  int progress;                 /* stderr is a terminal */
} vm_config_t;

typedef struct vm_latency_s {
  uint64_t n;                   /* frees that triggered a flush */
  double p50_us, p99_us, max_us;
} vm_latency_t;

typedef struct vm_run_s {
  int mode_requested, mode;     /* mode is what hak_stats says ran */
  char fallback[96];            /* why the library fell back, or "" */
  int rep;
  uint64_t ops;                 /* blocks allocated, touched and freed */
  double seconds, ns_per_op;
  uint64_t flush_calls, syscalls, ranges, flush_ns, cancelled, triggered;
  vm_latency_t lat;
  uint64_t rss_peak, rss_final; /* bytes */
  int have_perf;
  hperf_counts_t perf;
} vm_run_t;

typedef struct vm_micro_s {
  int mode;                     /* hak_flush_mode_t, or 0 for the floor */
  const char *name;
  int ok;
  char why[96];
  int rounds;
  double us_p50, us_min;        /* per batch */
  double syscalls;              /* per batch */
  int have_perf;
  hperf_counts_t perf;          /* summed over the rounds */
} vm_micro_t;

/* vm_run.c */
int vm_run_scenario(const vm_config_t *cfg, hperf_t *perf, int mode, int rep, vm_run_t *out,
                    int run_index, int run_total);
/* vm_micro.c */
int vm_run_micro(const vm_config_t *cfg, hperf_t *perf, vm_micro_t *out, int max);
/* vm_report.c */
void vm_print_table(const vm_config_t *cfg, const vm_run_t *runs, int nruns);
void vm_print_summary(const vm_config_t *cfg, const vm_run_t *runs, int nruns);
void vm_print_micro(const vm_config_t *cfg, const vm_micro_t *m, int n);
int vm_write_json(const vm_config_t *cfg, const char *path, const vm_run_t *runs, int nruns,
                  const vm_micro_t *micro, int nmicro, const char *perf_missing);
int vm_write_csv(const vm_config_t *cfg, const char *path, const vm_run_t *runs, int nruns);
const char *vm_mode_name(int mode);

#endif
