/* Shared helpers for the hakmem Check suites: patterns, stats, options, child processes. */
#ifndef HAK_TESTUTIL_H
#define HAK_TESTUTIL_H

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hakmem.h"

#ifndef HAK_SANITIZE
#define HAK_SANITIZE 0
#endif

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)
#define PAGE ((size_t)4096)

/* Tests that cannot run say so on one stderr line; run.sh counts them. */
#define SKIP_TEST(...)                                         \
  do {                                                         \
    tu_skip_line(__func__, __VA_ARGS__);                       \
    return;                                                    \
  } while (0)

static inline void tu_skip_line(const char *fn, const char *fmt, ...) {
  char name[128];
  snprintf(name, sizeof name, "%s", fn);
  size_t n = strlen(name);
  if (n > 3 && strcmp(name + n - 3, "_fn") == 0) name[n - 3] = '\0';  /* START_TEST adds _fn */
  char why[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  fprintf(stderr, "SKIP: %s: %s\n", name, why);
  fflush(stderr);
}

/* ---- patterns: every byte depends on its offset and a seed, so a zeroed,
 * shifted or foreign page never verifies. */
static inline uint8_t tu_byte(uint64_t seed, size_t i) {
  uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)(i / 8) * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  return (uint8_t)((x >> ((i % 8) * 8)) | 1);  /* never 0: zeroed pages must fail */
}

static inline void tu_fill(void *p, size_t n, uint64_t seed) {
  uint8_t *b = p;
  for (size_t i = 0; i < n; i++) b[i] = tu_byte(seed, i);
}

/* Offset of the first wrong byte, or -1 when the whole range is intact. */
static inline long tu_check(const void *p, size_t n, uint64_t seed) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != tu_byte(seed, i)) return (long)i;
  return -1;
}

#define ck_assert_pattern(p, n, seed)                                               \
  do {                                                                              \
    long off_ = tu_check((p), (n), (seed));                                         \
    ck_assert_msg(off_ < 0, "data at %p+%ld (size %zu) changed: got 0x%02x, want 0x%02x", \
                  (void *)(p), off_, (size_t)(n), ((const uint8_t *)(p))[off_ < 0 ? 0 : off_], \
                  tu_byte((seed), (size_t)(off_ < 0 ? 0 : off_)));                  \
  } while (0)

/* ---- stats */
static inline hak_stats_t tu_stats(void) {
  hak_stats_t st;
  memset(&st, 0, sizeof st);
  hak_stats(&st);
  return st;
}

/* Sleeps ms milliseconds, whatever signals arrive. */
/* CLOCK_MONOTONIC in ms: deadlines of the tests that run a pattern for a while. */
static inline uint64_t tu_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline void tu_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* A limit reached by a free is flushed by the purge thread, soon after, not
 * inside the free: poll the stats until cond holds. The bound (5 s) only
 * catches a flush that never comes; it is not a timing assertion. */
#define TU_WAIT_STATS(st, cond)                  \
  do {                                           \
    for (int w_ = 0; w_ < 500; w_++) {           \
      (st) = tu_stats();                         \
      if (cond) break;                           \
      usleep(10 * 1000);                         \
    }                                            \
  } while (0)

/* ---- options: set (asserting success) and restore what a test changed. */
#define TU_MAX_SAVED 16
typedef struct tu_opts_s {
  int n;
  char name[TU_MAX_SAVED][32];
  long long value[TU_MAX_SAVED];
} tu_opts_t;

static inline const char *tu_advice_name(long long advice) {
  return advice == MADV_FREE ? "free" : "dontneed";
}

static inline void tu_opt(tu_opts_t *saved, const char *name, const char *value) {
  if (saved && saved->n < TU_MAX_SAVED) {
    snprintf(saved->name[saved->n], sizeof saved->name[0], "%s", name);
    saved->value[saved->n++] = hak_option_get(name);
  }
  int rc = hak_option_set(name, value);
  ck_assert_msg(rc == 0, "hak_option_set(%s, %s) = %d errno %d", name, value, rc, errno);
}

static inline void tu_opts_restore(tu_opts_t *saved) {
  for (int i = saved->n - 1; i >= 0; i--) {
    char buf[32];
    const char *name = saved->name[i];
    long long v = saved->value[i];
    if (strcmp(name, "FLUSH") == 0)
      snprintf(buf, sizeof buf, "%s", hak_flush_mode_name((hak_flush_mode_t)v));
    else if (strcmp(name, "ADVICE") == 0)
      snprintf(buf, sizeof buf, "%s", tu_advice_name(v));
    else
      snprintf(buf, sizeof buf, "%lld", v);
    hak_option_set(name, buf);
  }
  saved->n = 0;
}

/* A quiet, known start: nothing queued, nothing cached, counters at zero.
 * Triggers are pushed out of reach so that only the test decides when to flush. */
