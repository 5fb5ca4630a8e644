/* bench/vm --quick --json writes valid JSON with the documented fields, and as root its vector runs show at least 50x fewer tlb:tlb_flush per flush call than its loop runs. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

/* The checks, in Python (a set-up package): exit 0, or print what is wrong.
 * argv: json file, "root" when tracepoints must have been counted. */
static const char *checker =
  "import json, sys\n"
  "d = json.load(open(sys.argv[1]))\n"
  "root = sys.argv[2] == 'root'\n"
  "def fail(m): print(m); sys.exit(1)\n"
  "for k in ('kernel', 'config', 'runs'):\n"
  "    k in d or fail('no key ' + k)\n"
  "runs = d['runs']\n"
  "modes = [r['flush'] for r in runs]\n"
  "set(modes) == {'loop', 'vector'} or fail('modes %s' % modes)\n"
  "ev_names = ('tlb:tlb_flush', 'dTLB-load-misses', 'dTLB-store-misses', 'page-faults',\n"
  "            'minor-faults', 'major-faults', 'context-switches', 'cpu-migrations', 'task-clock',\n"
  "            'syscalls:sys_enter_madvise', 'syscalls:sys_enter_process_madvise',\n"
  "            'syscalls:sys_enter_io_uring_enter')\n"
  "reasons = ('local_mm_shootdown', 'remote_send_ipi', 'remote_shootdown', 'task_switch', 'other')\n"
  "num = (int, float)\n"
  "for r in runs:\n"
  "    for k in ('flush', 'ns_per_op', 'flush_calls', 'syscalls', 'ranges', 'events', 'tlb_flush_by_reason'):\n"
  "        k in r or fail('run without ' + k)\n"
  "    isinstance(r['ns_per_op'], num) and r['ns_per_op'] > 0 or fail('ns_per_op')\n"
  "    r['flush_calls'] > 0 or fail('no flush in a run')\n"
  "    for e in ev_names:\n"
  "        e in r['events'] or fail('no event ' + e)\n"
  "        v = r['events'][e]\n"
  "        v is None or isinstance(v, int) or fail('event %s = %r' % (e, v))\n"
  "    for k in reasons:\n"
  "        k in r['tlb_flush_by_reason'] or fail('no reason ' + k)\n"
  "    if r['flush'] == 'loop': r['syscalls'] == r['ranges'] or fail('loop: a syscall per range')\n"
  "    if r['flush'] == 'vector' and r['flush_used'] == 'vector':\n"
  "        r['syscalls'] == r['flush_calls'] or fail('vector: a syscall per flush')\n"
  "if not root: sys.exit(0)\n"
  "per = {}\n"
  "for r in runs:\n"
  "    t = r['events']['tlb:tlb_flush']\n"
  "    t is not None or fail('root, but tlb:tlb_flush not counted')\n"
  "    r['tlb_lost_samples'] == 0 or fail('lost samples')\n"
  "    sum(r['tlb_flush_by_reason'].values()) == t or fail('reasons do not add up')\n"
  "    per.setdefault(r['flush_used'], []).append(t / r['flush_calls'])\n"
  "'vector' in per or fail('vector fell back to loop: %s' % [r['fallback'] for r in runs])\n"
  "loop, vec = min(per['loop']), max(per['vector'])\n"
  "print('tlb:tlb_flush per flush call: loop %.1f, vector %.1f' % (loop, vec))\n"
  "loop >= 50 * vec or fail('vector is not 50x below loop')\n";

static int run(const char *cmd) {
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(quick_json) {
  struct stat sb;
  if (stat("bench/vm", &sb) != 0) {
    fprintf(stderr, "SKIP: bench_vm_json: bench/vm is not built (make bench/vm)\n");
    return;
  }
  if (run("python3 -c '' 2>/dev/null") != 0) {
    fprintf(stderr, "SKIP: bench_vm_json: no python3 to check the JSON\n");
    return;
  }
  char dir[] = "/tmp/hak-vm-json-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char cmd[512], py[300];
  snprintf(py, sizeof py, "%s/check.py", dir);
  FILE *f = fopen(py, "w");
  ck_assert_ptr_nonnull(f);
  fputs(checker, f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "bench/vm --quick --perf --json %s/vm.json > %s/vm.txt 2>&1", dir, dir);
  ck_assert_int_eq(run(cmd), 0);
  /* The TLB comparison needs vector runs: root, and a kernel that takes
   * MADV_DONTNEED through process_madvise. */
  int verr = tu_probe_vector_dontneed();
  snprintf(cmd, sizeof cmd, "python3 %s %s/vm.json %s", py, dir,
           geteuid() == 0 && verr == 0 ? "root" : "user");
  int rc = run(cmd);
  if (geteuid() != 0)
    fprintf(stderr, "SKIP: bench_vm_json:tlb: not root, only the JSON fields were checked\n");
  else if (verr != 0)
    fprintf(stderr, "SKIP: bench_vm_json:tlb: no vectored MADV_DONTNEED (process_madvise: %s), "
                    "only the JSON fields were checked\n", strerror(verr));
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  run(cmd);
  ck_assert_int_eq(rc, 0);
}
END_TEST

Suite *test_bench_vm_json_suite(void) {
  Suite *s = suite_create("bench_vm_json");
  TCase *tc = tcase_create("quick");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, quick_json);
  suite_add_tcase(s, tc);
  return s;
}
