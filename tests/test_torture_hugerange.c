/* One queued range of 300 GiB (a freed hak_malloc(300 GiB), MAP_NORESERVE) is flushed by every backend without hanging; uring splits it into more SQEs than its ring holds. */
#include "testutil.h"

#define HUGE_SIZE ((size_t)300 << 30)
enum { BOUND_S = 20 };  /* loop and vector take well under a second here */

typedef struct huge_res_s {
  int skipped;
  char why[128];
  int mapped;
  size_t resident_after;  /* of the touched pages, after the flush */
  hak_stats_t after;
  uint64_t bytes_flushed;
} huge_res_t;

static void huge_child(void *arg, void *result, size_t size) {
  (void)size;
  const char *mode = arg;
  huge_res_t *r = result;
  tu_quiet(NULL);
  hak_option_set("CACHE_BYTES", "400G");  /* keeps the block mapped and queued until the flush */
  hak_option_set("BATCH_BYTES", "1024G");
  hak_option_set("ADVICE", "dontneed");
  hak_option_set("FLUSH", mode);
  hak_stats_t s = tu_stats();
  if (strcmp(tu_mode_name(s.flush_mode), mode) != 0) {
    r->skipped = 1;
    snprintf(r->why, sizeof r->why, "%s does not run here (%s)", mode, s.fallback_reason);
    return;
  }
  unsigned char *p = hak_malloc(HUGE_SIZE);
  if (!p) {
    r->skipped = 1;
    snprintf(r->why, sizeof r->why, "cannot map 300 GiB here: %s", strerror(errno));
    return;
  }
  r->mapped = 1;
  static const size_t offs[] = {(size_t)1 << 30, (size_t)255 << 30, (size_t)257 << 30, HUGE_SIZE - 4096};
  for (int i = 0; i < 4; i++) p[offs[i]] = 1;
  hak_stats_t a = tu_stats();
  hak_free(p);
  hak_flush();  /* must return */
  hak_stats(&r->after);
  r->bytes_flushed = r->after.bytes_flushed - a.bytes_flushed;
  for (int i = 0; i < 4; i++) r->resident_after += tu_resident_pages(p + offs[i], 1);
}

/* _i: loop, vector, uring */
START_TEST(flush_300gib_range) {
  static const char *const modes[] = {"loop", "vector", "uring"};
  const char *mode = modes[_i];
  static huge_res_t r;
  memset(&r, 0, sizeof r);
  int rc = tu_in_child_bounded(huge_child, (void *)mode, &r, sizeof r, BOUND_S);
  ck_assert_msg(rc != -1, "FLUSH=%s: flushing one 300 GiB range hung (killed after %d s)", mode, BOUND_S);
  ck_assert_msg(rc == 0, "FLUSH=%s: the child died: status 0x%x", mode, rc);
  if (r.skipped) SKIP_TEST("%s", r.why);
  ck_assert_uint_eq(r.after.flush_errors, 0);
  ck_assert_uint_eq(r.after.pending_ranges, 0);
  ck_assert_msg(r.bytes_flushed >= HUGE_SIZE, "FLUSH=%s: %llu GiB advised of 300", mode,
                (unsigned long long)(r.bytes_flushed >> 30));
  ck_assert_msg(r.resident_after == 0, "FLUSH=%s: %zu touched pages still resident", mode,
                r.resident_after);
}
END_TEST

Suite *test_torture_hugerange_suite(void) {
  Suite *s = suite_create("torture_hugerange");
  TCase *tc = tcase_create("hugerange");
  tcase_set_timeout(tc, BOUND_S + 30);
  tcase_add_loop_test(tc, flush_300gib_range, 0, 3);
  suite_add_tcase(s, tc);
  return s;
}
