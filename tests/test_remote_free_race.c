/* A remote free, stopped after every one of its instructions while the owner trims, never touches a page the owner has unmapped. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>

#include "testutil.h"

/* One block per round, alone in its segment: once the owner collects it the
 * page is empty and trim unmaps the segment, so any access the freer makes to
 * the page after publishing the block is a fault. */
/* Under the sanitizers a free is 500 (ASan) to 6000 (TSan) instructions, each a stop. */
enum { ROUNDS = HAK_SANITIZE ? 8 : 64 };
#define BLOCK (200 * KiB)
#define STEP_WAIT_NS (5 * 1000 * 1000L)  /* the owner may wait on a lock the freer holds */

static struct {
  void *block;
  atomic_int round, freed, stepping;
  atomic_long requested, trimmed, steps;
} race;

#if defined(__x86_64__)
/* The trap flag makes the CPU raise SIGTRAP after each instruction of this
 * thread; the kernel clears it for the handler and sigreturn restores it. */
static inline void step_on(void) { __asm__ volatile("pushfq; orq $0x100, (%%rsp); popfq" ::: "memory", "cc"); }
static inline void step_off(void) { __asm__ volatile("pushfq; andq $~0x100, (%%rsp); popfq" ::: "memory", "cc"); }
#endif

static long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* After each instruction of hak_free: let the owner trim, and wait for it. */
static void on_step(int sig) {
  (void)sig;
  if (!atomic_load(&race.stepping)) return;
  atomic_fetch_add(&race.steps, 1);
  long want = atomic_fetch_add(&race.requested, 1) + 1;
  long deadline = now_ns() + STEP_WAIT_NS;
  while (atomic_load(&race.trimmed) < want && now_ns() < deadline) sched_yield();
}

static void *freer(void *arg) {
  (void)arg;
  hak_free(hak_malloc(64));  /* thread set-up happens outside the stepped region */
  for (int r = 1; r <= ROUNDS; r++) {
    while (atomic_load(&race.round) != r) sched_yield();
    atomic_store(&race.stepping, 1);
#if defined(__x86_64__)
    step_on();
    hak_free(race.block);
    step_off();
#endif
    atomic_store(&race.stepping, 0);
    atomic_store(&race.freed, r);
  }
  return NULL;
}

/* The owner trims whenever the stopped freer asks, until the free returns. */
static void serve_steps(int r) {
  while (atomic_load(&race.freed) != r) {
    long want = atomic_load(&race.requested);
    if (want > atomic_load(&race.trimmed)) {
      hak_trim();
      atomic_store(&race.trimmed, want);
    } else {
      sched_yield();
    }
  }
  hak_trim();
}

START_TEST(owner_unmaps_under_a_stepped_remote_free) {
#if !defined(__x86_64__)
  SKIP_TEST("single-stepping with the trap flag needs x86-64");
#else
  tu_opts_t o = {0};
  tu_quiet(&o);
  struct sigaction sa = {0};
  sa.sa_handler = on_step;
  ck_assert_int_eq(sigaction(SIGTRAP, &sa, NULL), 0);
  hak_trim();
  hak_stats_t before = tu_stats();
  pthread_t f;
  ck_assert_int_eq(pthread_create(&f, NULL, freer, NULL), 0);
  for (int r = 1; r <= ROUNDS; r++) {
    race.block = hak_malloc(BLOCK);
    ck_assert_ptr_nonnull(race.block);
    memset(race.block, 0x5a, BLOCK);
    atomic_store(&race.round, r);
    serve_steps(r);
  }
  pthread_join(f, NULL);
  hak_stats_t after = tu_stats();
  fprintf(stderr, "remote_free_race: %d frees, %ld steps, %llu segments unmapped\n", ROUNDS,
          atomic_load(&race.steps),
          (unsigned long long)(after.segments_unmapped - before.segments_unmapped));
  /* The race was really run: every free was stepped, and most rounds ended
   * with the block's segment unmapped under the freer. */
  ck_assert_uint_ge(after.free_remote - before.free_remote, ROUNDS);
  ck_assert_int_ge(atomic_load(&race.steps), ROUNDS * 10);
  ck_assert_uint_ge(after.segments_unmapped - before.segments_unmapped, ROUNDS / 2);
  tu_opts_restore(&o);
#endif
}
END_TEST

Suite *test_remote_free_race_suite(void) {
  Suite *s = suite_create("remote_free_race");
  TCase *tc = tcase_create("race");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, owner_unmaps_under_a_stepped_remote_free);
  suite_add_tcase(s, tc);
  return s;
}
