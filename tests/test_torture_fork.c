/* fork() from a multithreaded process with ranges queued: child and parent reuse, flush and keep their data, with each backend, with and without PIDFD_SELF. */
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"
#include "tu_seccomp.h"

enum { LIVE = 64, ROUNDS = 8, CHILD_BLOCKS = 200, BOUND_S = 60 };

typedef struct blk_s {
  unsigned char *p;
  size_t n;
} blk_t;

typedef struct tally_s {
  long bad, verified;
  char first[200];
} tally_t;

static size_t fork_size(uint64_t *rng) {
  uint64_t r = tu_rand(rng) % 100;
  if (r < 60) return 16 + tu_rand(rng) % (8 * KiB);
  if (r < 85) return 8 * KiB + tu_rand(rng) % (248 * KiB);
  return 300 * KiB + tu_rand(rng) % (3796 * KiB);
}

static void blk_new(blk_t *b, size_t n) {
  b->n = n;
  b->p = hak_malloc(n);
  if (b->p) tu_fill_fast(b->p, n, (uint64_t)(uintptr_t)b->p);
}

static void blk_check(tally_t *t, const blk_t *b, const char *who, const char *when) {
  long off = b->p ? tu_check_fast(b->p, b->n, (uint64_t)(uintptr_t)b->p) : 0;
  t->verified += (long)b->n;
  if (off < 0) return;
  if (t->bad++ == 0) {
    if (b->p)
      snprintf(t->first, sizeof t->first, "%s %s: block %p size %zu byte %ld is 0x%02x, want 0x%02x",
               who, when, (void *)b->p, b->n, off, b->p[off], tu_byte((uint64_t)(uintptr_t)b->p, (size_t)off));
    else
      snprintf(t->first, sizeof t->first, "%s %s: malloc(%zu) failed", who, when, b->n);
  }
}

/* Threads that keep allocating, checking and freeing, so that fork lands
 * while other threads are inside the allocator and ranges are queued. */
typedef struct churn_s {
  atomic_int stop;
  atomic_long bad;
  int id;
} churn_t;

static void *churn(void *arg) {
  churn_t *c = arg;
  uint64_t rng = 99 + (uint64_t)c->id;
  blk_t v[16] = {{0}};
  while (!atomic_load(&c->stop)) {
    blk_t *b = &v[tu_rand(&rng) % 16];
    if (b->p) {
      if (tu_check_fast(b->p, b->n, (uint64_t)(uintptr_t)b->p) >= 0) atomic_fetch_add(&c->bad, 1);
      hak_free(b->p);
    }
    blk_new(b, fork_size(&rng));
  }
  for (int i = 0; i < 16; i++) hak_free(v[i].p);
  return NULL;
}

/* What one side (parent or child) does after the fork: replace blocks (the
 * new ones reuse queued ranges), allocate more, flush, verify everything. */
static void side_work(tally_t *t, blk_t *live, uint64_t *rng, const char *who) {
  for (int i = 0; i < LIVE; i++) blk_check(t, &live[i], who, "inherited, at fork");
  /* Large blocks come back from the cache at once: their queued range must
   * leave this process's queue before a byte is handed out. */
  for (int i = 0; i < LIVE; i += 2) {
    size_t n = live[i].n;
    hak_free(live[i].p);
    blk_new(&live[i], n);
  }
  static blk_t mine[CHILD_BLOCKS];
  for (int i = 0; i < CHILD_BLOCKS; i++) blk_new(&mine[i], fork_size(rng));
  for (int i = 0; i < CHILD_BLOCKS; i += 3) {
    hak_free(mine[i].p);
    blk_new(&mine[i], fork_size(rng));
  }
  hak_flush();
  for (int i = 0; i < CHILD_BLOCKS; i++) blk_check(t, &mine[i], who, "own block after flush");
  for (int i = 0; i < LIVE; i++) blk_check(t, &live[i], who, "held block after flush");
  for (int i = 0; i < CHILD_BLOCKS; i++) hak_free(mine[i].p);
  hak_flush();
  for (int i = 0; i < LIVE; i++) blk_check(t, &live[i], who, "held block after second flush");
}

