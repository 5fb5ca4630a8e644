/* LD_PRELOAD smoke tests: python3, sort and gcc under libhakmem.so give the same output as without it; stats reports; the library brings no other library into the program. */
#include "testutil.h"

#define LIBSO "lib/libhakmem.so"

static char preload_env[512];

static const char *preload(void) {
  char cwd[384];
  if (!getcwd(cwd, sizeof cwd)) cwd[0] = '\0';
  snprintf(preload_env, sizeof preload_env, "LD_PRELOAD=%s/" LIBSO, cwd);
  return preload_env;
}

/* Everything here needs hakmem as the process allocator. */
#define NEED_PRELOAD()                                                        \
  do {                                                                        \
    if (HAK_SANITIZE) SKIP_TEST("sanitizer build: " LIBSO " has no malloc");  \
    if (access(LIBSO, R_OK) != 0) SKIP_TEST(LIBSO " not built");              \
  } while (0)

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
}

/* Runs argv without and with hakmem; both must exit 0 with the same stdout.
 * Returns the JSON stats line of the preloaded run. */
static char *same_output(const char *const *argv, const char *in_path) {
  tu_run_t plain, hak;
  ck_assert_int_eq(tu_run(argv, NULL, in_path, &plain), 0);
  ck_assert_msg(tu_exited_ok(&plain), "%s failed without hakmem: 0x%x %s", argv[0], plain.status,
                plain.err);
  const char *env[] = {preload(), NULL};
  char *rep = NULL;
  {
    char path[128], file_env[160];
    tu_tmpname(path, sizeof path, "preload");
    snprintf(file_env, sizeof file_env, "HAKMEM_STATS_FILE=%s", path);
    const char *env2[] = {env[0], "HAKMEM_STATS=json", file_env, NULL};
    ck_assert_int_eq(tu_run(argv, env2, in_path, &hak), 0);
    char *text = tu_read_file(path, NULL);
    unlink(path);
    const char *last = NULL;
    for (const char *p = text; p && (p = strstr(p, "hakmem-stats: {")) != NULL; p++) last = p;
    if (last) rep = strdup(last);
    free(text);
  }
  ck_assert_msg(tu_exited_ok(&hak), "%s failed under hakmem: 0x%x %s", argv[0], hak.status,
                hak.err);
  ck_assert_msg(strlen(plain.out) == strlen(hak.out) && strcmp(plain.out, hak.out) == 0,
                "%s: output differs under hakmem (%zu vs %zu bytes)", argv[0], strlen(plain.out),
                strlen(hak.out));
  ck_assert_msg(rep != NULL, "%s under hakmem wrote no stats report (preload not active?)",
                argv[0]);
  tu_run_free(&plain);
  tu_run_free(&hak);
  return rep;
}

static const char py_script[] =
    "import sys\n"
    "d = {}\n"
    "for i in range(200000):\n"
    "    d[str(i)] = [i, i * 2, str(i) * 3, {'k': i}]\n"
    "s = 0\n"
    "for k, v in d.items():\n"
    "    s += v[0] + len(v[2]) + v[3]['k']\n"
    "lists = [list(range(i % 300)) for i in range(30000)]\n"
    "s += sum(len(x) for x in lists)\n"
    "del d, lists\n"
    "blobs = [bytearray(400 * 1024) for _ in range(64)]\n"
    "for b in blobs: b[0] = 1\n"
    "s += len(blobs)\n"
    "del blobs\n"
    "words = sorted({str(i * 7919 % 100003) for i in range(100000)})\n"
    "print(s, len(words), words[:3], words[-3:])\n";

/* readelf's output for the library, with one option (-d, --dyn-syms). */
static char *readelf(const char *opt) {
  const char *argv[] = {"readelf", "-W", opt, LIBSO, NULL};
  tu_run_t r;
  ck_assert_int_eq(tu_run(argv, NULL, NULL, &r), 0);
  ck_assert_msg(tu_exited_ok(&r), "readelf %s %s failed: %s", opt, LIBSO, r.err);
  free(r.err);
  return r.out;
}

/* Preloaded, hakmem needs only the C library: liburing is inside it and
 * hidden, so a program that links its own liburing (another version, say)
 * binds to its own, and no liburing.so is mapped into every program. */
START_TEST(needs_only_libc) {
  NEED_PRELOAD();
  char *dyn = readelf("-d");
  ck_assert_msg(strstr(dyn, "liburing") == NULL, "%s needs liburing.so:\n%s", LIBSO, dyn);
  ck_assert_msg(strstr(dyn, "TEXTREL") == NULL, "%s has text relocations", LIBSO);
  free(dyn);
  char *syms = readelf("--dyn-syms");
  for (char *line = strtok(syms, "\n"); line; line = strtok(NULL, "\n"))
    ck_assert_msg(!(strstr(line, "io_uring_") && !strstr(line, " UND ")),
                  "%s exports a liburing symbol: %s", LIBSO, line);
  free(syms);
}
END_TEST

