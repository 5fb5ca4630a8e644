/* bench/vm: the headline benchmark. Runs the VM scenario (large blocks
 * allocated, touched and freed by every thread, released through hakmem's
 * batch) once per flush mode and repetition, interleaved, and shows what each
 * mode costs in perf's own terms. See .readme-parts/perf.md. */
#include "vm.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <unistd.h>

static void usage(FILE *f) {
  fputs(
    "usage: bench/vm [micro] [options]\n"
    "Runs the VM scenario once per flush mode and repetition (interleaved) and prints\n"
    "one table with a column per mode, ratio columns against loop, and summary lines.\n"
    "  micro             run only the flush micro-benchmark (256 x 64 KiB ranges)\n"
    "  --perf            count perf events (tlb:tlb_flush by reason, faults, syscalls...)\n"
    "  --flush=LIST      modes to compare: loop,vector,uring or all (default loop,vector)\n"
    "  --threads N       threads (default: the number of CPUs)\n"
    "  --block-size S    size of a block, k/M/G suffixes (default 2M)\n"
    "  --blocks N        blocks per thread per iteration (default: batch / threads)\n"
    "  --iters N         iterations per run (default 40; --quick: 8)\n"
    "  --batch N         ranges per flush, HAKMEM_BATCH_MAX (default 256)\n"
    "  --advice A        dontneed or free (default dontneed)\n"
    "  --repeat N        repetitions per mode (default 3; --quick: 1)\n"
    "  --micro           also run the flush micro-benchmark after the scenario\n"
    "  --quick           a short run (under 10 s), for tests\n"
    "  --json FILE       write every run as JSON (- for stdout)\n"
    "  --csv FILE        write every run as CSV (- for stdout)\n"
    "  --help            this text\n", f);
}

static long parse_num(const char *opt, const char *s, long min, long max) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max) {
    fprintf(stderr, "vm: %s: expected a number in %ld..%ld, got '%s'\n", opt, min, max, s);
    exit(2);
  }
  return v;
}

static size_t parse_size(const char *s) {
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  unsigned long long mul = 1;
  switch (*end) {
  case 'k': case 'K': mul = 1ull << 10; end++; break;
  case 'm': case 'M': mul = 1ull << 20; end++; break;
  case 'g': case 'G': mul = 1ull << 30; end++; break;
  }
  if (end == s || (*end && strcasecmp(end, "ib") && strcasecmp(end, "b")) || v == 0 ||
      v * mul < 4096) {
    fprintf(stderr, "vm: --block-size: expected a size of at least 4k, got '%s'\n", s);
    exit(2);
  }
  return (size_t)(v * mul);
}

static void parse_flush(vm_config_t *c, const char *list) {
  char buf[128];
  snprintf(buf, sizeof buf, "%s", list);
  c->nmodes = 0;
  if (!strcmp(buf, "all")) snprintf(buf, sizeof buf, "loop,vector,uring");
  for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    int m = !strcmp(t, "loop") ? HAK_FLUSH_LOOP : !strcmp(t, "vector") ? HAK_FLUSH_VECTOR
          : !strcmp(t, "uring") ? HAK_FLUSH_URING : -1;
    if (m < 0 || c->nmodes == VM_MAX_MODES) {
      fprintf(stderr, "vm: --flush: modes are loop, vector, uring or all; got '%s'\n", t);
      exit(2);
    }
    c->modes[c->nmodes++] = m;
  }
  if (!c->nmodes) { fprintf(stderr, "vm: --flush: empty list\n"); exit(2); }
}

static void parse_args(vm_config_t *c, int argc, char **argv) {
  enum { O_PERF = 256, O_FLUSH, O_THREADS, O_BSIZE, O_BLOCKS, O_ITERS, O_BATCH, O_ADVICE,
         O_REPEAT, O_QUICK, O_JSON, O_CSV, O_MICRO };
  static const struct option opts[] = {
    {"perf", no_argument, 0, O_PERF}, {"flush", required_argument, 0, O_FLUSH},
    {"threads", required_argument, 0, O_THREADS}, {"block-size", required_argument, 0, O_BSIZE},
    {"blocks", required_argument, 0, O_BLOCKS}, {"iters", required_argument, 0, O_ITERS},
    {"batch", required_argument, 0, O_BATCH}, {"advice", required_argument, 0, O_ADVICE},
    {"repeat", required_argument, 0, O_REPEAT}, {"quick", no_argument, 0, O_QUICK},
    {"json", required_argument, 0, O_JSON}, {"csv", required_argument, 0, O_CSV},
    {"micro", no_argument, 0, O_MICRO}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  int iters = -1, repeat = -1, o;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  *c = (vm_config_t){.modes = {HAK_FLUSH_LOOP, HAK_FLUSH_VECTOR}, .nmodes = 2,
                     .threads = ncpu > 0 ? (int)ncpu : 1, .block_size = 2u << 20, .batch = 256,
                     .micro_rounds = 20, .progress = isatty(2)};
  if (argc > 1 && !strcmp(argv[1], "micro")) { c->micro = 2; argv[1] = argv[0]; argc--; argv++; }
  while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (o) {
    case O_PERF: c->perf = 1; break;
    case O_FLUSH: parse_flush(c, optarg); break;
    case O_THREADS: c->threads = (int)parse_num("--threads", optarg, 1, 1024); break;
    case O_BSIZE: c->block_size = parse_size(optarg); break;
    case O_BLOCKS: c->blocks = (int)parse_num("--blocks", optarg, 1, 1 << 20); break;
    case O_ITERS: iters = (int)parse_num("--iters", optarg, 1, 1 << 24); break;
    case O_BATCH: c->batch = (int)parse_num("--batch", optarg, 1, 1024); break;
    case O_ADVICE:
      if (strcmp(optarg, "dontneed") && strcmp(optarg, "free")) {
        fprintf(stderr, "vm: --advice: dontneed or free, got '%s'\n", optarg);
        exit(2);
      }
      c->advice_free = !strcmp(optarg, "free");
      break;
    case O_REPEAT: repeat = (int)parse_num("--repeat", optarg, 1, 1000); break;
    case O_QUICK: c->quick = 1; break;
    case O_JSON: c->json = optarg; break;
    case O_CSV: c->csv = optarg; break;
    case O_MICRO: if (!c->micro) c->micro = 1; break;
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); exit(2);
    }
  }
  if (optind < argc) { fprintf(stderr, "vm: unexpected argument '%s'\n", argv[optind]); exit(2); }
  c->iters = iters > 0 ? iters : c->quick ? 8 : 40;
  c->repeat = repeat > 0 ? repeat : c->quick ? 1 : 3;
  if (c->quick) c->micro_rounds = 5;
  if (!c->blocks) c->blocks = (c->batch + c->threads - 1) / c->threads;
}

