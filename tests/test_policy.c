/* The adaptive release policy: it keeps memory that comes back soon, gives back memory that does not, never holds past the cap, and yields to settings the program makes. */
#include <time.h>

#include "testutil.h"

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void adaptive(tu_opts_t *o) {
  tu_quiet(o);          /* fixes the policy (it sets the delay) ... */
  tu_opt(o, "POLICY", "adaptive");  /* ... which is made adaptive again */
  tu_opt(o, "CACHE_BYTES", "1G");
}

/* Blocks freed and taken again 30 ms later, for a second: the policy must
 * settle on an arm that keeps them (delay above the reuse interval). */
START_TEST(keeps_memory_that_comes_back) {
  tu_opts_t o = {0};
  adaptive(&o);
  enum { N = 8 };
  void *v[N];
  uint64_t end = now_ms() + 1500;
  while (now_ms() < end) {
    for (int i = 0; i < N; i++) {
      v[i] = hak_malloc(4 * MiB);
      memset(v[i], 1, 4 * MiB);
    }
    for (int i = 0; i < N; i++) hak_free(v[i]);
    tu_sleep_ms(30);
  }
  hak_stats_t s = tu_stats();
  ck_assert_int_eq(s.policy_adaptive, 1);
  ck_assert_msg(s.policy_epochs >= 3, "only %llu epochs scored", (unsigned long long)s.policy_epochs);
  ck_assert_msg(s.arm_delay_ms[s.policy_arm] > 30,
                "arm %d (delay %llu ms) releases what comes back after 30 ms", s.policy_arm,
                (unsigned long long)s.arm_delay_ms[s.policy_arm]);
  ck_assert_msg(s.arm_cost[s.policy_arm] <= s.arm_cost[0], "the chosen arm costs more than arm 0");
  tu_opts_restore(&o);
}
END_TEST

/* Memory freed and never asked for again: the policy must not sit on it.
 * Nothing is allocated while the blocks go back one by one, so no free can be
 * reused (a block of a new, slightly larger size would be: the large cache
 * serves up to 1.25 times the size). */
START_TEST(gives_back_memory_that_does_not) {
  tu_opts_t o = {0};
  adaptive(&o);
  enum { N = 300 };
  static void *v[N];
  for (int i = 0; i < N; i++) {
    v[i] = hak_malloc(512 * KiB);
    ck_assert_ptr_nonnull(v[i]);
    memset(v[i], 1, 512 * KiB);
  }
  uint64_t end = now_ms() + 1500;
  int freed = 0;
  while (now_ms() < end && freed < N) {
    hak_free(v[freed++]);
    tu_sleep_ms(5);
  }
  hak_stats_t s = tu_stats();
  ck_assert_msg(s.policy_epochs >= 3, "only %llu epochs scored", (unsigned long long)s.policy_epochs);
  ck_assert_msg(s.arm_delay_ms[s.policy_arm] <= 10,
                "arm %d holds never-reused memory for %llu ms", s.policy_arm,
                (unsigned long long)s.arm_delay_ms[s.policy_arm]);
  ck_assert_uint_eq(s.ranges_cancelled, 0);  /* the premise: nothing was reused */
  while (freed < N) hak_free(v[freed++]);
  tu_opts_restore(&o);
}
END_TEST

/* Whatever it chooses, the delay stays within HAKMEM_PURGE_CAP_MS. */
START_TEST(delay_within_cap) {
  tu_opts_t o = {0};
  adaptive(&o);
  tu_opt(&o, "PURGE_CAP_MS", "40");
  uint64_t end = now_ms() + 800;
  while (now_ms() < end) {
    void *p = hak_malloc(2 * MiB);
    memset(p, 1, 2 * MiB);
    hak_free(p);
    tu_sleep_ms(20);
    long long d = hak_option_get("PURGE_DELAY_MS");
    ck_assert_msg(d >= 0 && d <= 40, "delay %lld above the 40 ms cap", d);
  }
  /* Idle now: within the cap (and a few wakeups) nothing is left resident. */
  hak_stats_t s;
  TU_WAIT_STATS(s, s.pending_ranges == 0);
  ck_assert_uint_eq(s.pending_ranges, 0);
  tu_opts_restore(&o);
}
END_TEST

/* A program that sets a delay or a batch limit gets exactly that. */
START_TEST(explicit_settings_fix_the_policy) {
  tu_opts_t o = {0};
  adaptive(&o);
  ck_assert_int_eq(hak_option_get("POLICY"), 1);
  tu_opt(&o, "PURGE_DELAY_MS", "77");
  ck_assert_int_eq(hak_option_get("POLICY"), 0);
  for (int i = 0; i < 20; i++) {
    void *p = hak_malloc(1 * MiB);
    hak_free(p);
    tu_sleep_ms(10);
  }
  ck_assert_int_eq(hak_option_get("PURGE_DELAY_MS"), 77);
  hak_stats_t s = tu_stats();
  ck_assert_int_eq(s.policy_adaptive, 0);
  ck_assert_int_eq(s.policy_arm, -1);
  ck_assert_int_eq(hak_option_set("POLICY", "sometimes"), -1);
  tu_opts_restore(&o);
}
END_TEST

Suite *test_policy_suite(void) {
  Suite *s = suite_create("policy");
  TCase *tc = tcase_create("policy");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, keeps_memory_that_comes_back);
  tcase_add_test(tc, gives_back_memory_that_does_not);
  tcase_add_test(tc, delay_within_cap);
  tcase_add_test(tc, explicit_settings_fix_the_policy);
  suite_add_tcase(s, tc);
  return s;
}