/* Open file descriptors that are pidfds (the vector backend's own, when
 * PIDFD_SELF is missing). */
static int count_pidfds(void) {
  int n = 0;
  for (int fd = 3; fd < 1024; fd++) {
    char path[64], link[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t k = readlink(path, link, sizeof link - 1);
    if (k <= 0) continue;
    link[k] = '\0';
    n += strcmp(link, "anon_inode:[pidfd]") == 0;
  }
  return n;
}

typedef struct fork_arg_s {
  const char *backend;
  int no_pidfd_self;
} fork_arg_t;

typedef struct fork_res_s {
  int skipped;
  char why[128];
  int forks, child_failed, child_hung;
  long min_pending_at_fork;
  tally_t parent, child;
  long churn_bad;
  int child_flush_trouble;  /* a child whose flushes failed or fell back */
  int pidfds;               /* pidfds open in the forking process */
  hak_stats_t end;
} fork_res_t;

typedef struct child_report_s {
  tally_t t;
  int flush_trouble;
} child_report_t;

static void fork_scenario(void *arg, void *result, size_t size) {
  (void)size;
  fork_arg_t *a = arg;
  fork_res_t *r = result;
  if (a->no_pidfd_self && tu_sc_install_spec("pmadv_self=EBADF") != 0) {
    r->skipped = 1;
    snprintf(r->why, sizeof r->why, "seccomp: %s", strerror(errno));
    return;
  }
  tu_quiet(NULL);  /* nothing flushes by itself: ranges stay queued across fork */
  hak_option_set("ADVICE", "dontneed");
  hak_option_set("FLUSH", a->backend);
  hak_stats_t s = tu_stats();
  if (strcmp(tu_mode_name(s.flush_mode), a->backend) != 0) {
    r->skipped = 1;
    snprintf(r->why, sizeof r->why, "%s does not run here (%s)", a->backend, s.fallback_reason);
    return;
  }
  hak_flush();
  r->pidfds = count_pidfds();
  uint64_t rng = 4242;
  static blk_t live[LIVE];
  for (int i = 0; i < LIVE; i++) blk_new(&live[i], fork_size(&rng));
  static churn_t c[2];
  pthread_t th[2];
  for (int i = 0; i < 2; i++) {
    c[i].id = i;
    pthread_create(&th[i], NULL, churn, &c[i]);
  }
  r->min_pending_at_fork = -1;
  for (int round = 0; round < ROUNDS; round++) {
    for (int k = 0; k < 16; k++) {  /* freed blocks: queued ranges at the fork */
      blk_t *b = &live[tu_rand(&rng) % LIVE];
      hak_free(b->p);
      blk_new(b, fork_size(&rng));
    }
    void *q[4];
    for (int k = 0; k < 4; k++) q[k] = hak_malloc(600 * KiB);
    for (int k = 0; k < 4; k++) hak_free(q[k]);
    long pending = (long)tu_stats().pending_ranges;
    if (r->min_pending_at_fork < 0 || pending < r->min_pending_at_fork) r->min_pending_at_fork = pending;
    int fds[2];
    if (pipe(fds) != 0) _exit(5);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) _exit(6);
    if (pid == 0) {
      close(fds[0]);
      child_report_t rep;
      memset(&rep, 0, sizeof rep);
      hak_stats_t c0 = tu_stats();
      uint64_t crng = 1000 + (uint64_t)round;
      side_work(&rep.t, live, &crng, "child");
      hak_stats_t c1 = tu_stats();
      rep.flush_trouble = c1.flush_errors != c0.flush_errors || c1.fallbacks != c0.fallbacks ||
                          strcmp(tu_mode_name(c1.flush_mode), a->backend) != 0;
      if (write(fds[1], &rep, sizeof rep) != (ssize_t)sizeof rep) _exit(3);
      _exit(0);
    }
    close(fds[1]);
    r->forks++;
    side_work(&r->parent, live, &rng, "parent");
    int st = 0;
    if (tu_wait_bounded(pid, BOUND_S, &st) != 0) {
      r->child_hung++;
    } else {
      child_report_t rep;
      ssize_t got = read(fds[0], &rep, sizeof rep);
      if (got != (ssize_t)sizeof rep || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        r->child_failed++;
      } else {
        if (rep.t.bad && !r->child.bad) memcpy(r->child.first, rep.t.first, sizeof r->child.first);
        r->child.bad += rep.t.bad;
        r->child.verified += rep.t.verified;
        r->child_flush_trouble += rep.flush_trouble;
      }
    }
    close(fds[0]);
  }
  for (int i = 0; i < 2; i++) atomic_store(&c[i].stop, 1);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  r->churn_bad = atomic_load(&c[0].bad) + atomic_load(&c[1].bad);
  for (int i = 0; i < LIVE; i++) blk_check(&r->parent, &live[i], "parent", "at end");
  for (int i = 0; i < LIVE; i++) hak_free(live[i].p);
  hak_flush();
  hak_stats(&r->end);
}

