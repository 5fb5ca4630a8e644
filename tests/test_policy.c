/* The adaptive release policy: it keeps memory that comes back soon, gives back memory that does not, holds what it knows nothing of yet, never holds past the cap, learns what to do at a pause, moves as little as it must when arms tie, measures what a refault costs, and yields to settings the program makes. */

#include "testutil.h"
#include "internal.h"  /* _hak_policy_pick */

static void adaptive(tu_opts_t *o) {
  tu_quiet(o);          /* fixes the policy (it sets the delay) ... */
  tu_opt(o, "POLICY", "adaptive");  /* ... which is made adaptive again */
  tu_opt(o, "CACHE_BYTES", "1G");
}

/* 8 blocks of 4 MiB, freed and taken again every 30 ms, for ms. */
static void reuse_every_30ms(uint64_t ms) {
  enum { N = 8 };
  void *v[N];
  uint64_t end = tu_now_ms() + ms;
  while (tu_now_ms() < end) {
    for (int i = 0; i < N; i++) {
      v[i] = hak_malloc(4 * MiB);
      memset(v[i], 1, 4 * MiB);
    }
    for (int i = 0; i < N; i++) hak_free(v[i]);
    tu_sleep_ms(30);
  }
}

/* Blocks freed and taken again 30 ms later, for a second: the policy must
 * settle on an arm that keeps them (delay above the reuse interval). */