/* The real interpreter, not a wrapper script (pyenv shims are bash). */
static int python_path(char *out, size_t n) {
  const char *argv[] = {"python3", "-c", "import sys; print(sys.executable)", NULL};
  tu_run_t r;
  if (tu_run(argv, NULL, NULL, &r) != 0 || !tu_exited_ok(&r)) return -1;
  snprintf(out, n, "%s", r.out);
  out[strcspn(out, "\n")] = '\0';
  tu_run_free(&r);
  return out[0] ? 0 : -1;
}

START_TEST(python_dicts_and_lists) {
  NEED_PRELOAD();
  char py[256];
  if (python_path(py, sizeof py) != 0) SKIP_TEST("no python3");
  const char *argv[] = {py, "-c", py_script, NULL};  /* no file to leave behind */
  char *rep = same_output(argv, NULL);
  ck_assert_int_gt(tu_json_need(rep, "alloc_small"), 10000);  /* pymalloc serves the rest */
  ck_assert_int_gt(tu_json_need(rep, "alloc_large"), 10);
  ck_assert_int_eq(tu_json_need(rep, "pending_ranges"), 0);
  free(rep);
}
END_TEST

/* About 6 MB of lines in a fixed pseudo-random order. */
static void write_unsorted(const char *path) {
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 200000; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    fprintf(f, "%016llx line %d %s\n", (unsigned long long)x, i, (x & 1) ? "odd" : "even-longer");
  }
  fclose(f);
}

START_TEST(sort_large_file) {
  NEED_PRELOAD();
  char in[128];
  tu_tmpname(in, sizeof in, "sort");
  write_unsorted(in);
  const char *argv[] = {"env", "LC_ALL=C", "sort", "-S", "64M", "--parallel=2", in, NULL};
  char *rep = same_output(argv, NULL);
  ck_assert_int_gt(tu_json_need(rep, "alloc_large") + tu_json_need(rep, "alloc_small"), 0);
  free(rep);
  unlink(in);
}
END_TEST

static const char c_program[] =
    "#include <stdio.h>\n"
    "#include <stdlib.h>\n"
    "#include <string.h>\n"
    "static int cmp(const void *a, const void *b) {\n"
    "  return *(const int *)a - *(const int *)b;\n"
    "}\n"
    "int main(void) {\n"
    "  int n = 100000; int *v = malloc(n * sizeof *v);\n"
    "  for (int i = 0; i < n; i++) v[i] = (i * 7919) % 100003;\n"
    "  qsort(v, n, sizeof *v, cmp);\n"
    "  char *s = strdup(\"hakmem\"); long sum = 0;\n"
    "  for (int i = 0; i < n; i += 1000) sum += v[i];\n"
    "  printf(\"%s %d %d %ld\\n\", s, v[0], v[n - 1], sum);\n"
    "  free(s); free(v); return 0;\n"
    "}\n";

/* gcc (cc1, as, collect2, ld) under hakmem builds a program; the program,
 * also under hakmem, prints what the one built without hakmem prints. */
START_TEST(gcc_compile_and_run) {
  NEED_PRELOAD();
  char src[160], bin_plain[160], bin_hak[160];
  tu_tmpname(src, sizeof src, "gcc");
  snprintf(src + strlen(src), sizeof src - strlen(src), ".c");
  write_file(src, c_program);
  snprintf(bin_plain, sizeof bin_plain, "%s.plain", src);
  snprintf(bin_hak, sizeof bin_hak, "%s.hak", src);

  const char *cc_plain[] = {"gcc", "-O2", "-o", bin_plain, src, NULL};
  tu_run_t r;
  ck_assert_int_eq(tu_run(cc_plain, NULL, NULL, &r), 0);
  ck_assert_msg(tu_exited_ok(&r), "gcc without hakmem: %s", r.err);
  tu_run_free(&r);
  const char *env[] = {preload(), NULL};
  const char *cc_hak[] = {"gcc", "-O2", "-o", bin_hak, src, NULL};
  ck_assert_int_eq(tu_run(cc_hak, env, NULL, &r), 0);
  ck_assert_msg(tu_exited_ok(&r), "gcc under hakmem: 0x%x %s", r.status, r.err);
  tu_run_free(&r);

  tu_run_t a, b;
  const char *run_plain[] = {bin_plain, NULL};
  const char *run_hak[] = {bin_hak, NULL};
  ck_assert_int_eq(tu_run(run_plain, NULL, NULL, &a), 0);
  ck_assert_int_eq(tu_run(run_hak, env, NULL, &b), 0);
  ck_assert(tu_exited_ok(&a));
  ck_assert_msg(tu_exited_ok(&b), "program under hakmem: 0x%x %s", b.status, b.err);
  ck_assert_str_eq(a.out, b.out);
  ck_assert_msg(strstr(a.out, "hakmem ") == a.out, "unexpected output %s", a.out);
  tu_run_free(&a);
  tu_run_free(&b);
  unlink(src);
  unlink(bin_plain);
  unlink(bin_hak);
  src[strlen(src) - 2] = '\0';
  unlink(src);  /* the mkstemp name itself */
}
END_TEST

