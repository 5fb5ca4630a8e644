/* Bad input: huge sizes and overflows (ENOMEM), bad alignments (EINVAL), invalid frees abort with a message. */
#include <ctype.h>
#include <signal.h>

#include "testutil.h"

static const size_t huge_sizes[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4095, SIZE_MAX / 2,
                                    (size_t)PTRDIFF_MAX + 1, (size_t)1 << 48, (size_t)1 << 47};
#define N_HUGE (sizeof huge_sizes / sizeof huge_sizes[0])

START_TEST(malloc_huge_enomem) {
  for (size_t i = 0; i < N_HUGE; i++) {
    errno = 0;
    void *p = hak_malloc(huge_sizes[i]);
    ck_assert_msg(p == NULL, "malloc(%zu) = %p", huge_sizes[i], p);
    ck_assert_msg(errno == ENOMEM, "malloc(%zu): errno %d, want ENOMEM", huge_sizes[i], errno);
  }
  /* The allocator still works afterwards. */
  void *p = hak_malloc(100);
  ck_assert_ptr_nonnull(p);
  hak_free(p);
}
END_TEST

START_TEST(calloc_overflow_enomem) {
  static const size_t pairs[][2] = {{SIZE_MAX, 2},
                                    {2, SIZE_MAX},
                                    {(size_t)1 << 32, (size_t)1 << 32},
                                    {SIZE_MAX / 2 + 1, 2},
                                    {((size_t)1 << 63) / 3 + 1, 3},
                                    {65537, SIZE_MAX / 65536},
                                    {1, SIZE_MAX}};
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    errno = 0;
    void *p = hak_calloc(pairs[i][0], pairs[i][1]);
    ck_assert_msg(p == NULL, "calloc(%zu, %zu) = %p", pairs[i][0], pairs[i][1], p);
    ck_assert_msg(errno == ENOMEM, "calloc(%zu, %zu): errno %d", pairs[i][0], pairs[i][1], errno);
  }
}
END_TEST

START_TEST(realloc_huge_keeps_old_block) {
  static const size_t from[] = {100, 300 * 1024};
  for (size_t k = 0; k < 2; k++) {
    void *p = hak_malloc(from[k]);
    ck_assert_ptr_nonnull(p);
    tu_fill(p, from[k], 11);
    for (size_t i = 0; i < N_HUGE; i++) {
      errno = 0;
      void *q = hak_realloc(p, huge_sizes[i]);
      ck_assert_msg(q == NULL, "realloc(%zu) = %p", huge_sizes[i], q);
      ck_assert_int_eq(errno, ENOMEM);
      ck_assert_pattern(p, from[k], 11);  /* the old block is still valid */
    }
    hak_free(p);
  }
}
END_TEST

START_TEST(aligned_alloc_bad_alignment_einval) {
  static const size_t bad[] = {0, 3, 5, 6, 24, 48, 100, 4097, ((size_t)1 << 20) + 1, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    errno = 0;
    void *p = hak_aligned_alloc(bad[i], 64);
    ck_assert_msg(p == NULL, "aligned_alloc(%zu, 64) = %p", bad[i], p);
    ck_assert_msg(errno == EINVAL, "aligned_alloc(%zu): errno %d, want EINVAL", bad[i], errno);
  }
}
END_TEST

START_TEST(aligned_alloc_huge_enomem) {
  static const size_t al[] = {16, 4096, 2 << 20};
  for (size_t a = 0; a < 3; a++) {
    for (size_t i = 0; i < N_HUGE; i++) {
      errno = 0;
      void *p = hak_aligned_alloc(al[a], huge_sizes[i]);
      ck_assert_msg(p == NULL, "aligned_alloc(%zu, %zu) = %p", al[a], huge_sizes[i], p);
      ck_assert_msg(errno == ENOMEM, "aligned_alloc(%zu, %zu): errno %d", al[a], huge_sizes[i],
                    errno);
    }
  }
}
END_TEST

START_TEST(posix_memalign_bad_alignment_einval) {
  /* Not a power of two, or a power of two below sizeof(void *). */
  static const size_t bad[] = {0, 1, 2, 4, 3, 12, 24, 48, 4097, SIZE_MAX};
  void *const sentinel = (void *)(uintptr_t)0x1234;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    void *p = sentinel;
    int rc = hak_posix_memalign(&p, bad[i], 64);
    ck_assert_msg(rc == EINVAL, "posix_memalign(%zu) = %d, want EINVAL", bad[i], rc);
    ck_assert_msg(p == sentinel, "posix_memalign(%zu) wrote *out on failure", bad[i]);
  }
}
END_TEST