static inline void tu_quiet(tu_opts_t *saved) {
  tu_opt(saved, "PURGE_DELAY_MS", "3600000");
  tu_opt(saved, "BATCH_MAX", "1024");
  tu_opt(saved, "BATCH_BYTES", "16G");
  tu_opt(saved, "CACHE_BYTES", "1G");
  hak_trim();
  hak_stats_reset();
}

static const char *const tu_backend_names[] = {"loop", "vector", "uring"};
static const char *const tu_advice_names[] = {"dontneed", "free"};

/* Combination _i of a loop test over 3 backends x 2 advices. */
static inline void tu_backend_combo(int i, const char **backend, const char **advice) {
  *backend = tu_backend_names[i % 3];
  *advice = tu_advice_names[(i / 3) % 2];
}

/* A quiet start (tu_quiet) flushing with combination i's backend and advice. */
static inline void tu_quiet_combo(tu_opts_t *saved, int i, const char **backend, const char **advice) {
  tu_backend_combo(i, backend, advice);
  tu_quiet(saved);
  tu_opt(saved, "FLUSH", *backend);
  tu_opt(saved, "ADVICE", *advice);
}

/* ---- memory residency */
static inline size_t tu_resident_pages(const void *p, size_t len) {
  uintptr_t a = (uintptr_t)p & ~(PAGE - 1);
  uintptr_t e = ((uintptr_t)p + len + PAGE - 1) & ~(PAGE - 1);
  size_t n = (e - a) / PAGE, res = 0;
  unsigned char *v = calloc(n, 1);  /* the runner's allocator; not the subject */
  ck_assert_ptr_nonnull(v);
  ck_assert_msg(mincore((void *)a, e - a, v) == 0, "mincore: %s", strerror(errno));
  for (size_t i = 0; i < n; i++) res += v[i] & 1;
  free(v);
  return res;
}

/* Make MADV_FREE visible: reclaim the pages under [p, p+len) as memory
 * pressure would. Pages a wrong flush left lazily freed (clean) are discarded
 * and read back as zero; dirty anonymous pages stay (or come back from swap)
 * intact. A correct allocator survives this on any of its memory, so the
 * range is rounded outwards. */
static inline void tu_pageout(void *p, size_t len) {
  uintptr_t a = (uintptr_t)p & ~(PAGE - 1);
  uintptr_t e = ((uintptr_t)p + len + PAGE - 1) & ~(PAGE - 1);
  madvise((void *)a, e - a, MADV_PAGEOUT);
}

static inline long tu_statm_resident_pages(void) {
  long size = 0, res = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return -1;
  if (fscanf(f, "%ld %ld", &size, &res) != 2) res = -1;
  fclose(f);
  return res;
}

/* ---- files */
static inline char *tu_read_file(const char *path, size_t *len_out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (len + 1 >= cap) buf = realloc(buf, cap *= 2);
    ssize_t r = read(fd, buf + len, cap - len - 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    len += (size_t)r;
  }
  close(fd);
  buf[len] = '\0';
  if (len_out) *len_out = len;
  return buf;
}

static inline void tu_tmpname(char *buf, size_t n, const char *tag) {
  snprintf(buf, n, "/tmp/hakmem-test-%s-%d-XXXXXX", tag, (int)getpid());
  int fd = mkstemp(buf);
  ck_assert_msg(fd >= 0, "mkstemp: %s", strerror(errno));
  close(fd);
}

/* ---- running programs with their own environment */
typedef struct tu_run_s {
  int status;   /* from waitpid */
  char *out;    /* stdout, NUL-terminated */
  char *err;    /* stderr */
} tu_run_t;

extern char **environ;

/* The child's environment: ours without HAKMEM_* and LD_PRELOAD, then extra
 * ("NAME=value" strings, NULL-terminated), so results never depend on how the
 * suite itself was started. */
static inline char **tu_env(const char *const *extra) {
  size_t n = 0, m = 0;
  while (environ[n]) n++;
  while (extra && extra[m]) m++;
  char **env = calloc(n + m + 1, sizeof *env);
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "HAKMEM_", 7) != 0 && strncmp(environ[i], "LD_PRELOAD=", 11) != 0)
      env[k++] = environ[i];
  for (size_t i = 0; i < m; i++) env[k++] = (char *)extra[i];
  env[k] = NULL;
  return env;
}

/* Called in the child just before exec (e.g. to install a seccomp filter). */
typedef void (*tu_pre_exec_fn)(void *arg);

/* Runs argv (argv[0] a path or a name in PATH) with stdin from in_path (or
 * /dev/null), captures stdout and stderr. Returns 0, or -1 if it could not run. */