/* _i: 0 loop, 1 vector, 2 uring, 3 vector on a kernel without PIDFD_SELF
 * (6.13-6.14, simulated: process_madvise(PIDFD_SELF) gives EBADF, so the
 * library opens a pidfd of its own for each flush). */
START_TEST(fork_with_ranges_pending) {
  static const char *const backends[] = {"loop", "vector", "uring", "vector"};
  fork_arg_t a = {backends[_i], _i == 3};
  const char *name = _i == 3 ? "vector without PIDFD_SELF" : a.backend;
  if (strcmp(a.backend, "vector") == 0 && tu_probe_vector_dontneed() != 0)
    SKIP_TEST("%s: kernel has no vectored MADV_DONTNEED", name);
  static fork_res_t r;
  int rc = tu_in_child_bounded(fork_scenario, &a, &r, sizeof r, 120);
  ck_assert_msg(rc != -1, "%s: the forking process hung (killed after 120 s)", name);
  ck_assert_msg(rc == 0, "%s: the forking process died: status 0x%x", name, rc);
  if (r.skipped) SKIP_TEST("%s", r.why);
  fprintf(stderr, "note: torture_fork %s: %d forks (at least %ld ranges queued at each), "
          "%ld MiB verified in the parent, %ld MiB in the children\n", name, r.forks,
          r.min_pending_at_fork, r.parent.verified >> 20, r.child.verified >> 20);
  ck_assert_msg(r.child_hung == 0, "%s: %d of %d children hung", name, r.child_hung, r.forks);
  ck_assert_msg(r.child_failed == 0, "%s: %d of %d children died", name, r.child_failed, r.forks);
  ck_assert_msg(r.child.bad == 0, "%s: %ld bad blocks in children; first: %s", name, r.child.bad,
                r.child.first);
  ck_assert_msg(r.parent.bad == 0, "%s: %ld bad blocks in the parent; first: %s", name,
                r.parent.bad, r.parent.first);
  ck_assert_msg(r.churn_bad == 0, "%s: %ld bad blocks in the parent's other threads", name,
                r.churn_bad);
  /* The backend opens a pidfd for each flush and closes it after: none is
   * left for a child to inherit or for the program to close under it. */
  if (a.no_pidfd_self)
    ck_assert_msg(r.pidfds == 0, "%s: %d pidfds left open between flushes", name, r.pidfds);
  ck_assert_msg(r.min_pending_at_fork > 0, "%s: no range was queued at some fork", name);
  ck_assert_msg(r.child_flush_trouble == 0, "%s: %d children had flush errors or fell back", name,
                r.child_flush_trouble);
  ck_assert_uint_eq(r.end.flush_errors, 0);
  ck_assert_str_eq(tu_mode_name(r.end.flush_mode), a.backend);
}
END_TEST

Suite *test_torture_fork_suite(void) {
  Suite *s = suite_create("torture_fork");
  TCase *tc = tcase_create("fork");
  tcase_set_timeout(tc, 150);
  tcase_add_loop_test(tc, fork_with_ranges_pending, 0, 4);
  suite_add_tcase(s, tc);
  return s;
}
