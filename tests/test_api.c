/* API semantics of every allocation function: sizes, alignment, realloc, calloc, usable size. */
#include "testutil.h"

/* Sizes that cross every boundary the allocator is likely to have:
 * tiny, small classes, a 64 KiB page, the 256 KiB large threshold, 2 MiB. */
static const size_t api_sizes[] = {1,      7,      8,        15,       16,       17,
                                   24,     100,    1000,     4095,     4096,     4097,
                                   10000,  65535,  65536,    65537,    100000,   256 * 1024 - 1,
                                   256 * 1024, 256 * 1024 + 1, 1 << 20, 2 * (1 << 20) + 1,
                                   5 * (1 << 20)};
#define N_SIZES (sizeof api_sizes / sizeof api_sizes[0])

START_TEST(malloc_sizes_aligned_usable) {
  void *p[N_SIZES];
  for (size_t i = 0; i < N_SIZES; i++) {
    p[i] = hak_malloc(api_sizes[i]);
    ck_assert_msg(p[i] != NULL, "malloc(%zu) failed", api_sizes[i]);
    ck_assert_msg(((uintptr_t)p[i] & 15) == 0, "malloc(%zu) = %p not 16-aligned", api_sizes[i], p[i]);
    size_t u = hak_usable_size(p[i]);
    ck_assert_msg(u >= api_sizes[i], "usable_size %zu < %zu", u, api_sizes[i]);
    tu_fill(p[i], u, i);  /* the whole usable size belongs to the caller */
  }
  for (size_t i = 0; i < N_SIZES; i++) ck_assert_pattern(p[i], hak_usable_size(p[i]), i);
  for (size_t i = 0; i < N_SIZES; i++) hak_free(p[i]);
}
END_TEST

/* Every size up to 16 KiB, and some 130 sizes per class above, up to the
 * largest page block, gets the smallest class that holds it: never less, at
 * most a quarter (or 16 bytes) more, and never more than a larger size gets.
 * Each size is allocated twice, so that the second comes from the class's
 * current page (malloc's leaf paths). */
START_TEST(every_size_gets_the_class_that_fits) {
  size_t prev = 0;
  for (size_t n = 1; n <= 256 * 1024; n += n <= 16384 ? 1 : 1 + n / 512) {
    void *p = hak_malloc(n), *q = hak_malloc(n);
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(q);
    size_t u = hak_usable_size(q), bound = n + n / 4 > n + 16 ? n + n / 4 : n + 16;
    ck_assert_msg(u >= n && u <= bound, "malloc(%zu): %zu usable bytes", n, u);
    ck_assert_msg(u >= prev, "malloc(%zu): %zu usable bytes, %zu for a smaller size", n, u, prev);
    ck_assert_uint_eq(hak_usable_size(p), u);
    prev = u;
    hak_free(p);
    hak_free(q);
  }
}
END_TEST

START_TEST(blocks_do_not_overlap) {
  /* Many live objects of one class: writing each one whole must not touch another. */
  enum { N = 3000 };
  static void *p[N];
  for (int i = 0; i < N; i++) {
    size_t sz = 1 + (size_t)(i * 37) % 2048;
    p[i] = hak_malloc(sz);
    ck_assert_ptr_nonnull(p[i]);
    tu_fill(p[i], sz, (uint64_t)i);
  }
  for (int i = 0; i < N; i++) ck_assert_pattern(p[i], 1 + (size_t)(i * 37) % 2048, (uint64_t)i);
  for (int i = 0; i < N; i++) hak_free(p[i]);
}
END_TEST

START_TEST(large_2mib_aligned) {
  void *p = hak_malloc(2 * MiB);
  void *q = hak_malloc(6 * MiB + 123);
  ck_assert_ptr_nonnull(p);
  ck_assert_ptr_nonnull(q);
  ck_assert_msg(((uintptr_t)p & (2 * MiB - 1)) == 0, "2 MiB block %p not 2 MiB-aligned", p);
  ck_assert_msg(((uintptr_t)q & (2 * MiB - 1)) == 0, "6 MiB block %p not 2 MiB-aligned", q);
  hak_free(p);
  hak_free(q);
}
END_TEST

