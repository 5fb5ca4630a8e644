/* USDT probes: libhakmem.so (and a program linked with libhakmem.a) carry stapsdt notes hakmem:batch_add, flush_begin, flush_end, policy_choose. */
#include "testutil.h"

/* Finds "Provider: hakmem" followed by "Name: probe" in readelf -n output and
 * returns how many arguments its "Arguments:" line lists (-1 if absent). */
static int probe_args(const char *notes, const char *probe) {
  char want[64];
  snprintf(want, sizeof want, "Name: %s\n", probe);
  for (const char *p = notes; (p = strstr(p, "Provider: hakmem\n")) != NULL; p++) {
    const char *name = strstr(p, "Name: ");
    if (!name || strncmp(name, want, strlen(want)) != 0) continue;
    const char *args = strstr(name, "Arguments:");
    const char *next = strstr(name + 1, "Provider:");
    if (!args || (next && args > next)) return 0;
    int n = 0;
    const char *end = strchr(args, '\n');
    for (const char *c = args + strlen("Arguments:"); c < end; c++)
      if (*c == '@') n++;  /* each argument is "SIZE@LOCATION" */
    return n;
  }
  return -1;
}

static char *readelf_notes(const char *file) {
  const char *argv[] = {"readelf", "-n", file, NULL};
  tu_run_t r;
  if (tu_run(argv, NULL, NULL, &r) != 0) return NULL;
  if (!tu_exited_ok(&r)) {
    tu_run_free(&r);
    return NULL;
  }
  free(r.err);
  return r.out;
}

static void check_probes(const char *file) {
  if (access(file, R_OK) != 0) ck_abort_msg("%s missing: build it first", file);
  char *notes = readelf_notes(file);
  ck_assert_msg(notes != NULL, "readelf -n %s failed (binutils installed?)", file);
  ck_assert_msg(strstr(notes, "stapsdt") != NULL, "%s has no stapsdt notes", file);
  ck_assert_msg(probe_args(notes, "batch_add") == 3, "%s: hakmem:batch_add args %d, want 3", file,
                probe_args(notes, "batch_add"));
  ck_assert_msg(probe_args(notes, "flush_begin") == 3, "%s: hakmem:flush_begin args %d, want 3",
                file, probe_args(notes, "flush_begin"));
  ck_assert_msg(probe_args(notes, "flush_end") == 4, "%s: hakmem:flush_end args %d, want 4", file,
                probe_args(notes, "flush_end"));
  ck_assert_msg(probe_args(notes, "policy_choose") == 2, "%s: hakmem:policy_choose args %d, want 2",
                file, probe_args(notes, "policy_choose"));
  free(notes);
}

START_TEST(shared_library_has_probes) { check_probes("lib/libhakmem.so"); }
END_TEST

/* The runner links libhakmem.a: the probes come along with static linking. */
START_TEST(static_link_has_probes) {
  char self[512];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);  /* readelf's own would differ */
  ck_assert_int_gt(n, 0);
  self[n] = '\0';
  check_probes(self);
}
END_TEST

Suite *test_usdt_suite(void) {
  Suite *s = suite_create("usdt");
  TCase *tc = tcase_create("usdt");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, shared_library_has_probes);
  tcase_add_test(tc, static_link_has_probes);
  suite_add_tcase(s, tc);
  return s;
}