static inline int tu_run_ex(const char *const *argv, const char *const *extra_env,
                            const char *in_path, tu_pre_exec_fn hook, void *hook_arg,
                            tu_run_t *r) {
  r->status = -1;
  r->out = strdup("");
  r->err = strdup("");
  char outp[128], errp[128];
  tu_tmpname(outp, sizeof outp, "out");
  tu_tmpname(errp, sizeof errp, "err");
  char **env = tu_env(extra_env);
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    free(env);
    return -1;
  }
  if (pid == 0) {
    int in = open(in_path ? in_path : "/dev/null", O_RDONLY);
    int out = open(outp, O_WRONLY | O_TRUNC);
    int err = open(errp, O_WRONLY | O_TRUNC);
    if (in < 0 || out < 0 || err < 0) _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    if (hook) hook(hook_arg);
    execvpe(argv[0], (char *const *)argv, env);
    _exit(127);
  }
  free(env);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  r->status = st;
  free(r->out);
  free(r->err);
  r->out = tu_read_file(outp, NULL);
  r->err = tu_read_file(errp, NULL);
  unlink(outp);
  unlink(errp);
  if (!r->out) r->out = strdup("");
  if (!r->err) r->err = strdup("");
  return 0;
}

static inline int tu_run(const char *const *argv, const char *const *extra_env,
                         const char *in_path, tu_run_t *r) {
  return tu_run_ex(argv, extra_env, in_path, NULL, NULL, r);
}

static inline void tu_run_free(tu_run_t *r) {
  free(r->out);
  free(r->err);
  r->out = r->err = NULL;
}

static inline int tu_exited_ok(const tu_run_t *r) {
  return WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0;
}

static inline int tu_count_substr(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
  return n;
}

/* ---- the JSON stats line: "hakmem-stats: {"key":value,...}" */
static inline int tu_json_num(const char *json, const char *key, long long *v) {
  char pat[80];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(json, pat);
  if (!p) return -1;
  p += strlen(pat);
  while (*p == ' ') p++;
  char *end;
  errno = 0;
  *v = strtoll(p, &end, 10);
  return end == p ? -1 : 0;
}

static inline int tu_json_str(const char *json, const char *key, char *out, size_t n) {
  char pat[80];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(json, pat);
  if (!p) return -1;
  p += strlen(pat);
  while (*p == ' ') p++;
  if (*p != '"') return -1;
  p++;
  size_t k = 0;
  while (*p && *p != '"' && k + 1 < n) out[k++] = *p++;
  out[k] = '\0';
  return 0;
}

/* Value of a numeric key in a report, failing the test when it is missing. */
static inline long long tu_json_need(const char *json, const char *key) {
  long long v = 0;
  ck_assert_msg(tu_json_num(json, key, &v) == 0, "key %s missing in report: %s", key, json);
  return v;
}

/* Runs argv with HAKMEM_STATS=json written to a temporary HAKMEM_STATS_FILE,
 * plus extra_env (at most 14 entries). Returns the last report line (from
 * "{"), malloc'd, or NULL when there was none. */
static inline char *tu_run_report(const char *const *argv, const char *const *extra_env,
                                  tu_pre_exec_fn hook, void *hook_arg, tu_run_t *r) {
  char path[128], file_env[160];
  tu_tmpname(path, sizeof path, "report");
  snprintf(file_env, sizeof file_env, "HAKMEM_STATS_FILE=%s", path);
  const char *env[17] = {"HAKMEM_STATS=json", file_env};
  int k = 2;
  for (int i = 0; extra_env && extra_env[i] && k < 16; i++) env[k++] = extra_env[i];
  env[k] = NULL;
  int rc = tu_run_ex(argv, env, NULL, hook, hook_arg, r);
  char *text = tu_read_file(path, NULL);
  unlink(path);
  if (rc != 0 || !text) {
    free(text);
    return NULL;
  }
  char *last = NULL;
  for (char *p = text; (p = strstr(p, "hakmem-stats: {")) != NULL; p++) last = p;
  char *line = NULL;
  if (last) {
    line = strdup(strchr(last, '{'));
    char *nl = strchr(line, '\n');
    if (nl) *nl = '\0';
  }
  free(text);
  return line;
}

/* ---- a child process that reports a result block back through a pipe.
 * Used where the test changes the process for good (seccomp, fork checks). */
typedef void (*tu_child_fn)(void *arg, void *result, size_t result_size);

/* The child's side: run fn, write its result block to the pipe, exit. */
static inline _Noreturn void tu_child_side(tu_child_fn fn, void *arg, void *result, size_t size,
                                           const int fds[2]) {
  close(fds[0]);
  memset(result, 0, size);
  fn(arg, result, size);
  const char *b = result;
  for (size_t done = 0; done < size;) {
    ssize_t w = write(fds[1], b + done, size - done);
    if (w <= 0) _exit(3);
    done += (size_t)w;
  }
  _exit(0);
}