START_TEST(malloc_zero_unique) {
  void *a = hak_malloc(0), *b = hak_malloc(0);
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_nonnull(b);
  ck_assert_ptr_ne(a, b);
  hak_free(a);
  hak_free(b);
  void *c = hak_calloc(0, 16), *d = hak_calloc(16, 0);
  ck_assert_ptr_nonnull(c);
  ck_assert_ptr_nonnull(d);
  ck_assert_ptr_ne(c, d);
  hak_free(c);
  hak_free(d);
  hak_free(NULL);  /* no-op */
  ck_assert_uint_eq(hak_usable_size(NULL), 0);
}
END_TEST

START_TEST(calloc_zeroes_reused_memory) {
  /* Dirty a block of each kind, free it, calloc the same size: must be zero
   * even when the allocator hands the same (cached) memory back. */
  static const size_t sz[] = {24, 1000, 60000, 300 * 1024, 3 * MiB};
  for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) {
    for (int round = 0; round < 3; round++) {
      unsigned char *p = hak_malloc(sz[i]);
      ck_assert_ptr_nonnull(p);
      memset(p, 0xA5, hak_usable_size(p));
      hak_free(p);
      unsigned char *q = hak_calloc(1, sz[i]);
      ck_assert_ptr_nonnull(q);
      for (size_t k = 0; k < sz[i]; k++)
        ck_assert_msg(q[k] == 0, "calloc(%zu) byte %zu = 0x%x", sz[i], k, q[k]);
      hak_free(q);
      if (round == 1) hak_flush();  /* also after the queued range was released */
    }
  }
}
END_TEST

/* realloc from every size to every other size keeps min(old,new) bytes. */
START_TEST(realloc_grow_shrink_keeps_contents) {
  static const size_t sz[] = {1, 16, 100, 4096, 70000, 200 * 1024, 300 * 1024, 1 * MiB, 3 * MiB};
  enum { NS = sizeof sz / sizeof sz[0] };
  for (int a = 0; a < NS; a++) {
    for (int b = 0; b < NS; b++) {
      void *p = hak_malloc(sz[a]);
      ck_assert_ptr_nonnull(p);
      tu_fill(p, sz[a], (uint64_t)(a * 16 + b));
      void *q = hak_realloc(p, sz[b]);
      ck_assert_msg(q != NULL, "realloc(%zu -> %zu) failed", sz[a], sz[b]);
      ck_assert_uint_ge(hak_usable_size(q), sz[b]);
      size_t keep = sz[a] < sz[b] ? sz[a] : sz[b];
      long off = tu_check(q, keep, (uint64_t)(a * 16 + b));
      ck_assert_msg(off < 0, "realloc %zu -> %zu lost byte %ld", sz[a], sz[b], off);
      memset(q, 0x5A, sz[b]);  /* the new size is writable */
      hak_free(q);
    }
  }
}
END_TEST

START_TEST(realloc_in_steps) {
  /* The common pattern: a buffer grown by small steps then shrunk. */
  size_t n = 1;
  unsigned char *p = hak_malloc(n);
  ck_assert_ptr_nonnull(p);
  p[0] = tu_byte(7, 0);
  while (n < 5 * MiB) {
    size_t m = n + n / 2 + 1;
    p = hak_realloc(p, m);
    ck_assert_ptr_nonnull(p);
    for (size_t i = n; i < m; i++) p[i] = tu_byte(7, i);
    n = m;
  }
  ck_assert_pattern(p, n, 7);
  while (n > 1) {
    n /= 3;
    if (n == 0) n = 1;
    p = hak_realloc(p, n);
    ck_assert_ptr_nonnull(p);
    ck_assert_pattern(p, n, 7);
  }
  hak_free(p);
}
END_TEST