START_TEST(keeps_memory_that_comes_back) {
  tu_opts_t o = {0};
  adaptive(&o);
  reuse_every_30ms(1500);
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
  uint64_t end = tu_now_ms() + 1500;
  int freed = 0;
  while (tu_now_ms() < end && freed < N) {
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

/* A server's buffers that come back 300 ms after their free, while the
 * program stays busy (a block freed and taken again every 10 ms): from the
 * start, none of them is given back. Starting on the 100 ms arm, the first
 * rounds went back at 100 ms and were faulted in again ("8392704 bytes given
 * back and faulted in again"). */
START_TEST(holds_until_it_knows) {
  tu_opts_t o = {0};
  adaptive(&o);
  enum { N = 4 };
  void *v[N];
  for (int round = 0; round < 4; round++) {
    for (int i = 0; i < N; i++) {
      v[i] = hak_malloc(1 * MiB);
      memset(v[i], 1, 1 * MiB);
    }
    for (int i = 0; i < N; i++) hak_free(v[i]);
    for (int t = 0; t < 30; t++) {  /* 300 ms, busy */
      void *p = hak_malloc(512 * KiB);
      memset(p, 1, 4096);
      hak_free(p);
      tu_sleep_ms(10);
    }
  }
  hak_stats_t s = tu_stats();
  ck_assert_int_eq(s.policy_adaptive, 1);
  /* (less than one buffer: the set-up's hak_trim gave back a page or two of
   * the runner's own, which it may take again) */
  ck_assert_msg(s.bytes_reused_released < 1 * MiB,
                "%llu bytes given back and faulted in again (arm %d; %llu, %llu epochs on 100 and 1000 ms)",
                (unsigned long long)s.bytes_reused_released, s.policy_arm,
                (unsigned long long)s.arm_pulls[3], (unsigned long long)s.arm_pulls[4]);
  tu_opts_restore(&o);
}
END_TEST

/* Whatever it chooses, the delay stays within HAKMEM_PURGE_CAP_MS. */
START_TEST(delay_within_cap) {
  tu_opts_t o = {0};
  adaptive(&o);
  tu_opt(&o, "PURGE_CAP_MS", "40");
  uint64_t end = tu_now_ms() + 800;
  while (tu_now_ms() < end) {
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

/* Bursts of eight 1 MiB blocks, all freed, a pause of 150 ms (the program is
 * quiet for at least two epochs), then the same blocks taken again: until
 * `pauses` pauses have been learned from (or 6 s). */
static hak_stats_t pause_and_come_back(unsigned pauses) {
  enum { N = 8 };
  void *v[N];
  uint64_t end = tu_now_ms() + 6000;
  hak_stats_t s = tu_stats();
  while (tu_now_ms() < end && s.policy_pauses < pauses) {
    for (int i = 0; i < N; i++) {
      v[i] = hak_malloc(1 * MiB);
      memset(v[i], 1, 1 * MiB);
    }
    for (int i = 0; i < N; i++) hak_free(v[i]);
    tu_sleep_ms(150);
    s = tu_stats();
  }
  ck_assert_msg(s.policy_pauses >= pauses, "%llu pauses seen in 6 s",
                (unsigned long long)s.policy_pauses);
  return s;
}

/* Memory that always comes back after a short pause is held through it when
 * memory is cheap, and given back at the pause when it is dear: the pause
 * rule weighs the refault against the memory held, as HAKMEM_MEMORY_WEIGHT
 * says. (1 MiB blocks: 4 KiB pages, whose refault costs most.) */
START_TEST(pause_rule_follows_the_weight) {
  tu_opts_t o = {0};
  adaptive(&o);
  tu_opt(&o, "MEMORY_WEIGHT", "200");  /* 8 MiB for 0.2 s: 0.3 ms; a refault of 8 MiB: 2-6 ms */
  hak_stats_t s = pause_and_come_back(4);
  ck_assert_msg(s.pause_hold == 1,
                "gives back at each pause what comes back 150 ms later (us per pause: give back "
                "%.0f, hold %.0f; refault %.0f ps/byte)",
                s.pause_cost_give_back, s.pause_cost_hold, s.refault_ps);
  tu_opt(&o, "MEMORY_WEIGHT", "1000000");  /* a MiB held one second is worth a CPU second */
  s = pause_and_come_back(s.policy_pauses + 4);
  ck_assert_msg(s.pause_hold == 0, "holds memory through pauses at any price (give back %.0f, hold %.0f)",
                s.pause_cost_give_back, s.pause_cost_hold);
  tu_opts_restore(&o);
}
END_TEST

/* The refault cost the policy assumes is measured on this machine: for
 * 4 KiB pages at start, for huge pages once the program reuses released
 * memory in them (not before: the probe costs 2 MiB of RSS). */
START_TEST(refault_cost_measured) {
  tu_opts_t o = {0};
  adaptive(&o);
  void *p = hak_malloc(1 * MiB);
  memset(p, 1, 1 * MiB);
  hak_free(p);  /* the purge thread runs: the policy ticks */
  hak_stats_t s;
  TU_WAIT_STATS(s, s.policy_epochs >= 1);
  ck_assert_msg(s.refault_ps_small > 0 && s.refault_ps_small < 1e6, "4 KiB pages: %.1f ps/byte",
                s.refault_ps_small);
  ck_assert_msg(s.refault_ps_huge == 0, "huge pages measured (%.1f ps/byte) before any was reused",
                s.refault_ps_huge);
  for (int i = 0; i < 2; i++) {  /* the second one reuses the first, released */
    p = hak_malloc(4 * MiB);
    memset(p, 1, 4 * MiB);
    hak_free(p);
    hak_flush();
  }
  TU_WAIT_STATS(s, s.refault_ps_huge > 0);
  ck_assert_msg(s.refault_ps_huge > 0 && s.refault_ps_huge < 1e6, "huge pages: %.1f ps/byte",
                s.refault_ps_huge);
  double lo = s.refault_ps_small < s.refault_ps_huge ? s.refault_ps_small : s.refault_ps_huge;
  double hi = s.refault_ps_small + s.refault_ps_huge - lo;
  ck_assert_msg(s.refault_ps >= lo * 0.999 && s.refault_ps <= hi * 1.001,
                "the mix %.1f is not between the two costs (%.1f, %.1f)", s.refault_ps, lo, hi);
  tu_opts_restore(&o);
}
END_TEST

/* An epoch that cannot tell arms apart moves as little as it must. phases'
 * first epoch on 1000 ms saw no flush and no reuse of released memory, so the
 * 1 ms and 10 ms arms both cost nothing: the policy went to 1 ms, the first in
 * order, and paid for it for two epochs (purge thread 14-18 ms against 10-12). */
START_TEST(a_tie_moves_least) {
  const double no_evidence[HAK_POLICY_ARMS] = {1198191, 0, 0, 17969, 17969};
  ck_assert_int_eq(_hak_policy_pick(no_evidence, 4), 2);
  const double near_tie[HAK_POLICY_ARMS] = {90000, 5000, 5500, 40000, 60000};
  ck_assert_int_eq(_hak_policy_pick(near_tie, 4), 2);
  ck_assert_int_eq(_hak_policy_pick(near_tie, 0), 1);
  /* a clear winner wins from anywhere, and a small saving moves nothing */
  const double clear[HAK_POLICY_ARMS] = {90000, 5000, 20000, 40000, 60000};
  ck_assert_int_eq(_hak_policy_pick(clear, 4), 1);
  const double small[HAK_POLICY_ARMS] = {90000, 50000, 50500, 51000, 60000};
  ck_assert_int_eq(_hak_policy_pick(small, 2), 2);
  ck_assert_int_eq(_hak_policy_pick(small, 3), 3);
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
  tcase_add_test(tc, holds_until_it_knows);
  tcase_add_test(tc, delay_within_cap);
  tcase_add_test(tc, pause_rule_follows_the_weight);
  tcase_add_test(tc, refault_cost_measured);
  tcase_add_test(tc, explicit_settings_fix_the_policy);
  tcase_add_test(tc, a_tie_moves_least);
  suite_add_tcase(s, tc);
  return s;
}