static void print_header(const vm_config_t *c, hperf_t *perf) {
  struct utsname u;
  uname(&u);
  if (c->micro == 2)
    printf("bench/vm micro: kernel %s, advice %s, %d rounds per mode\n", u.release,
           c->advice_free ? "free" : "dontneed", c->micro_rounds);
  else
    printf("bench/vm: kernel %s, %d threads, %d x %zu KiB blocks per thread per iteration, "
           "%d iterations, batch %d, advice %s, %d repetition%s per mode\n",
           u.release, c->threads, c->blocks, c->block_size >> 10, c->iters, c->batch,
           c->advice_free ? "free" : "dontneed", c->repeat, c->repeat == 1 ? "" : "s");
  if (!c->perf)
    printf("perf events: not counted (add --perf)\n");
  else if (perf && hperf_missing(perf)[0])
    printf("perf: %s\n", hperf_missing(perf));
  if (perf) {
    /* Counted, but with a caveat (e.g. "user space only" without root). */
    const char *note = NULL;
    for (int ev = 0; ev < HPERF_EVENT_COUNT; ev++) {
      const hperf_value_t *v = hperf_event_state(perf, (hperf_event_t)ev);
      if (v->state != HPERF_COUNTED || !v->why[0]) continue;
      printf("%s%s", note ? ", " : "perf: counted in user space only: ", hperf_event_name((hperf_event_t)ev));
      note = v->why;
    }
    if (note) printf("\n");
  }
  if (c->perf && geteuid() != 0)
    printf("perf: not root: run 'sudo ./bench/vm --perf' to count tracepoints and context switches\n");
}

int main(int argc, char **argv) {
  vm_config_t cfg;
  parse_args(&cfg, argc, argv);
  hperf_t *perf = cfg.perf ? hperf_open() : NULL;
  if (cfg.perf && !perf) { fprintf(stderr, "vm: hperf_open: out of memory\n"); return 1; }
  print_header(&cfg, perf);
  int total = cfg.micro == 2 ? 0 : cfg.nmodes * cfg.repeat, n = 0, rc = 0;
  vm_run_t *runs = calloc((size_t)(total ? total : 1), sizeof *runs);
  vm_micro_t micro[VM_MAX_MODES + 1];
  int nmicro = 0;
  if (!runs) return 1;
  /* Interleaved: rep 1 of every mode, then rep 2..., so drift hits all modes. */
  for (int rep = 1; rep <= cfg.repeat && cfg.micro != 2; rep++)
    for (int m = 0; m < cfg.nmodes; m++, n++)
      if (vm_run_scenario(&cfg, perf, cfg.modes[m], rep, &runs[n], n + 1, total) != 0) {
        fprintf(stderr, "vm: run %d (%s) failed: out of memory?\n", n + 1, vm_mode_name(cfg.modes[m]));
        rc = 1;
      }
  if (n) {
    printf("\n");
    vm_print_table(&cfg, runs, n);
    printf("\n");
    vm_print_summary(&cfg, runs, n);
  }
  if (cfg.micro) {
    nmicro = vm_run_micro(&cfg, perf, micro, VM_MAX_MODES + 1);
    if (nmicro > 0) vm_print_micro(&cfg, micro, nmicro);
    else nmicro = 0;
  }
  if (cfg.json && vm_write_json(&cfg, cfg.json, runs, n, micro, nmicro, perf ? hperf_missing(perf) : NULL)) {
    fprintf(stderr, "vm: cannot write %s: %s\n", cfg.json, strerror(errno));
    rc = 1;
  }
  if (cfg.csv && vm_write_csv(&cfg, cfg.csv, runs, n)) {
    fprintf(stderr, "vm: cannot write %s: %s\n", cfg.csv, strerror(errno));
    rc = 1;
  }
  hperf_close(perf);
  free(runs);
  return rc;
}
