/* The event table (names, how to open each) and what an open error means. */
#include "hperf_int.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DTLB(op) (PERF_COUNT_HW_CACHE_DTLB | ((uint64_t)(op) << 8) | \
                  ((uint64_t)PERF_COUNT_HW_CACHE_RESULT_MISS << 16))

const hperf_def_t hperf_defs[HPERF_EVENT_COUNT] = {
  [HPERF_TLB_FLUSH] = {"tlb:tlb_flush", "tlb_flush", HPERF_KIND_TP, 0, "tlb", "tlb_flush", 0},
  [HPERF_TLB_LOCAL_MM] = {"tlb:tlb_flush reason=local_mm_shootdown", "local_mm_shootdown",
                          HPERF_KIND_TLB_REASON, 3, NULL, NULL, 0},
  [HPERF_TLB_REMOTE_SEND_IPI] = {"tlb:tlb_flush reason=remote_send_ipi", "remote_send_ipi",
                                 HPERF_KIND_TLB_REASON, 4, NULL, NULL, 0},
  [HPERF_TLB_REMOTE_SHOOTDOWN] = {"tlb:tlb_flush reason=remote_shootdown", "remote_shootdown",
                                  HPERF_KIND_TLB_REASON, 1, NULL, NULL, 0},
  [HPERF_TLB_TASK_SWITCH] = {"tlb:tlb_flush reason=task_switch", "task_switch",
                             HPERF_KIND_TLB_REASON, 0, NULL, NULL, 0},
  [HPERF_TLB_OTHER] = {"tlb:tlb_flush reason=other", "other", HPERF_KIND_TLB_REASON, 2, NULL, NULL, 0},
  [HPERF_DTLB_LOAD_MISSES] = {"dTLB-load-misses", "dtlb_load_misses", HPERF_KIND_HW_CACHE,
                              DTLB(PERF_COUNT_HW_CACHE_OP_READ), NULL, NULL, 1},
  [HPERF_DTLB_STORE_MISSES] = {"dTLB-store-misses", "dtlb_store_misses", HPERF_KIND_HW_CACHE,
                               DTLB(PERF_COUNT_HW_CACHE_OP_WRITE), NULL, NULL, 1},
  /* Faults are counted with user registers, so exclude_kernel keeps them. */
  [HPERF_PAGE_FAULTS] = {"page-faults", "page_faults", HPERF_KIND_SW,
                         PERF_COUNT_SW_PAGE_FAULTS, NULL, NULL, 1},
  [HPERF_MINOR_FAULTS] = {"minor-faults", "minor_faults", HPERF_KIND_SW,
                          PERF_COUNT_SW_PAGE_FAULTS_MIN, NULL, NULL, 1},
  [HPERF_MAJOR_FAULTS] = {"major-faults", "major_faults", HPERF_KIND_SW,
                          PERF_COUNT_SW_PAGE_FAULTS_MAJ, NULL, NULL, 1},
  /* Switches and migrations happen in the kernel: exclude_kernel would read 0. */
  [HPERF_CONTEXT_SWITCHES] = {"context-switches", "context_switches", HPERF_KIND_SW,
                              PERF_COUNT_SW_CONTEXT_SWITCHES, NULL, NULL, 0},
  [HPERF_CPU_MIGRATIONS] = {"cpu-migrations", "cpu_migrations", HPERF_KIND_SW,
                            PERF_COUNT_SW_CPU_MIGRATIONS, NULL, NULL, 0},
  [HPERF_TASK_CLOCK] = {"task-clock", "task_clock_ns", HPERF_KIND_SW,
                        PERF_COUNT_SW_TASK_CLOCK, NULL, NULL, 1},
  [HPERF_SYS_MADVISE] = {"syscalls:sys_enter_madvise", "sys_madvise", HPERF_KIND_TP, 0,
                         "syscalls", "sys_enter_madvise", 0},
  [HPERF_SYS_PROCESS_MADVISE] = {"syscalls:sys_enter_process_madvise", "sys_process_madvise",
                                 HPERF_KIND_TP, 0, "syscalls", "sys_enter_process_madvise", 0},
  [HPERF_SYS_IO_URING_ENTER] = {"syscalls:sys_enter_io_uring_enter", "sys_io_uring_enter",
                                HPERF_KIND_TP, 0, "syscalls", "sys_enter_io_uring_enter", 0},
};

const char *hperf_event_name(hperf_event_t ev) {
  return (unsigned)ev < HPERF_EVENT_COUNT ? hperf_defs[ev].name : "?";
}

const char *hperf_event_key(hperf_event_t ev) {
  return (unsigned)ev < HPERF_EVENT_COUNT ? hperf_defs[ev].key : "?";
}

const char *hperf_state_name(hperf_state_t st) {
  switch (st) {
  case HPERF_COUNTED: return "counted";
  case HPERF_NOT_SUPPORTED: return "not supported";
  case HPERF_NOT_PERMITTED: return "not permitted";
  }
  return "?";
}

int hperf_paranoid(void) {
  FILE *f = fopen("/proc/sys/kernel/perf_event_paranoid", "r");
  int v = 2;
  if (f) {
    if (fscanf(f, "%d", &v) != 1) v = 2;
    fclose(f);
  }
  return v;
}

static int have_cpu_pmu(void) {
  struct stat st;
  return stat("/sys/bus/event_source/devices/cpu", &st) == 0 ||
         stat("/sys/bus/event_source/devices/cpu_core", &st) == 0;
}

/* perf's own rule: EINVAL, ENOSYS, ENOENT, ENXIO, EOPNOTSUPP mean "not supported";
 * EACCES and EPERM mean "not permitted". */
void hperf_state_from_errno(hperf_value_t *v, int err, const char *what) {
  v->value = 0;
  if (err == EACCES || err == EPERM) {
    v->state = HPERF_NOT_PERMITTED;
    if (geteuid() != 0)
      snprintf(v->why, sizeof v->why, "not root, perf_event_paranoid=%d", hperf_paranoid());
    else
      snprintf(v->why, sizeof v->why, "%s: %s", what, strerror(err));
    return;
  }
  v->state = HPERF_NOT_SUPPORTED;
  if (err == ENOENT && strncmp(what, "dTLB", 4) == 0 && !have_cpu_pmu())
    snprintf(v->why, sizeof v->why, "no hardware PMU (ENOENT)");
  else
    snprintf(v->why, sizeof v->why, "%s: %s", what, strerror(err));
}

void hperf_json_value(FILE *f, const hperf_value_t *v) {
  if (v->state == HPERF_COUNTED) fprintf(f, "%llu", (unsigned long long)v->value);
  else fputs("null", f);
}
