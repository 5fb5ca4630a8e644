/* Option parsing: K/M/G suffixes, malformed values reported once with the default kept, caps, hak_option_set/get. */
#include "testutil.h"

/* Runs prog_options with one extra variable; returns the printed value of
 * option name and how many stderr lines mention it. */
static long long run_options(const char *env_kv, const char *name, int *complaints) {
  const char *env[] = {env_kv, NULL};
  const char *argv[] = {"tests/bin/prog_options", NULL};
  tu_run_t r;
  ck_assert_int_eq(tu_run(argv, env_kv ? env : NULL, NULL, &r), 0);
  ck_assert_msg(tu_exited_ok(&r), "prog_options (%s): 0x%x %s", env_kv ? env_kv : "-", r.status,
                r.err);
  /* The line "NAME=value". */
  const char *p = NULL;
  const size_t nl = strlen(name);
  for (const char *l = r.out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
    if (strncmp(l, name, nl) == 0 && l[nl] == '=') {
      p = l + nl + 1;
      break;
    }
  ck_assert_msg(p != NULL, "no %s in %s", name, r.out);
  long long v = atoll(p);
  if (complaints) {
    *complaints = 0;
    for (char *line = strtok(r.err, "\n"); line; line = strtok(NULL, "\n"))
      if (strstr(line, name)) (*complaints)++;
  }
  tu_run_free(&r);
  return v;
}

START_TEST(defaults) {
  ck_assert_int_eq(run_options(NULL, "BATCH_MAX", NULL), 256);
  /* The fixed policy's settings; the adaptive one (the default) chooses its own. */
  ck_assert_int_eq(run_options("HAKMEM_POLICY=fixed", "PURGE_DELAY_MS", NULL), 10);
  ck_assert_int_eq(run_options("HAKMEM_POLICY=fixed", "BATCH_BYTES", NULL), 64 << 20);
  ck_assert_int_eq(run_options(NULL, "POLICY", NULL), 1);
  long long delay = run_options(NULL, "PURGE_DELAY_MS", NULL);
  ck_assert_msg(delay >= 0 && delay <= 1000, "adaptive delay %lld beyond the 1 s cap", delay);
  ck_assert_int_eq(run_options(NULL, "PURGE_CAP_MS", NULL), 1000);
  ck_assert_int_eq(run_options(NULL, "MEMORY_WEIGHT", NULL), 1000);
  ck_assert_int_eq(run_options(NULL, "TELEMETRY", NULL), 1);
  /* A setting the policy would choose, given by the program, fixes it. */
  ck_assert_int_eq(run_options("HAKMEM_PURGE_DELAY_MS=25", "POLICY", NULL), 0);
  ck_assert_int_eq(run_options("HAKMEM_PURGE_DELAY_MS=25", "PURGE_DELAY_MS", NULL), 25);
  ck_assert_int_eq(run_options("HAKMEM_BATCH_BYTES=1M", "POLICY", NULL), 0);
  ck_assert_int_eq(run_options(NULL, "FLUSH", NULL), HAK_FLUSH_AUTO);
  ck_assert_int_eq(run_options(NULL, "ADVICE", NULL), MADV_DONTNEED);
  ck_assert_int_gt(run_options(NULL, "BATCH_BYTES", NULL), 0);
  ck_assert_int_gt(run_options(NULL, "CACHE_BYTES", NULL), 0);
}
END_TEST

START_TEST(size_suffixes) {
  static const struct {
    const char *env;
    const char *name;
    long long want;
  } cases[] = {
      {"HAKMEM_BATCH_BYTES=65536", "BATCH_BYTES", 65536},
      {"HAKMEM_BATCH_BYTES=64K", "BATCH_BYTES", 64LL << 10},
      {"HAKMEM_BATCH_BYTES=3M", "BATCH_BYTES", 3LL << 20},
      {"HAKMEM_BATCH_BYTES=1G", "BATCH_BYTES", 1LL << 30},
      {"HAKMEM_CACHE_BYTES=2G", "CACHE_BYTES", 2LL << 30},
      {"HAKMEM_CACHE_BYTES=512K", "CACHE_BYTES", 512LL << 10},
      {"HAKMEM_PURGE_DELAY_MS=250", "PURGE_DELAY_MS", 250},
      {"HAKMEM_PURGE_DELAY_MS=0", "PURGE_DELAY_MS", 0},
      {"HAKMEM_BATCH_MAX=16", "BATCH_MAX", 16},
      {"HAKMEM_FLUSH=loop", "FLUSH", HAK_FLUSH_LOOP},
      {"HAKMEM_FLUSH=uring", "FLUSH", HAK_FLUSH_URING},
      {"HAKMEM_ADVICE=free", "ADVICE", MADV_FREE},
  };
  const int i = _i;
  int complaints = -1;
  long long v = run_options(cases[i].env, cases[i].name, &complaints);
  ck_assert_msg(v == cases[i].want, "%s gave %lld, want %lld", cases[i].env, v, cases[i].want);
  ck_assert_msg(complaints == 0, "%s: valid value complained about", cases[i].env);
}
END_TEST

/* A malformed value: one message naming the variable, and the default kept. */
START_TEST(malformed_reported_once) {
  static const struct {
    const char *env;
    const char *name;
  } cases[] = {
      {"HAKMEM_BATCH_MAX=abc", "BATCH_MAX"},     {"HAKMEM_BATCH_BYTES=12Q", "BATCH_BYTES"},
      {"HAKMEM_BATCH_BYTES=-4K", "BATCH_BYTES"},    {"HAKMEM_CACHE_BYTES=1.5G", "CACHE_BYTES"},
      {"HAKMEM_PURGE_DELAY_MS=ten", "PURGE_DELAY_MS"}, {"HAKMEM_FLUSH=fast", "FLUSH"},
      {"HAKMEM_ADVICE=maybe", "ADVICE"},          {"HAKMEM_BATCH_MAX=12x", "BATCH_MAX"},
  };
  const int i = _i;
  long long def = run_options(NULL, cases[i].name, NULL);
  int complaints = -1;
  long long v = run_options(cases[i].env, cases[i].name, &complaints);
  ck_assert_msg(v == def, "%s: value %lld, want the default %lld", cases[i].env, v, def);
  ck_assert_msg(complaints == 1, "%s: %d stderr lines name %s, want exactly 1", cases[i].env,
                complaints, cases[i].name);
}
END_TEST

START_TEST(batch_max_capped) {
  int complaints = 0;
  ck_assert_int_eq(run_options("HAKMEM_BATCH_MAX=5000", "BATCH_MAX", &complaints), 1024);
  ck_assert_int_le(complaints, 1);
  ck_assert_int_eq(run_options("HAKMEM_BATCH_MAX=1024", "BATCH_MAX", NULL), 1024);
  ck_assert_int_eq(run_options("HAKMEM_BATCH_MAX=1025", "BATCH_MAX", NULL), 1024);
}
END_TEST

START_TEST(option_set_and_get) {
  const long long delay0 = hak_option_get("PURGE_DELAY_MS");
  tu_opts_t o = {0};
  tu_opt(&o, "BATCH_BYTES", "64K");
  ck_assert_int_eq(hak_option_get("BATCH_BYTES"), 65536);
  tu_opt(&o, "HAKMEM_BATCH_BYTES", "2M");  /* the prefix is accepted */
  ck_assert_int_eq(hak_option_get("BATCH_BYTES"), 2 << 20);
  ck_assert_int_eq(hak_option_get("HAKMEM_BATCH_BYTES"), 2 << 20);
  tu_opt(&o, "CACHE_BYTES", "1G");
  ck_assert_int_eq(hak_option_get("CACHE_BYTES"), 1 << 30);
  tu_opt(&o, "PURGE_DELAY_MS", "77");
  ck_assert_int_eq(hak_option_get("PURGE_DELAY_MS"), 77);
  tu_opt(&o, "BATCH_MAX", "33");
  ck_assert_int_eq(hak_option_get("BATCH_MAX"), 33);

  errno = 0;
  ck_assert_int_eq(hak_option_set("BATCH_BYTES", "12Q"), -1);
  ck_assert_int_eq(errno, EINVAL);
  ck_assert_int_eq(hak_option_get("BATCH_BYTES"), 2 << 20);  /* unchanged */
  errno = 0;
  ck_assert_int_eq(hak_option_set("NO_SUCH_OPTION", "1"), -1);
  ck_assert_int_eq(errno, EINVAL);
  errno = 0;
  ck_assert_int_eq(hak_option_get("NO_SUCH_OPTION"), -1);
  ck_assert_int_eq(errno, EINVAL);
  errno = 0;
  ck_assert_int_eq(hak_option_set("PURGE_DELAY_MS", "soon"), -1);
  ck_assert_int_eq(errno, EINVAL);
  ck_assert_int_eq(hak_option_get("PURGE_DELAY_MS"), 77);

  /* BATCH_MAX never goes past IOV_MAX: capped or refused. */
  hak_option_set("BATCH_MAX", "5000");
  long long bm = hak_option_get("BATCH_MAX");
  ck_assert_msg(bm == 1024 || bm == 33, "BATCH_MAX after 5000: %lld", bm);
  tu_opts_restore(&o);
  ck_assert_int_eq(hak_option_get("PURGE_DELAY_MS"), delay0);
}
END_TEST

Suite *test_options_suite(void) {
  Suite *s = suite_create("options");
  TCase *tc = tcase_create("options");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, defaults);
  tcase_add_loop_test(tc, size_suffixes, 0, 12);
  tcase_add_loop_test(tc, malformed_reported_once, 0, 8);
  tcase_add_test(tc, batch_max_capped);
  tcase_add_test(tc, option_set_and_get);
  suite_add_tcase(s, tc);
  return s;
}
