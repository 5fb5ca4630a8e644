/* bench/scenarios: runs one allocation scenario (scenarios[] below,
 * bench/README.md describes them) on N threads with whatever malloc the
 * process has (choose it with LD_PRELOAD), and prints one key=value result
 * line: time per operation, page faults, peak RSS, the RSS integrated over
 * the run, and RSS after everything was freed.
 *
 *   bench/scenarios SCENARIO [--threads N] [--scale F] [--units N]
 *                            [--settle-ms MS]
 *   bench/scenarios --warm MIB   (touch MIB of memory and exit: see warm())
 *
 * Not linked with hakmem on purpose: every allocator runs this same binary. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include "scen_common.h"

typedef struct scenario {
  const char *name;
  void (*run)(scen_ctx_t *c, uint64_t units);
  uint64_t units; /* per thread at --scale 1: 0.3-2 s with glibc (vm: 4-7 s) */
  void *(*setup)(int nthreads, uint64_t units); /* shared state, or NULL */
  void (*teardown)(void *state);
  const char *stat_key; /* prints ctx.stat summed over threads as a percentage */
} scenario_t;

static const scenario_t scenarios[] = {
  {"json", scen_json_run, 40000, NULL, NULL, NULL},
  {"mir", scen_mir_run, 12000, NULL, NULL, NULL},
  {"vm", scen_vm_run, 1500, NULL, NULL, NULL},
  {"mixed", scen_mixed_run, 12000, NULL, NULL, NULL},
  {"churn", scen_churn_run, 10000000, NULL, NULL, NULL},
  {"prodcons", scen_prodcons_run, 2500000, scen_prodcons_setup, scen_prodcons_teardown, NULL},
  {"falseshare", scen_falseshare_run, 20000, scen_falseshare_setup, scen_falseshare_teardown,
   "false_shared_pct"},
  {"largechurn", scen_largechurn_run, 200, scen_largechurn_setup, scen_largechurn_teardown,
   NULL},
  {"kvserver", scen_kvserver_run, 40, NULL, NULL, NULL},
  {"phases", scen_phases_run, 8, NULL, NULL, NULL},
};
#define N_SCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

typedef struct options {
  const scenario_t *scen;
  int threads;
  uint64_t units;
  long settle_ms;
} options_t;

static void usage(void) {
  fprintf(stderr, "usage: scenarios ");
  for (size_t i = 0; i < N_SCENARIOS; i++)
    fprintf(stderr, "%s%s", i ? "|" : "", scenarios[i].name);
  fprintf(stderr, " [--threads N] [--scale F] [--units N] [--settle-ms MS]\n");
  exit(2);
}

static const scenario_t *find_scenario(const char *name) {
  for (size_t i = 0; i < N_SCENARIOS; i++)
    if (strcmp(scenarios[i].name, name) == 0) return &scenarios[i];
  return NULL;
}

static options_t parse(int argc, char **argv) {
  options_t o = {NULL, 1, 0, 100};
  double scale = 1.0;
  if (argc < 2 || !(o.scen = find_scenario(argv[1]))) usage();
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage();
    if (strcmp(a, "--threads") == 0) o.threads = atoi(v);
    else if (strcmp(a, "--scale") == 0) scale = atof(v);
    else if (strcmp(a, "--units") == 0) o.units = strtoull(v, NULL, 10);
    else if (strcmp(a, "--settle-ms") == 0) o.settle_ms = atol(v);
    else usage();
    i++;
  }
  if (o.threads < 1 || o.threads > 1024 || scale <= 0) usage();
  if (!o.units) o.units = (uint64_t)(o.scen->units * scale + 0.5);
  if (!o.units) o.units = 1;
  return o;
}

/* Which malloc is in this process: each allocator exports a name of its own. */
static const char *allocator_name(void) {
  static const struct { const char *sym, *name; } marks[] = {
    {"hak_malloc", "hakmem"}, {"mi_malloc", "mimalloc"},
    {"mallctl", "jemalloc"},  {"tc_malloc", "tcmalloc"},
  };
  for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
    if (dlsym(RTLD_DEFAULT, marks[i].sym)) return marks[i].name;
  return "glibc";
}

/* A field of /proc/self/status in kB (VmRSS, VmHWM), or -1. */
static long status_kb(const char *key) {
  char line[256];
  long kb = -1;
  size_t klen = strlen(key);
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
      kb = atol(line + klen + 1);
      break;
    }
  fclose(f);
  return kb;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* What getrusage tells about the whole process (all threads). CPU time
 * (user + system) moves less than wall time on a shared machine when other
 * work steals the CPUs; minor faults count pages the kernel had to map
 * (first touch, or touch after the allocator returned them). */
typedef struct usage {
  uint64_t cpu_ns;
  uint64_t minflt;
} usage_t;

