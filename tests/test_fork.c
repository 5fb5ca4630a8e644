/* fork() in a threaded process: the child allocates, frees and flushes with its own backend state; the parent is intact. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

#include "testutil.h"

/* A thread that keeps allocating while the main thread forks, so that fork
 * lands while allocator locks are taken. */
typedef struct churn_s {
  atomic_int stop;
  atomic_long rounds;
} churn_t;

static void *churn(void *arg) {
  churn_t *c = arg;
  while (!atomic_load(&c->stop)) {
    void *v[32];
    for (int i = 0; i < 32; i++) {
      v[i] = hak_malloc(i % 8 == 0 ? 300 * KiB : (size_t)16 << (i % 12));
      if (v[i]) *(volatile char *)v[i] = 1;
    }
    for (int i = 0; i < 32; i++) hak_free(v[i]);
    if (atomic_fetch_add(&c->rounds, 1) % 16 == 0) hak_flush();
  }
  return NULL;
}

static void *flusher(void *arg) {
  churn_t *c = arg;
  while (!atomic_load(&c->stop)) hak_flush();
  return NULL;
}

typedef struct fork_arg_s {
  unsigned char *big;  /* the parent's live block, freed in the child */
  size_t big_size;
} fork_arg_t;

typedef struct fork_result_s {
  hak_stats_t at_fork, after;
  size_t big_resident;  /* pages of the freed block resident in the child after its flush */
  long bad_small;       /* child-side allocation check */
} fork_result_t;

static void child_work(void *arg, void *result, size_t size) {
  (void)size;
  fork_arg_t *a = arg;
  fork_result_t *r = result;
  hak_stats(&r->at_fork);
  /* The child's own allocations work and keep their contents. */
  void *v[500];
  for (int i = 0; i < 500; i++) {
    v[i] = hak_malloc((size_t)16 + (size_t)i * 40);
    if (!v[i]) r->bad_small++;
    else tu_fill(v[i], (size_t)16 + (size_t)i * 40, (uint64_t)i);
  }
  for (int i = 0; i < 500; i++)
    if (v[i] && tu_check(v[i], (size_t)16 + (size_t)i * 40, (uint64_t)i) >= 0) r->bad_small++;
  for (int i = 0; i < 500; i++) hak_free(v[i]);
  /* Free the parent's block (our copy) and flush: the release must hit us. */
  hak_free(a->big);
  hak_flush();
  hak_stats(&r->after);
  r->big_resident = tu_resident_pages(a->big, a->big_size);
}

/* _i 0: vector (the child needs its own pidfd), 1: uring (its own ring: the
 * parent's ring memory is shared with the child). */
START_TEST(child_flushes_with_own_backend) {
  const char *mode = _i ? "uring" : "vector";
  if (!_i && tu_probe_vector_dontneed() != 0) SKIP_TEST("kernel has no vectored MADV_DONTNEED");
  tu_opts_t o = {0};
  tu_quiet(&o);
  tu_opt(&o, "FLUSH", mode);
  tu_opt(&o, "ADVICE", "dontneed");
  if (strcmp(tu_mode_name(tu_stats().flush_mode), mode) != 0)
    SKIP_TEST("%s does not run here (%s)", mode, tu_stats().fallback_reason);
  hak_flush();  /* the parent's backend is in use before the fork */

  fork_arg_t a = {hak_malloc(4 * MiB), 4 * MiB};
  ck_assert_ptr_nonnull(a.big);
  tu_fill(a.big, a.big_size, 42);
  static churn_t c;
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, churn, &c), 0);
  while (atomic_load(&c.rounds) < 10) sched_yield();

  fork_result_t r;
  tu_in_child(child_work, &a, &r, sizeof r);
  atomic_store(&c.stop, 1);
  pthread_join(t, NULL);

  ck_assert_int_eq(r.bad_small, 0);
  ck_assert_str_eq(tu_mode_name(r.after.flush_mode), mode);
  ck_assert_msg(r.after.fallbacks == r.at_fork.fallbacks, "the child's flush fell back: %s",
                r.after.fallback_reason);
  ck_assert_uint_eq(r.after.flush_errors, r.at_fork.flush_errors);
  ck_assert_msg(r.after.flushes > r.at_fork.flushes, "the child's stats show no flush of its own");
  if (!_i) ck_assert_uint_gt(r.after.process_madvise_calls, r.at_fork.process_madvise_calls);
  else ck_assert_uint_gt(r.after.uring_enter_calls, r.at_fork.uring_enter_calls);
  ck_assert_msg(r.big_resident <= 2, "the child's flush did not release its copy (%zu pages)",
                r.big_resident);
  /* The parent's block was never touched by the child's release. */
  ck_assert_pattern(a.big, a.big_size, 42);
  ck_assert_uint_ge(tu_resident_pages(a.big, a.big_size), a.big_size / PAGE - 1);
  hak_free(a.big);
  hak_flush();
  ck_assert_uint_eq(tu_stats().flush_errors, 0);
  tu_opts_restore(&o);
}
END_TEST

