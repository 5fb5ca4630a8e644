/* Impossible aligned allocations fail like glibc's: memalign/posix_memalign/aligned_alloc(1 << 40, 1) give ENOMEM, and every impossible request sets glibc's errno (glibc called in a child). */
#include <dlfcn.h>
#include <malloc.h>

#include "testutil.h"

#define P2(k) ((size_t)1 << (k))

static const struct {
  size_t align, size;
} cases[] = {
    {P2(40), 1},          {P2(40), P2(40)},     {P2(41), 1},           {P2(46), 4096},
    {P2(47), 1},          {P2(62), 1},          {P2(62) + 1, 1},       {P2(63), 1},
    {P2(63) + 1, 1},      {SIZE_MAX, 1},        {16, SIZE_MAX},        {16, SIZE_MAX - 4096},
    {4096, PTRDIFF_MAX},  {P2(20), P2(47)},     {P2(21), P2(47) + 1},  {3, SIZE_MAX},
    {P2(12) + 1, P2(62)}, {P2(30), SIZE_MAX / 2}, {64, (size_t)PTRDIFF_MAX + 1},
};
#define NCASES (sizeof cases / sizeof cases[0])

enum { F_MEMALIGN, F_POSIX_MEMALIGN, F_ALIGNED_ALLOC, NFUNCS };
static const char *const fname[NFUNCS] = {"memalign", "posix_memalign", "aligned_alloc"};

typedef struct outcome_s {
  int ok;   /* returned memory */
  int err;  /* errno (posix_memalign: its return value) when it failed */
} outcome_t;

typedef struct table_s {
  int loaded;
  outcome_t r[NFUNCS][NCASES];
} table_t;

typedef void *(*memalign_fn)(size_t, size_t);
typedef int (*posix_memalign_fn)(void **, size_t, size_t);
typedef void (*free_fn)(void *);

static int is_pow2(size_t a) { return a && !(a & (a - 1)); }

/* glibc's own functions, called in a child: hakmem is the process malloc,
 * glibc's are still in libc.so.6 under their names. */
static void glibc_child(void *arg, void *result, size_t size) {
  (void)arg;
  (void)size;
  table_t *t = result;
  void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  if (!libc) return;
  memalign_fn g_memalign = (memalign_fn)dlsym(libc, "memalign");
  memalign_fn g_aligned_alloc = (memalign_fn)dlsym(libc, "aligned_alloc");
  posix_memalign_fn g_posix_memalign = (posix_memalign_fn)dlsym(libc, "posix_memalign");
  free_fn g_free = (free_fn)dlsym(libc, "free");
  if (!g_memalign || !g_aligned_alloc || !g_posix_memalign || !g_free) return;
  t->loaded = 1;
  for (size_t i = 0; i < NCASES; i++) {
    errno = 0;
    void *p = g_memalign(cases[i].align, cases[i].size);
    t->r[F_MEMALIGN][i] = (outcome_t){p != NULL, p ? 0 : errno};
    g_free(p);
    p = NULL;
    int rc = g_posix_memalign(&p, cases[i].align, cases[i].size);
    t->r[F_POSIX_MEMALIGN][i] = (outcome_t){rc == 0, rc};
    if (rc == 0) g_free(p);
    errno = 0;
    p = is_pow2(cases[i].align) ? g_aligned_alloc(cases[i].align, cases[i].size) : NULL;
    t->r[F_ALIGNED_ALLOC][i] = (outcome_t){p != NULL, p ? 0 : errno};
    g_free(p);
  }
}

static outcome_t hak_call(int f, size_t align, size_t size) {
  void *p = NULL;
  errno = 0;
  outcome_t o = {0, 0};
  if (f == F_MEMALIGN) {
#if !HAK_SANITIZE
    p = memalign(align, size);  /* hakmem's, from libhakmem.a */
#endif
    o = (outcome_t){p != NULL, p ? 0 : errno};
  } else if (f == F_POSIX_MEMALIGN) {
    int rc = hak_posix_memalign(&p, align, size);
    o = (outcome_t){rc == 0, rc};
    if (rc) p = NULL;
  } else {
    p = hak_aligned_alloc(align, size);
    o = (outcome_t){p != NULL, p ? 0 : errno};
  }
  hak_free(p);
  return o;
}

START_TEST(one_tib_alignment_enomem) {
  char bad[512] = "";
  size_t len = 0;
  for (int f = 0; f < NFUNCS; f++) {
    if (f == F_MEMALIGN && HAK_SANITIZE) continue;
    outcome_t h = hak_call(f, P2(40), 1);
    if (!h.ok && h.err == ENOMEM) continue;
    len += (size_t)snprintf(bad + len, sizeof bad - len, " %s(1 << 40, 1): %s, errno %d;", fname[f],
                            h.ok ? "memory" : "NULL", h.err);
  }
  ck_assert_msg(bad[0] == '\0', "want ENOMEM as glibc:%s", bad);
}
END_TEST

START_TEST(impossible_requests_match_glibc) {
  static table_t g;
  tu_in_child(glibc_child, NULL, &g, sizeof g);
  if (!g.loaded) SKIP_TEST("glibc's allocation functions not found in libc.so.6");
  char diffs[2048] = "";
  size_t len = 0;
  int ndiff = 0, compared = 0;
  for (int f = 0; f < NFUNCS; f++) {
    if (f == F_MEMALIGN && HAK_SANITIZE) continue;  /* ASan owns memalign */
    for (size_t i = 0; i < NCASES; i++) {
      if (f == F_ALIGNED_ALLOC && !is_pow2(cases[i].align)) continue;  /* hakmem: EINVAL, by design */
      outcome_t gl = g.r[f][i];
      if (gl.ok) continue;  /* only what glibc cannot do */
      compared++;
      outcome_t h = hak_call(f, cases[i].align, cases[i].size);
      if (!h.ok && h.err == gl.err) continue;
      ndiff++;
      if (len < sizeof diffs - 200)
        len += (size_t)snprintf(diffs + len, sizeof diffs - len,
                                "\n  %s(align %#zx, size %#zx): hakmem %s errno %d (%s), glibc NULL errno %d (%s)",
                                fname[f], cases[i].align, cases[i].size, h.ok ? "memory," : "NULL,",
                                h.err, strerror(h.err), gl.err, strerror(gl.err));
    }
  }
  ck_assert_msg(compared > 0, "glibc satisfied every impossible request?");
  ck_assert_msg(ndiff == 0, "%d of %d impossible requests differ from glibc:%s", ndiff, compared, diffs);
}
END_TEST

Suite *test_torture_memalign_suite(void) {
  Suite *s = suite_create("torture_memalign");
  TCase *tc = tcase_create("memalign");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, one_tib_alignment_enomem);
  tcase_add_test(tc, impossible_requests_match_glibc);
  suite_add_tcase(s, tc);
  return s;
}
