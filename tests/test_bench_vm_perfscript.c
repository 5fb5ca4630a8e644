/* The perf script workflow (perf probe, perf record, perf script -s scripts/perf-flush-report.py) runs end to end on bench/vm and agrees with bench/vm --perf within 2%. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int run(const char *cmd) {
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int file_has(const char *path, const char *needle) {
  char line[512];
  int found = 0;
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  while (!found && fgets(line, sizeof line, f)) found = strstr(line, needle) != NULL;
  fclose(f);
  return found;
}

START_TEST(record_and_report) {
  struct stat sb;
  if (geteuid() != 0) {
    fprintf(stderr, "SKIP: bench_vm_perfscript: not root (perf probe and tracepoints need it)\n");
    return;
  }
  if (run("perf version >/dev/null 2>&1") != 0) {
    fprintf(stderr, "SKIP: bench_vm_perfscript: perf not installed (linux-perf)\n");
    return;
  }
  if (stat("bench/vm", &sb) != 0) {
    fprintf(stderr, "SKIP: bench_vm_perfscript: bench/vm is not built (make bench/vm)\n");
    return;
  }
  char dir[] = "/tmp/hak-vm-perf-XXXXXX", cmd[512], report[300];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(cmd, sizeof cmd, "scripts/perf-record-vm.sh -o %s -- --quick > %s/out.txt 2>&1", dir, dir);
  int rc = run(cmd);
  snprintf(report, sizeof report, "%s/report.txt", dir);
  if (rc != 0) {
    snprintf(cmd, sizeof cmd, "cat %s/out.txt >&2", dir);
    run(cmd);
  }
  ck_assert_int_eq(rc, 0);
  ck_assert(file_has(report, "TLB flushes by reason per flush mode"));
  ck_assert(file_has(report, "Per flush call"));
  ck_assert(file_has(report, "  AGREE: largest difference"));
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  run(cmd);
}
END_TEST

Suite *test_bench_vm_perfscript_suite(void) {
  Suite *s = suite_create("bench_vm_perfscript");
  TCase *tc = tcase_create("workflow");
  tcase_set_timeout(tc, 90);
  tcase_add_test(tc, record_and_report);
  suite_add_tcase(s, tc);
  return s;
}
