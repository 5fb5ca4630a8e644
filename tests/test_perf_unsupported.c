/* hperf reports events it cannot count as "not supported" or "not permitted" with a reason, writes them as null, and names them in its one-line summary. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hperf.h"

static int have_cpu_pmu(void) {
  struct stat st;
  return stat("/sys/bus/event_source/devices/cpu", &st) == 0 ||
         stat("/sys/bus/event_source/devices/cpu_core", &st) == 0;
}

/* Every event has a valid state, and a reason when it is not counted. */
static void check_states(hperf_t *h) {
  const char *missing = hperf_missing(h);
  for (int ev = 0; ev < HPERF_EVENT_COUNT; ev++) {
    const hperf_value_t *v = hperf_event_state(h, (hperf_event_t)ev);
    ck_assert(v->state == HPERF_COUNTED || v->state == HPERF_NOT_SUPPORTED ||
              v->state == HPERF_NOT_PERMITTED);
    if (v->state == HPERF_COUNTED) continue;
    ck_assert_msg(v->why[0] != 0, "%s has no reason", hperf_event_name(ev));
    if (ev < HPERF_TLB_REASON_FIRST || ev > HPERF_TLB_REASON_LAST)
      ck_assert_msg(strstr(missing, hperf_event_name(ev)) != NULL, "%s not in: %s",
                    hperf_event_name(ev), missing);
  }
}

START_TEST(hardware_events_without_pmu) {
  hperf_t *h = hperf_open();
  ck_assert_ptr_nonnull(h);
  check_states(h);
  if (!have_cpu_pmu()) {
    ck_assert_int_eq(hperf_event_state(h, HPERF_DTLB_LOAD_MISSES)->state, HPERF_NOT_SUPPORTED);
    ck_assert_int_eq(hperf_event_state(h, HPERF_DTLB_STORE_MISSES)->state, HPERF_NOT_SUPPORTED);
  }
  /* Read after a window: not counted stays not counted, and is written null. */
  hperf_start(h);
  hperf_stop(h);
  hperf_counts_t c;
  hperf_read(h, &c);
  for (int ev = 0; ev < HPERF_EVENT_COUNT; ev++) {
    if (c.ev[ev].state == HPERF_COUNTED) continue;
    char buf[32] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    hperf_json_value(f, &c.ev[ev]);
    fclose(f);
    ck_assert_str_eq(buf, "null");
  }
  hperf_close(h);
}
END_TEST

/* As an unprivileged user, tracepoints are "not permitted", never 0. */
START_TEST(not_root_is_not_permitted) {
  if (geteuid() != 0) {
    fprintf(stderr, "SKIP: perf_unsupported:not_root: needs root to drop privileges\n");
    return;
  }
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    hperf_t *h = hperf_open();
    if (!h) _exit(3);
    int ok = hperf_event_state(h, HPERF_TLB_FLUSH)->state == HPERF_NOT_PERMITTED &&
             hperf_event_state(h, HPERF_SYS_MADVISE)->state == HPERF_NOT_PERMITTED &&
             hperf_event_state(h, HPERF_TLB_LOCAL_MM)->state == HPERF_NOT_PERMITTED &&
             strstr(hperf_missing(h), "not root") != NULL &&
             hperf_event_state(h, HPERF_PAGE_FAULTS)->state == HPERF_COUNTED;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFEXITED(status));
  ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

Suite *test_perf_unsupported_suite(void) {
  Suite *s = suite_create("perf_unsupported");
  TCase *tc = tcase_create("states");
  tcase_set_timeout(tc, 20);
  tcase_add_test(tc, hardware_events_without_pmu);
  tcase_add_test(tc, not_root_is_not_permitted);
  suite_add_tcase(s, tc);
  return s;
}