/* Forks a child that runs fn; returns its pid and the pipe's read end in *rfd. */
static inline pid_t tu_fork_child(tu_child_fn fn, void *arg, void *result, size_t size, int *rfd) {
  int fds[2];
  ck_assert(pipe(fds) == 0);
  fflush(NULL);
  pid_t pid = fork();
  ck_assert(pid >= 0);
  if (pid == 0) tu_child_side(fn, arg, result, size, fds);
  close(fds[1]);
  *rfd = fds[0];
  return pid;
}

/* Reads the child's result block; returns the bytes read and closes fd. */
static inline size_t tu_read_result(int fd, void *result, size_t size) {
  size_t got = 0;
  while (got < size) {
    ssize_t r = read(fd, (char *)result + got, size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  return got;
}

static inline int tu_in_child(tu_child_fn fn, void *arg, void *result, size_t size) {
  int fd;
  pid_t pid = tu_fork_child(fn, arg, result, size, &fd);
  size_t got = tu_read_result(fd, result, size);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0 && got == size,
                "child failed: status 0x%x, %zu of %zu result bytes", st, got, size);
  return 0;
}

/* Waits for pid at most secs seconds; kills it and returns -1 if it hangs
 * (the guard against deadlocks, not a timing assertion). */
static inline int tu_wait_bounded(pid_t pid, int secs, int *status) {
  for (int i = 0; i < secs * 100; i++) {
    pid_t w = waitpid(pid, status, WNOHANG);
    if (w == pid) return 0;
    usleep(10 * 1000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, status, 0);
  return -1;
}

/* ---- kernel probes */
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif

/* Does this kernel take MADV_DONTNEED through process_madvise on ourselves
 * (6.13+)? 0 when yes, else the errno. */
static inline int tu_probe_vector_dontneed(void) {
  int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  if (pidfd < 0) return errno;
  void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ((char *)p)[0] = 1;
  struct iovec iov = {p, PAGE};
  long r = syscall(SYS_process_madvise, pidfd, &iov, 1, MADV_DONTNEED, 0);
  int err = r < 0 ? errno : 0;
  munmap(p, PAGE);
  close(pidfd);
  return err;
}

static inline const char *tu_mode_name(int mode) {
  return hak_flush_mode_name((hak_flush_mode_t)mode);
}

/* ---- torture helpers */

/* tu_fill/tu_check, eight bytes at a time: the same bytes, for big blocks. */
static inline uint64_t tu_word(uint64_t seed, size_t w) {
  uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)w * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  return x | 0x0101010101010101ull;  /* tu_byte of bytes 8w..8w+7, little endian */
}

static inline void tu_fill_fast(void *p, size_t n, uint64_t seed) {
  uint8_t *b = p;
  size_t w = 0;
  for (; (w + 1) * 8 <= n; w++) {
    uint64_t v = tu_word(seed, w);
    memcpy(b + w * 8, &v, 8);
  }
  for (size_t i = w * 8; i < n; i++) b[i] = tu_byte(seed, i);
}

static inline long tu_check_fast(const void *p, size_t n, uint64_t seed) {
  const uint8_t *b = p;
  size_t w = 0;
  for (; (w + 1) * 8 <= n; w++) {
    uint64_t v;
    memcpy(&v, b + w * 8, 8);
    if (v != tu_word(seed, w)) break;
  }
  for (size_t i = w * 8; i < n; i++)
    if (b[i] != tu_byte(seed, i)) return (long)i;
  return -1;
}

/* splitmix64: seeded, replayable random numbers. */
static inline uint64_t tu_rand(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Does the kernel let this process set up an io_uring? 0, or the errno. */
static inline int tu_probe_uring(void) {
  unsigned char params[120];  /* struct io_uring_params */
  memset(params, 0, sizeof params);
  int fd = (int)syscall(SYS_io_uring_setup, 2, params);
  if (fd < 0) return errno;
  close(fd);
  return 0;
}

/* tu_in_child with a bound: the child gets secs seconds, then is killed
 * (result: at most one pipe buffer, 64 KiB).
 * Returns 0 when it exited 0 with its whole result, -1 when it hung; else
 * the wait status (never 0). */
static inline int tu_in_child_bounded(tu_child_fn fn, void *arg, void *result, size_t size,
                                      int secs) {
  int fd;
  pid_t pid = tu_fork_child(fn, arg, result, size, &fd);
  int st = 0;
  int hung = tu_wait_bounded(pid, secs, &st);
  if (hung) {
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, O_NONBLOCK);  /* the child is gone: read what it left */
  size_t got = tu_read_result(fd, result, size);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && got == size) return 0;
  return st ? st : 0x7f00;
}

#endif
