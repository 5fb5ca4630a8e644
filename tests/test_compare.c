/* Tests the allocator comparison suite: bench/scenarios does the same work under every allocator, and bench/compare --smoke writes a CSV row for every scenario, thread count and allocator. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef HAK_SANITIZE
#define HAK_SANITIZE 0
#endif

#define SCEN_BIN "bench/scenarios"
#define COMPARE "bench/compare"
#define HAKMEM_SO "lib/libhakmem.so"
#define SYSLIB "/usr/lib/x86_64-linux-gnu/"

static const char *const peers[] = {
  SYSLIB "libmimalloc.so.2", SYSLIB "libjemalloc.so.2", SYSLIB "libtcmalloc_minimal.so.4"};
static const char *const allocators[] = {"glibc",    "mimalloc", "jemalloc",
                                         "tcmalloc", "hakmem",   "hakmem-loop"};
static const char *const scenarios[] = {"json", "mir", "vm", "mixed"};
#define N_ALLOC (sizeof(allocators) / sizeof(allocators[0]))
#define N_SCEN (sizeof(scenarios) / sizeof(scenarios[0]))

/* Why this test cannot run here, or NULL. */
static const char *cannot_run(void) {
  if (HAK_SANITIZE) return "sanitizer build: the suite relies on LD_PRELOAD of libhakmem.so";
  if (access(SCEN_BIN, X_OK) != 0) return SCEN_BIN " not built";
  if (access(HAKMEM_SO, R_OK) != 0) return HAKMEM_SO " not built";
  for (size_t i = 0; i < sizeof(peers) / sizeof(peers[0]); i++)
    if (access(peers[i], R_OK) != 0) return "a peer allocator is not installed";
  return NULL;
}

/* Runs argv with LD_PRELOAD=preload (NULL: none), stdout (and stderr too
 * when both_fds: the runner's progress log) into out_path; returns the exit
 * status (or -1). */
static int run(char *const argv[], const char *preload, const char *out_path, int both_fds) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) _exit(126);
    dup2(fd, 1);
    if (both_fds) dup2(fd, 2);
    close(fd);
    unsetenv("LD_PRELOAD");
    if (preload) setenv("LD_PRELOAD", preload, 1);
    execv(argv[0], argv);
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

/* Value of key=... in a result line, copied into out. */
static int field(const char *line, const char *key, char *out, size_t cap) {
  char pat[64];
  snprintf(pat, sizeof pat, " %s=", key);
  const char *p = strstr(line, pat);
  if (!p) return -1;
  p += strlen(pat);
  size_t n = strcspn(p, " \n");
  if (n >= cap) return -1;
  memcpy(out, p, n);
  out[n] = 0;
  return 0;
}

START_TEST(same_work_under_every_allocator) {
  const char *why = cannot_run();
  if (why) {
    fprintf(stderr, "SKIP: test_compare: %s\n", why);
    return;
  }
  char out[] = "/tmp/hak-test-scen-XXXXXX";
  int fd = mkstemp(out);
  ck_assert_int_ge(fd, 0);
  close(fd);
  char *argv[] = {SCEN_BIN, "mixed", "--threads", "2", "--units", "40", "--settle-ms", "1", NULL};
  const char *preload[] = {NULL, HAKMEM_SO, peers[0]};
  const char *expect[] = {"glibc", "hakmem", "mimalloc"};
  char first_sum[64] = "";
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(run(argv, preload[i], out, 0), 0);
    char *text = slurp(out), alloc[32], sum[64], ops[32], peak[32];
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(strncmp(text, "scenario=mixed ", 15) == 0, "bad result line: %s", text);
    ck_assert_int_eq(field(text, "allocator", alloc, sizeof alloc), 0);
    ck_assert_str_eq(alloc, expect[i]);
    ck_assert_int_eq(field(text, "ops", ops, sizeof ops), 0);
    ck_assert_int_gt(atoll(ops), 1000);
    ck_assert_int_eq(field(text, "peak_rss_kb", peak, sizeof peak), 0);
    ck_assert_int_gt(atoll(peak), 0);
    ck_assert_int_eq(field(text, "checksum", sum, sizeof sum), 0);
    if (i == 0) strcpy(first_sum, sum);
    ck_assert_msg(strcmp(sum, first_sum) == 0, "%s did different work: checksum %s vs %s",
                  alloc, sum, first_sum);
  }
  unlink(out);
}
END_TEST