START_TEST(stats_table_printed) {
  NEED_PRELOAD();
  char py[256];
  if (python_path(py, sizeof py) != 0) SKIP_TEST("no python3");
  const char *env[] = {preload(), "HAKMEM_STATS=1", NULL};
  const char *argv[] = {py, "-c", "x = [str(i) * 10 for i in range(100000)]; print(len(x))", NULL};
  tu_run_t r;
  ck_assert_int_eq(tu_run(argv, env, NULL, &r), 0);
  ck_assert_msg(tu_exited_ok(&r), "python: 0x%x %s", r.status, r.err);
  ck_assert_str_eq(r.out, "100000\n");
  /* The table: a title, then one counter per line, named in words. */
  static const char *const keys[] = {"hakmem stats", "ranges added", "ranges flushed",
                                     "flush syscalls", "flush mode", "pending ranges"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    ck_assert_msg(strstr(r.err, keys[i]) != NULL, "stats table lacks %s:\n%s", keys[i], r.err);
  ck_assert_int_ge(tu_count_substr(r.err, "\n"), 10);
  tu_run_free(&r);
}
END_TEST

/* The same python run with HAKMEM_FLUSH=vector and =loop: both work, loop makes
 * one syscall per range, vector fewer. */
START_TEST(vector_vs_loop_under_python) {
  NEED_PRELOAD();
  if (tu_probe_vector_dontneed() != 0) SKIP_TEST("kernel has no vectored MADV_DONTNEED");
  char py[256];
  if (python_path(py, sizeof py) != 0) SKIP_TEST("no python3");
  static const char code[] =
      "blobs = [bytearray(512 * 1024) for _ in range(300)]\n"
      "for b in blobs: b[0] = 1\n"
      "del blobs\n"
      "print('ok')\n";
  const char *argv[] = {py, "-c", code, NULL};
  long long calls[2], ranges[2];
  static const char *const modes[] = {"HAKMEM_FLUSH=vector", "HAKMEM_FLUSH=loop"};
  for (int m = 0; m < 2; m++) {
    const char *env[] = {preload(), modes[m], NULL};
    tu_run_t r;
    char *rep = tu_run_report(argv, env, NULL, NULL, &r);
    ck_assert_msg(tu_exited_ok(&r), "%s: 0x%x %s", modes[m], r.status, r.err);
    ck_assert_str_eq(r.out, "ok\n");
    ck_assert_msg(rep != NULL, "%s: no report", modes[m]);
    char mode[32] = "";
    tu_json_str(rep, "flush_mode", mode, sizeof mode);
    ck_assert_str_eq(mode, m ? "loop" : "vector");
    calls[m] = tu_json_need(rep, "flush_syscalls");
    ranges[m] = tu_json_need(rep, "ranges_flushed");
    ck_assert_int_eq(tu_json_need(rep, "flush_errors"), 0);
    ck_assert_int_ge(ranges[m], 300);
    free(rep);
    tu_run_free(&r);
  }
  ck_assert_int_eq(calls[1], ranges[1]);  /* loop: one madvise per range */
  ck_assert_msg(calls[0] * 10 <= ranges[0], "vector: %lld syscalls for %lld ranges", calls[0],
                ranges[0]);
}
END_TEST

Suite *test_preload_suite(void) {
  Suite *s = suite_create("preload");
  TCase *tc = tcase_create("preload");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, python_dicts_and_lists);
  tcase_add_test(tc, sort_large_file);
  tcase_add_test(tc, gcc_compile_and_run);
  tcase_add_test(tc, stats_table_printed);
  tcase_add_test(tc, vector_vs_loop_under_python);
  tcase_add_test(tc, needs_only_libc);
  suite_add_tcase(s, tc);
  return s;
}
