/* The purge thread starts (and releases memory after PURGE_DELAY_MS) even in a program with 96 KiB of static TLS. */
#include "testutil.h"

START_TEST(purge_thread_with_big_static_tls) {
  const char *argv[] = {"tests/bin/prog_bigtls", NULL};
  const char *env[] = {"HAKMEM_PURGE_DELAY_MS=20", "HAKMEM_FLUSH=loop", "HAKMEM_PURGE_THREAD=1", NULL};
  tu_run_t r;
  ck_assert_int_eq(tu_run(argv, env, NULL, &r), 0);
  ck_assert_msg(tu_exited_ok(&r), "prog_bigtls: status 0x%x, stderr [%s]", r.status, r.err);
  unsigned long long pending = 99, by_delay = 0;
  size_t resident = 0, pages = 0;
  ck_assert_msg(sscanf(r.out, "pending=%llu flush_by_delay=%llu resident=%zu of %zu", &pending,
                       &by_delay, &resident, &pages) == 4, "prog_bigtls said [%s]", r.out);
  ck_assert_msg(pending == 0 && by_delay >= 1,
                "96 KiB of static TLS: a freed 8 MiB block still queued 3 s after a 20 ms delay "
                "(%llu pending, %llu delay flushes): the purge thread did not start", pending, by_delay);
  ck_assert_msg(resident <= 2, "%zu of %zu pages of the freed block still resident", resident, pages);
  tu_run_free(&r);
}
END_TEST

Suite *test_torture_tls_suite(void) {
  Suite *s = suite_create("torture_tls");
  TCase *tc = tcase_create("tls");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, purge_thread_with_big_static_tls);
  suite_add_tcase(s, tc);
  return s;
}