/* Many forks while two threads allocate: no child deadlocks on a lock held
 * at fork time, every child can allocate, free and flush. */
START_TEST(fork_while_threads_allocate) {
  static const char *const modes[] = {"vector", "loop", "uring"};
  tu_opts_t o = {0};
  tu_opt(&o, "FLUSH", modes[_i]);
  static churn_t c;
  memset(&c, 0, sizeof c);
  pthread_t t[3];
  for (int i = 0; i < 2; i++) ck_assert_int_eq(pthread_create(&t[i], NULL, churn, &c), 0);
  ck_assert_int_eq(pthread_create(&t[2], NULL, flusher, &c), 0);  /* forks land mid-flush too */
  int hung = 0, failed = 0;
  for (int k = 0; k < 30; k++) {
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
      hak_stats_t s0;
      hak_stats(&s0);
      for (int i = 0; i < 200; i++) {
        size_t n = i % 10 == 0 ? 1 * MiB : (size_t)32 * (size_t)(i + 1);
        void *p = hak_malloc(n);
        if (!p) _exit(2);
        memset(p, 1, n < 64 ? n : 64);
        hak_free(p);
      }
      hak_flush();
      hak_stats_t s1;
      hak_stats(&s1);
      _exit(s1.flush_errors == s0.flush_errors && s1.fallbacks == s0.fallbacks ? 0 : 3);
    }
    int st = 0;
    if (tu_wait_bounded(pid, 10, &st) != 0) hung++;
    else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) failed++;
  }
  atomic_store(&c.stop, 1);
  for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
  ck_assert_msg(hung == 0, "%d of 30 children hung (deadlock after fork)", hung);
  ck_assert_msg(failed == 0, "%d of 30 children failed (flush errors or fallback)", failed);
  tu_opts_restore(&o);
}
END_TEST

/* The child's report counts the child's work, and says whose it is. */
static void stats_child(void *arg, void *result, size_t size) {
  (void)arg;
  (void)size;
  hak_stats_t *st = result;
  void *p = hak_malloc(2 * MiB);
  hak_free(p);
  hak_stats(st);
}

START_TEST(child_counters_restart) {
  tu_opts_t o = {0};
  tu_quiet(&o);
  for (int i = 0; i < 50; i++) hak_free(hak_malloc(2 * MiB));  /* parent's work */
  hak_stats_t parent = tu_stats(), child;
  ck_assert_uint_ge(parent.alloc_large, 50);
  tu_in_child(stats_child, NULL, &child, sizeof child);
  ck_assert_msg(child.alloc_large == 1, "child counted %llu large allocs (its own: 1)",
                (unsigned long long)child.alloc_large);
  ck_assert_int_eq(child.forked_from, (int)getpid());
  tu_opts_restore(&o);
}
END_TEST

Suite *test_fork_suite(void) {
  Suite *s = suite_create("fork");
  TCase *tc = tcase_create("fork");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, child_flushes_with_own_backend, 0, 2);
  tcase_add_loop_test(tc, fork_while_threads_allocate, 0, 3);
  tcase_add_test(tc, child_counters_restart);
  suite_add_tcase(s, tc);
  return s;
}