static usage_t usage_now(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (usage_t){
    (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
        (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull,
    (uint64_t)ru.ru_minflt};
}

typedef struct worker {
  pthread_t thread;
  scen_ctx_t ctx;
  const options_t *opt;
  pthread_barrier_t *start;
} worker_t;

static void *worker_main(void *arg) {
  worker_t *w = arg;
  if (w->start) pthread_barrier_wait(w->start);
  w->opt->scen->run(&w->ctx, w->opt->units);
  return NULL;
}

/* Runs the workload; returns its wall-clock time. One thread runs on the
 * main thread itself: a process that never created a thread is what
 * "single-threaded" means to allocators with single-thread fast paths. */
static uint64_t run_workload(const options_t *o, worker_t *w, scen_shared_t *shared,
                             void *state) {
  pthread_barrier_t sync;
  if (o->threads > 1) pthread_barrier_init(&sync, NULL, (unsigned)o->threads);
  for (int t = 0; t < o->threads; t++) {
    w[t].opt = o;
    w[t].start = NULL;
    w[t].ctx = (scen_ctx_t){.tid = t, .nthreads = o->threads, .shared = shared,
                            .state = state, .sync = o->threads > 1 ? &sync : NULL};
    scen_seed(&w[t].ctx, t);
  }
  if (o->threads == 1) {
    uint64_t t0 = now_ns();
    worker_main(&w[0]);
    return now_ns() - t0;
  }
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, (unsigned)o->threads + 1);
  for (int t = 0; t < o->threads; t++) {
    w[t].start = &start;
    int err = pthread_create(&w[t].thread, NULL, worker_main, &w[t]);
    if (err) {
      fprintf(stderr, "scenarios: pthread_create: %s\n", strerror(err));
      exit(1);
    }
  }
  uint64_t t0 = now_ns();
  pthread_barrier_wait(&start);
  for (int t = 0; t < o->threads; t++) pthread_join(w[t].thread, NULL);
  uint64_t elapsed = now_ns() - t0;
  pthread_barrier_destroy(&start);
  pthread_barrier_destroy(&sync);
  return elapsed;
}

/* Everything is freed: give every allocator the same chance to return memory
 * on its own (delay-based purgers act on a later call), without malloc_trim. */
static void settle(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
  void *volatile p = malloc(64);
  free(p);
}

typedef struct result {
  uint64_t elapsed, ops, sum, idle_ns, stat[2];
  usage_t used;
  long start_kb, peak_kb, final_kb;
  int have_rss; /* the sampler ran: rss is valid */
  rss_report_t rss;
} result_t;

static void print_result(const options_t *o, const char *alloc, const result_t *r) {
  uint64_t ops = r->ops ? r->ops : 1;
  /* ns per op per thread: equals the single-thread figure when scaling is perfect */
  double ns_per_op = (double)r->elapsed * o->threads / (double)ops;
  double cpu_per_op = (double)r->used.cpu_ns / (double)ops;
  printf("scenario=%s threads=%d allocator=%s units=%llu ops=%llu elapsed_ns=%llu "
         "ns_per_op=%.2f cpu_ns_per_op=%.2f start_rss_kb=%ld peak_rss_kb=%ld final_rss_kb=%ld "
         "checksum=%016llx minflt=%llu idle_ns=%llu",
         o->scen->name, o->threads, alloc, (unsigned long long)o->units,
         (unsigned long long)r->ops, (unsigned long long)r->elapsed, ns_per_op, cpu_per_op,
         r->start_kb, r->peak_kb, r->final_kb, (unsigned long long)r->sum,
         (unsigned long long)r->used.minflt, (unsigned long long)r->idle_ns);
  if (r->have_rss)
    printf(" rss_integral_mib_s=%.4f rss_samples=%ld", r->rss.integral_mib_s, r->rss.samples);
  if (o->scen->stat_key)
    printf(" %s=%.2f", o->scen->stat_key,
           r->stat[1] ? 100.0 * (double)r->stat[0] / (double)r->stat[1] : 0.0);
  printf("\n");
}

/* Touch MIB of memory (huge pages where THP allows) and give it back. In a
 * virtual machine whose host takes back the guest's free memory (virtio
 * free page reporting, ballooning), the first touch of such a page costs the
 * host's fault too: 2.2 ns a byte against 0.1 once the host backs it again,
 * measured on the project's VM. Run before each measured process (by
 * bench/compare), it leaves the kernel's free lists with pages the host
 * backs, so that a run measures the allocator and not what the host did
 * with the pages it was given. mmap directly: no allocator is involved. */
static int warm(const char *arg) {
  size_t len = (size_t)strtoull(arg, NULL, 10) << 20;
  if (!len) return 0;
  unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("scenarios: --warm: mmap");
    return 1;
  }
  madvise(p, len, MADV_HUGEPAGE);
  for (size_t off = 0; off < len; off += 4096) p[off] = 1;
  munmap(p, len);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--rss-sampler") == 0) return rss_sampler_main(argc, argv);
  if (argc == 3 && strcmp(argv[1], "--warm") == 0) return warm(argv[2]);
  options_t o = parse(argc, argv);
  worker_t *w = calloc((size_t)o.threads, sizeof(*w));
  scen_shared_t *shared = scen_shared_new(o.threads);
  void *state = o.scen->setup ? o.scen->setup(o.threads, o.units) : NULL;
  const char *alloc = allocator_name();
  rss_sampler_t *sampler = rss_sampler_spawn();
  if (!sampler) fprintf(stderr, "scenarios: no RSS sampler: rss_integral_mib_s omitted\n");
  result_t r = {.start_kb = status_kb("VmRSS")};

  if (sampler) rss_sampler_start(sampler);
  usage_t u0 = usage_now();
  r.elapsed = run_workload(&o, w, shared, state);
  usage_t u1 = usage_now();
  if (sampler) r.have_rss = rss_sampler_stop(sampler, &r.rss) == 0;
  r.used = (usage_t){u1.cpu_ns - u0.cpu_ns, u1.minflt - u0.minflt};

  r.peak_kb = status_kb("VmHWM");
  if (o.scen->teardown) o.scen->teardown(state);
  scen_shared_free(shared);
  for (int t = 0; t < o.threads; t++) {
    r.ops += w[t].ctx.ops;
    r.sum += w[t].ctx.checksum;
    r.stat[0] += w[t].ctx.stat[0];
    r.stat[1] += w[t].ctx.stat[1];
  }
  r.idle_ns = w[0].ctx.idle_ns; /* thread 0 sleeps for the whole process */
  free(w);
  settle(o.settle_ms);
  r.final_kb = status_kb("VmRSS");
  print_result(&o, alloc, &r);
  return 0;
}
