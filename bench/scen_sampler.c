/* The RSS sampler of bench/scenarios: a helper process that reads the
 * measured process's resident set (/proc/PID/statm) every 5 ms while the
 * workload runs and integrates it over time (MiB x s).
 *
 * A process, not a thread: a single-threaded run must stay a process that
 * never created a thread (glibc and others take single-thread fast paths),
 * and a helper process adds no page faults, no memory and no allocator
 * calls to the measured one. It is bench/scenarios itself, started with
 * posix_spawn (vfork semantics: no copy-on-write faults in the parent) as
 * `scenarios --rss-sampler PID` and without LD_PRELOAD, so that it never
 * runs the allocator under test (whose exit report would overwrite the
 * measured process's). Protocol over one socket pair (a socket: send with
 * MSG_NOSIGNAL cannot kill the parent if the helper died): the helper writes
 * 'R' when ready; the parent sends a mark (time and its own RSS) when the
 * workload starts and another when it ends; the helper answers one line
 * "integral_kib_ns samples". The marks make both ends exact even when the
 * helper is scheduled late (CLOCK_MONOTONIC is the same in both processes). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "scen_common.h"

#define SAMPLE_NS 5000000ull /* 5 ms: 200 samples/s, a few µs each */

extern char **environ;

struct rss_sampler {
  pid_t pid;
  int sock; /* to the helper: two marks; from it: 'R', then the result line */
};

typedef struct mark {
  uint64_t ns;
  long kib;
} mark_t;

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the helper ------------------------------------------------------- */

/* Resident set in KiB: statm's second field, in pages. pread at offset 0
 * regenerates the file, so one descriptor serves every sample. */
static long statm_kib(int fd) {
  char buf[128];
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return -1;
  buf[n] = 0;
  long size, resident;
  if (sscanf(buf, "%ld %ld", &size, &resident) != 2) return -1;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static int read_mark(mark_t *m) { return read(0, m, sizeof *m) == sizeof *m ? 0 : -1; }

/* Waits until the next tick; 1 when the end mark came instead (or the
 * parent is gone: -1). */
static int wait_tick(uint64_t next, mark_t *end) {
  uint64_t now = mono_ns();
  uint64_t left = next > now ? next - now : 0;
  struct timespec ts = {(time_t)(left / 1000000000ull), (long)(left % 1000000000ull)};
  struct pollfd pfd = {0, POLLIN, 0};
  if (ppoll(&pfd, 1, &ts, NULL) <= 0) return 0;
  return read_mark(end) == 0 ? 1 : -1;
}

/* Trapezoids between samples: RSS changes between two reads are assumed
 * linear, which over 5 ms is as good as anything. The first trapezoid
 * starts at the start mark, the last ends at the end mark. */
static int sample_loop(int fd) {
  mark_t start, end;
  if (read_mark(&start)) return 1;
  uint64_t t_prev = start.ns, next = mono_ns() + SAMPLE_NS;
  long r_prev = start.kib, samples = 0;
  double integral = 0; /* KiB x ns */
  int done;
  while (!(done = wait_tick(next, &end))) {
    uint64_t t = mono_ns();
    long r = statm_kib(fd);
    if (r < 0) return 1;
    integral += (double)(r + r_prev) / 2 * (double)(t - t_prev);
    t_prev = t, r_prev = r, samples++;
    next += SAMPLE_NS;
    if (next < t) next = t + SAMPLE_NS; /* we were descheduled: don't catch up */
  }
  if (done < 0) return 1;
  /* a sample taken after the end mark but before we read it overshoots */
  integral += (double)(end.kib + r_prev) / 2 * ((double)end.ns - (double)t_prev);
  printf("%.0f %ld\n", integral, samples);
  return 0;
}

int rss_sampler_main(int argc, char **argv) {
  if (argc != 3) return 2;
  char path[64];
  snprintf(path, sizeof path, "/proc/%s/statm", argv[2]);
  int fd = open(path, O_RDONLY);
  if (fd < 0 || statm_kib(fd) < 0) return 1;
  if (write(1, "R", 1) != 1) return 1;
  return sample_loop(fd);
}

/* ---- the measured process --------------------------------------------- */

/* environ without LD_PRELOAD (a static copy: spawning happens once). */
static char **env_without_preload(void) {
  static char *env[512];
  size_t n = 0;
  for (char **e = environ; *e && n < 511; e++)
    if (strncmp(*e, "LD_PRELOAD=", 11) != 0) env[n++] = *e;
  env[n] = NULL;
  return env;
}

static pid_t spawn_helper(int sock) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, sock, 0);
  posix_spawn_file_actions_adddup2(&fa, sock, 1);
  char pid[24];
  snprintf(pid, sizeof pid, "%d", (int)getpid());
  char *argv[] = {"scenarios", "--rss-sampler", pid, NULL};
  pid_t child;
  int err = posix_spawn(&child, "/proc/self/exe", &fa, NULL, argv, env_without_preload());
  posix_spawn_file_actions_destroy(&fa);
  return err ? -1 : child;
}

rss_sampler_t *rss_sampler_spawn(void) {
  static rss_sampler_t s;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) return NULL;
  s.pid = spawn_helper(sv[1]);
  close(sv[1]);
  s.sock = sv[0];
  char ready;
  if (s.pid < 0 || read(s.sock, &ready, 1) != 1 || ready != 'R') {
    close(s.sock);
    if (s.pid > 0) waitpid(s.pid, NULL, 0);
    return NULL;
  }
  return &s;
}

/* Now and our own RSS, from the same file the helper reads. */
static int send_mark(rss_sampler_t *s) {
  int fd = open("/proc/self/statm", O_RDONLY);
  mark_t m = {mono_ns(), fd < 0 ? -1 : statm_kib(fd)};
  if (fd >= 0) close(fd);
  if (m.kib < 0) return -1;
  return send(s->sock, &m, sizeof m, MSG_NOSIGNAL) == sizeof m ? 0 : -1;
}

/* A helper that died is noticed by stop(). */
void rss_sampler_start(rss_sampler_t *s) { (void)send_mark(s); }

int rss_sampler_stop(rss_sampler_t *s, rss_report_t *out) {
  char line[128];
  ssize_t n = send_mark(s) == 0 ? read(s->sock, line, sizeof line - 1) : -1;
  close(s->sock);
  int status = 0;
  while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (n <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
  line[n] = 0;
  double kib_ns;
  if (sscanf(line, "%lf %ld", &kib_ns, &out->samples) != 2) return -1;
  out->integral_mib_s = kib_ns / 1024.0 / 1e9;
  return 0;
}