/* Index of name in the CSV header line, or -1. */
static int column(const char *header, const char *name) {
  char copy[1024];
  snprintf(copy, sizeof copy, "%s", header);
  int i = 0;
  for (char *save, *t = strtok_r(copy, ",\n", &save); t; t = strtok_r(NULL, ",\n", &save), i++)
    if (strcmp(t, name) == 0) return i;
  return -1;
}

/* The idx-th comma-separated cell of line (empty cells kept). */
static void cell(const char *line, int idx, char *out, size_t cap) {
  for (int i = 0; i < idx && line; i++) {
    line = strchr(line, ',');
    if (line) line++;
  }
  size_t n = line ? strcspn(line, ",\n") : 0;
  if (n >= cap) n = cap - 1;
  memcpy(out, line ? line : "", n);
  out[n] = 0;
}

static const char *const required[] = {"scenario",   "threads",      "allocator", "ns_per_op",
                                       "peak_rss_kb", "final_rss_kb", "flushes"};
#define N_REQ (sizeof(required) / sizeof(required[0]))

/* Checks one data row; marks it in seen[scenario][allocator][thread slot]. */
static void check_row(const char *line, const int *col, int ncpu, int seen[N_SCEN][N_ALLOC][2]) {
  char v[N_REQ][64];
  for (size_t k = 0; k < N_REQ; k++) cell(line, col[k], v[k], sizeof v[k]);
  size_t s = 0, a = 0;
  while (s < N_SCEN && strcmp(v[0], scenarios[s])) s++;
  while (a < N_ALLOC && strcmp(v[2], allocators[a])) a++;
  ck_assert_msg(s < N_SCEN && a < N_ALLOC, "unexpected row: %s", line);
  int t = atoi(v[1]);
  ck_assert_msg(t == 1 || t == ncpu, "unexpected thread count: %s", line);
  ck_assert_msg(atof(v[3]) > 0, "no ns_per_op (run failed?): %s", line);
  ck_assert_msg(atol(v[4]) > 0 && atol(v[5]) > 0, "no RSS: %s", line);
  if (a >= 4) ck_assert_msg(v[6][0] != 0, "hakmem row without flush statistics: %s", line);
  seen[s][a][t == 1 ? 0 : 1]++;
}

START_TEST(smoke_csv_has_every_row) {
  const char *why = cannot_run();
  if (why) {
    fprintf(stderr, "SKIP: test_compare: %s\n", why);
    return;
  }
  char csv[] = "/tmp/hak-test-compare-XXXXXX", out[] = "/tmp/hak-test-compare-out-XXXXXX";
  int fd = mkstemp(csv), fd2 = mkstemp(out);
  ck_assert(fd >= 0 && fd2 >= 0);
  close(fd);
  close(fd2);
  char *argv[] = {COMPARE, "--smoke", "--require-all", "--csv", csv, NULL};
  int rc = run(argv, NULL, out, 1);
  ck_assert_msg(rc == 0, "bench/compare --smoke exited %d:\n%s", rc, slurp(out));

  FILE *f = fopen(csv, "r");
  ck_assert_ptr_nonnull(f);
  char line[1024];
  ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
  int col[N_REQ];
  for (size_t k = 0; k < N_REQ; k++) {
    col[k] = column(line, required[k]);
    ck_assert_msg(col[k] >= 0, "CSV header lacks %s: %s", required[k], line);
  }
  cpu_set_t set;
  ck_assert_int_eq(sched_getaffinity(0, sizeof set, &set), 0);
  int ncpu = CPU_COUNT(&set);
  int seen[N_SCEN][N_ALLOC][2] = {0};
  while (fgets(line, sizeof line, f)) check_row(line, col, ncpu, seen);
  fclose(f);
  for (size_t s = 0; s < N_SCEN; s++)
    for (size_t a = 0; a < N_ALLOC; a++)
      for (int t = 0; t < (ncpu > 1 ? 2 : 1); t++)
        ck_assert_msg(seen[s][a][t] == 1, "%s/%s threads=%d: %d rows", scenarios[s],
                      allocators[a], t ? ncpu : 1, seen[s][a][t]);
  unlink(csv);
  unlink(out);
}
END_TEST

Suite *test_compare_suite(void) {
  Suite *s = suite_create("compare");
  TCase *tc = tcase_create("compare");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, same_work_under_every_allocator);
  tcase_add_test(tc, smoke_csv_has_every_row);
  suite_add_tcase(s, tc);
  return s;
}