START_TEST(realloc_null_and_zero) {
  void *p = hak_realloc(NULL, 100);  /* = malloc */
  ck_assert_ptr_nonnull(p);
  tu_fill(p, 100, 3);
  hak_free(p);
  /* realloc(p, 0) may free and return NULL or return a minimal block: both
   * are allowed; whatever comes back must be freeable. */
  void *q = hak_malloc(100);
  ck_assert_ptr_nonnull(q);
  void *r = hak_realloc(q, 0);
  hak_free(r);
}
END_TEST

START_TEST(aligned_alloc_all_alignments) {
  for (size_t al = 1; al <= 4 * MiB; al <<= 1) {
    static const size_t sz[] = {1, 100, 5000, 300 * 1024};
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) {
      size_t n = sz[i] < al ? al : sz[i];  /* C11 wants a multiple; we give one */
      void *p = hak_aligned_alloc(al, n);
      ck_assert_msg(p != NULL, "aligned_alloc(%zu, %zu) failed", al, n);
      ck_assert_msg(((uintptr_t)p & (al - 1)) == 0, "aligned_alloc(%zu) = %p", al, p);
      ck_assert_uint_ge(hak_usable_size(p), n);
      tu_fill(p, n, al);
      ck_assert_pattern(p, n, al);
      hak_free(p);
    }
  }
  /* A size that is not a multiple of the alignment is accepted (C17 DR 460). */
  void *p = hak_aligned_alloc(64, 100);
  ck_assert_ptr_nonnull(p);
  ck_assert_uint_eq((uintptr_t)p & 63, 0);
  hak_free(p);
}
END_TEST

START_TEST(posix_memalign_all_alignments) {
  for (size_t al = sizeof(void *); al <= 4 * MiB; al <<= 1) {
    static const size_t sz[] = {0, 1, 100, 5000, 300 * 1024, 3 * MiB};
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) {
      void *p = NULL;
      int rc = hak_posix_memalign(&p, al, sz[i]);
      ck_assert_msg(rc == 0, "posix_memalign(%zu, %zu) = %d", al, sz[i], rc);
      ck_assert_ptr_nonnull(p);
      ck_assert_msg(((uintptr_t)p & (al - 1)) == 0, "posix_memalign(%zu) = %p", al, p);
      ck_assert_uint_ge(hak_usable_size(p), sz[i]);
      tu_fill(p, sz[i], al + i);
      ck_assert_pattern(p, sz[i], al + i);
      hak_free(p);
    }
  }
}
END_TEST

START_TEST(aligned_blocks_realloc_and_reuse) {
  /* Aligned blocks go back through the ordinary free path: reuse must work. */
  void *keep[64];
  for (int i = 0; i < 64; i++) {
    size_t al = (size_t)1 << (4 + i % 14);
    keep[i] = hak_aligned_alloc(al, al * 2);
    ck_assert_ptr_nonnull(keep[i]);
    tu_fill(keep[i], al * 2, (uint64_t)i);
  }
  for (int i = 0; i < 64; i++) {
    size_t al = (size_t)1 << (4 + i % 14);
    ck_assert_pattern(keep[i], al * 2, (uint64_t)i);
    void *q = hak_realloc(keep[i], al * 3);
    ck_assert_ptr_nonnull(q);
    ck_assert_pattern(q, al * 2, (uint64_t)i);
    hak_free(q);
  }
}
END_TEST

START_TEST(usable_size_whole_block_is_writable) {
  /* Writing usable_size bytes into every block must not disturb neighbours. */
  enum { N = 200 };
  void *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = hak_malloc(1 + (size_t)i * 97);
    ck_assert_ptr_nonnull(p[i]);
    tu_fill(p[i], hak_usable_size(p[i]), (uint64_t)i);
  }
  for (int i = 0; i < N; i++) ck_assert_pattern(p[i], hak_usable_size(p[i]), (uint64_t)i);
  for (int i = 0; i < N; i++) hak_free(p[i]);
}
END_TEST

