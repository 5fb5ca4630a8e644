/* bench/scenarios: runs one allocation scenario (json, mir, vm, mixed) on N
 * threads with whatever malloc the process has (choose it with LD_PRELOAD),
 * and prints one key=value result line: time per operation, peak RSS, and
 * RSS after everything was freed.
 *
 *   bench/scenarios SCENARIO [--threads N] [--scale F] [--units N]
 *                            [--settle-ms MS]
 *
 * Not linked with hakmem on purpose: every allocator runs this same binary. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sys/resource.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include "scen_common.h"

typedef struct scenario {
  const char *name;
  void (*run)(scen_ctx_t *c, uint64_t units);
  uint64_t units; /* per thread at --scale 1: 0.3-0.4 s with glibc (vm: 4-7 s) */
} scenario_t;

static const scenario_t scenarios[] = {
  {"json", scen_json_run, 40000},
  {"mir", scen_mir_run, 12000},
  {"vm", scen_vm_run, 1500},
  {"mixed", scen_mixed_run, 12000},
};

typedef struct options {
  const scenario_t *scen;
  int threads;
  uint64_t units;
  long settle_ms;
} options_t;

static void usage(void) {
  fprintf(stderr,
          "usage: scenarios json|mir|vm|mixed [--threads N] [--scale F] [--units N]"
          " [--settle-ms MS]\n");
  exit(2);
}

static const scenario_t *find_scenario(const char *name) {
  for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
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

/* CPU time of the whole process (all threads, user + system). On a shared
 * machine it moves less than wall time when other work steals the CPUs. */
static uint64_t cpu_ns(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
         (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
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
static uint64_t run_workload(const options_t *o, worker_t *w, scen_shared_t *shared) {
  for (int t = 0; t < o->threads; t++) {
    w[t].opt = o;
    w[t].start = NULL;
    w[t].ctx = (scen_ctx_t){.tid = t, .nthreads = o->threads, .shared = shared};
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

int main(int argc, char **argv) {
  options_t o = parse(argc, argv);
  worker_t *w = calloc((size_t)o.threads, sizeof(*w));
  scen_shared_t *shared = scen_shared_new(o.threads);
  const char *alloc = allocator_name();
  long start_kb = status_kb("VmRSS");

  uint64_t cpu0 = cpu_ns();
  uint64_t elapsed = run_workload(&o, w, shared);
  uint64_t cpu = cpu_ns() - cpu0;

  long peak_kb = status_kb("VmHWM");
  scen_shared_free(shared);
  uint64_t ops = 0, sum = 0;
  for (int t = 0; t < o.threads; t++) {
    ops += w[t].ctx.ops;
    sum += w[t].ctx.checksum;
  }
  free(w);
  settle(o.settle_ms);
  long final_kb = status_kb("VmRSS");
  /* ns per op per thread: equals the single-thread figure when scaling is perfect */
  double ns_per_op = (double)elapsed * o.threads / (double)(ops ? ops : 1);
  double cpu_per_op = (double)cpu / (double)(ops ? ops : 1);
  printf("scenario=%s threads=%d allocator=%s units=%llu ops=%llu elapsed_ns=%llu "
         "ns_per_op=%.2f cpu_ns_per_op=%.2f start_rss_kb=%ld peak_rss_kb=%ld final_rss_kb=%ld "
         "checksum=%016llx\n",
         o.scen->name, o.threads, alloc, (unsigned long long)o.units,
         (unsigned long long)ops, (unsigned long long)elapsed, ns_per_op, cpu_per_op, start_kb,
         peak_kb, final_kb, (unsigned long long)sum);
  return 0;
}