START_TEST(posix_memalign_huge_enomem) {
  void *const sentinel = (void *)(uintptr_t)0x1234;
  for (size_t i = 0; i < N_HUGE; i++) {
    void *p = sentinel;
    int rc = hak_posix_memalign(&p, 64, huge_sizes[i]);
    ck_assert_msg(rc == ENOMEM, "posix_memalign(64, %zu) = %d, want ENOMEM", huge_sizes[i], rc);
    ck_assert_msg(p == sentinel, "posix_memalign wrote *out on failure");
  }
}
END_TEST

/* ---- invalid frees: the process must abort (Check expects SIGABRT). */
START_TEST(double_free_large_aborts) {
  void *p = hak_malloc(4 * MiB);
  ck_assert_ptr_nonnull(p);
  hak_free(p);
  hak_free(p);
}
END_TEST

START_TEST(free_stack_pointer_aborts) {
  char buf[64];
  memset(buf, 0, sizeof buf);
  hak_free(buf + 16);
}
END_TEST

START_TEST(free_mmap_pointer_aborts) {
  void *m = mmap(NULL, 1 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ck_assert(m != MAP_FAILED);
  hak_free(m);
}
END_TEST

/* The same frees in a program, to read the message: it names the pointer. */
static void hex_digits(const char *p, char *out, size_t n) {
  size_t k = 0;
  for (; *p && k + 1 < n; p++)
    if (isxdigit((unsigned char)*p)) out[k++] = (char)tolower((unsigned char)*p);
  out[k] = '\0';
}

static int contains_pointer(const char *text, const char *ptr_hex) {
  /* Compare hex digits only, so "0x7f..", "0x00007f.." and "7F.." all match. */
  char *norm = strdup(text);
  for (char *c = norm; *c; c++) *c = (char)tolower((unsigned char)*c);
  int found = strstr(norm, ptr_hex) != NULL;
  free(norm);
  return found;
}

START_TEST(invalid_free_message_names_pointer) {
  static const char *const modes[] = {"double", "stack", "mmap", "mmap2m", "interior"};
  const char *mode = modes[_i];
  const char *argv[] = {"tests/bin/prog_badfree", mode, NULL};
  tu_run_t r;
  ck_assert_int_eq(tu_run(argv, NULL, NULL, &r), 0);
  ck_assert_msg(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT,
                "free(%s) did not abort: status 0x%x, stdout [%s], stderr [%s]", mode, r.status,
                r.out, r.err);
  const char *ptr = strstr(r.out, "ptr=0x");
  ck_assert_msg(ptr != NULL, "no pointer printed: %s", r.out);
  char hex[32];
  hex_digits(ptr + 6, hex, sizeof hex);
  ck_assert_msg(strlen(hex) >= 4, "bad pointer line %s", r.out);
  ck_assert_msg(contains_pointer(r.err, hex), "free(%s): stderr does not name %s: [%s]", mode,
                hex, r.err);
  ck_assert_msg(strstr(r.out, "survived") == NULL, "bad free returned");
  tu_run_free(&r);
}
END_TEST

Suite *test_bad_input_suite(void) {
  Suite *s = suite_create("bad_input");
  TCase *tc = tcase_create("errors");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, malloc_huge_enomem);
  tcase_add_test(tc, calloc_overflow_enomem);
  tcase_add_test(tc, realloc_huge_keeps_old_block);
  tcase_add_test(tc, aligned_alloc_bad_alignment_einval);
  tcase_add_test(tc, aligned_alloc_huge_enomem);
  tcase_add_test(tc, posix_memalign_bad_alignment_einval);
  tcase_add_test(tc, posix_memalign_huge_enomem);
  suite_add_tcase(s, tc);
  TCase *ab = tcase_create("abort");
  tcase_set_timeout(ab, 60);
  tcase_add_test_raise_signal(ab, double_free_large_aborts, SIGABRT);
  tcase_add_test_raise_signal(ab, free_stack_pointer_aborts, SIGABRT);
  tcase_add_test_raise_signal(ab, free_mmap_pointer_aborts, SIGABRT);
  tcase_add_loop_test(ab, invalid_free_message_names_pointer, 0, 5);
  suite_add_tcase(s, ab);
  return s;
}