/* free's block-start test (one multiplication and one comparison, see
 * _hak_block_valid) decides usable_size too: in every size class (16-byte
 * steps to 128, then four per power of two up to 256 KiB), a block start
 * has its class size and no other 8-byte step inside the block is one;
 * nor is the segment's descriptor area, below the first block of page 0. */
START_TEST(usable_size_only_block_starts) {
  for (size_t size = 16; size <= 256 * 1024;) {
    size_t n = 512 * 1024 / size < 2 ? 2 : 512 * 1024 / size;
    if (n > 256) n = 256;
    char **p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) {
      p[i] = hak_malloc(size);
      ck_assert_ptr_nonnull(p[i]);
      ck_assert_uint_eq(hak_usable_size(p[i]), size);
      for (size_t off = 8; off < size; off += 8)
        ck_assert_msg(hak_usable_size(p[i] + off) == 0, "class %zu: %p + %zu taken for a block", size,
                      (void *)p[i], off);
      char *info = (char *)((uintptr_t)p[i] & ~(uintptr_t)(4 * MiB - 1)) + 8192;
      ck_assert_uint_eq(hak_usable_size(info), 0);
    }
    for (size_t i = 0; i < n; i++) hak_free(p[i]);
    free(p);
    size += size < 128 ? 16 : (size_t)1 << (61 - __builtin_clzl(size));
  }
}
END_TEST

/* Small blocks are counted when a page's free list is refilled and settled
 * when the page is given back (the fast paths count nothing): after a trim
 * they count every block. */
START_TEST(stats_count_allocation_paths) {
  enum { N = 3000 };
  static void *s[N];
  hak_trim();
  hak_stats_reset();
  hak_stats_t a = tu_stats();
  for (int i = 0; i < N; i++) ck_assert_ptr_nonnull(s[i] = hak_malloc(100));
  void *l = hak_malloc(1 * MiB);
  ck_assert_ptr_nonnull(l);
  hak_stats_t b = tu_stats();
  ck_assert_uint_ge(b.alloc_small, a.alloc_small + N);
  ck_assert_uint_ge(b.alloc_large, a.alloc_large + 1);
  for (int i = 0; i < N; i++) hak_free(s[i]);
  hak_free(l);
  hak_trim();
  hak_stats_t c = tu_stats();
  ck_assert_uint_ge(c.alloc_small, a.alloc_small + N);  /* the runner allocates too */
  ck_assert_uint_ge(c.free_small, a.free_small + N);
  ck_assert_uint_ge(c.free_large, b.free_large + 1);
  ck_assert_str_ne(hak_flush_mode_name(HAK_FLUSH_VECTOR), "?");
  ck_assert_str_eq(hak_flush_mode_name(HAK_FLUSH_LOOP), "loop");
  ck_assert_str_eq(hak_flush_mode_name((hak_flush_mode_t)99), "?");
}
END_TEST

Suite *test_api_suite(void) {
  Suite *s = suite_create("api");
  TCase *tc = tcase_create("api");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, malloc_sizes_aligned_usable);
  tcase_add_test(tc, every_size_gets_the_class_that_fits);
  tcase_add_test(tc, blocks_do_not_overlap);
  tcase_add_test(tc, large_2mib_aligned);
  tcase_add_test(tc, malloc_zero_unique);
  tcase_add_test(tc, calloc_zeroes_reused_memory);
  tcase_add_test(tc, realloc_grow_shrink_keeps_contents);
  tcase_add_test(tc, realloc_in_steps);
  tcase_add_test(tc, realloc_null_and_zero);
  tcase_add_test(tc, aligned_alloc_all_alignments);
  tcase_add_test(tc, posix_memalign_all_alignments);
  tcase_add_test(tc, aligned_blocks_realloc_and_reuse);
  tcase_add_test(tc, usable_size_whole_block_is_writable);
  tcase_add_test(tc, usable_size_only_block_starts);
  tcase_add_test(tc, stats_count_allocation_paths);
  suite_add_tcase(s, tc);
  return s;
}
