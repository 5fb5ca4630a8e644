/* Invalid frees of small and medium blocks abort with glibc-like messages: double free not of the last block freed, interior pointer, free into a released page from a fresh thread; a live block's address with high bits set never frees it. */
#include <ctype.h>

#include "testutil.h"

static const struct {
  const char *mode;    /* prog_badfree argv[1] */
  const char *what;    /* for the failure message */
  const char *phrase;  /* the abort message must say this */
} cases[] = {
    {"double32", "p=malloc(32); q=malloc(32); free(p); free(q); free(p)", "double free"},
    {"double100k", "p=malloc(100000); q=malloc(100000); free(p); free(q); free(p)", "double free"},
    {"interior64", "free(p + 16) of a live malloc(64)", "invalid pointer"},
    {"released", "a thread that never allocated frees into a released small page", "invalid pointer"},
};

static void lower(char *s) {
  for (; *s; s++) *s = (char)tolower((unsigned char)*s);
}

START_TEST(invalid_small_free_aborts) {
  const char *argv[] = {"tests/bin/prog_badfree", cases[_i].mode, NULL};
  tu_run_t r;
  ck_assert_int_eq(tu_run(argv, NULL, NULL, &r), 0);
  ck_assert_msg(strstr(r.out, "survived") == NULL && !(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0),
                "%s: not caught, the program went on (stdout [%s])", cases[_i].what, r.out);
  ck_assert_msg(!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 2, "%s: set-up failed: [%s]",
                cases[_i].what, r.out);
  ck_assert_msg(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT,
                "%s: want abort() with a message, got %s %d; stderr [%s]", cases[_i].what,
                WIFSIGNALED(r.status) ? "signal" : "exit status",
                WIFSIGNALED(r.status) ? WTERMSIG(r.status) : WEXITSTATUS(r.status), r.err);
  char *err = strdup(r.err);
  lower(err);
  ck_assert_msg(strstr(err, cases[_i].phrase) != NULL, "%s: the message does not say \"%s\": [%s]",
                cases[_i].what, cases[_i].phrase, r.err);
  const char *ptr = strstr(r.out, "ptr=0x");
  ck_assert_msg(ptr != NULL, "no pointer printed: %s", r.out);
  char hex[32];
  size_t k = 0;
  for (const char *c = ptr + 6; isxdigit((unsigned char)*c) && k + 1 < sizeof hex; c++)
    hex[k++] = (char)tolower((unsigned char)*c);
  hex[k] = '\0';
  ck_assert_msg(strstr(err, hex) != NULL, "%s: the message does not name %s: [%s]",
                cases[_i].what, hex, r.err);
  free(err);
  tu_run_free(&r);
}
END_TEST

/* A live block's address with high bits set (a pointer tag left on, or a
 * wild value): free refuses it by name and never takes it for the block.
 * (Masking such an address into the segment table instead of bounding it
 * would save free an instruction, but lets some through to the block test
 * that passes them: then the first load faults, or, on a machine with
 * 5-level page tables, a foreign pointer lands on a free list.) */
START_TEST(tagged_pointer_never_frees_the_block) {
  static const char *const modes[] = {"tagged48", "tagged64", "high47"};
  const char *argv[] = {"tests/bin/prog_badfree", modes[_i], NULL};
  tu_run_t r;
  ck_assert_int_eq(tu_run(argv, NULL, NULL, &r), 0);
  ck_assert_msg(strstr(r.out, "survived") == NULL, "free(%s) returned (stdout [%s])", modes[_i], r.out);
  ck_assert_msg(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT,
                "free(%s): want abort() with a message, got status 0x%x; stderr [%s]", modes[_i], r.status,
                r.err);
  ck_assert_msg(strstr(r.err, "invalid pointer") != NULL, "free(%s): [%s]", modes[_i], r.err);
  tu_run_free(&r);
}
END_TEST

Suite *test_torture_badfree_suite(void) {
  Suite *s = suite_create("torture_badfree");
  TCase *tc = tcase_create("badfree");
  tcase_set_timeout(tc, 30);
  tcase_add_loop_test(tc, invalid_small_free_aborts, 0, (int)(sizeof cases / sizeof cases[0]));
  tcase_add_loop_test(tc, tagged_pointer_never_frees_the_block, 0, 3);
  suite_add_tcase(s, tc);
  return s;
}
