/* The standard malloc family, so that LD_PRELOAD or linking makes hakmem the
 * process allocator. Left out of sanitizer builds, where ASan owns malloc. */
#ifndef HAK_SANITIZE
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

#define EXPORT __attribute__((visibility("default")))

/* malloc, free, cfree, calloc and realloc are aliases defined in alloc.c. */

EXPORT void *reallocarray(void *p, size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) { errno = ENOMEM; return NULL; }
  return hak_realloc(p, total);
}

EXPORT int posix_memalign(void **out, size_t align, size_t size) {
  return hak_posix_memalign(out, align, size);
}

EXPORT void *aligned_alloc(size_t align, size_t size) { return hak_aligned_alloc(align, size); }

/* glibc's memalign rounds a non-power-of-two alignment up instead of failing,
 * and says EINVAL only for one above SIZE_MAX/2 + 1; so do we. */
EXPORT void *memalign(size_t align, size_t size) {
  if (align > ((size_t)1 << 63)) { errno = EINVAL; return NULL; }
  if (align && !_hak_is_pow2(align)) align = (size_t)1 << (64 - __builtin_clzl(align));
  return hak_aligned_alloc(align ? align : 1, size);
}

EXPORT void *valloc(size_t size) { return hak_aligned_alloc((size_t)sysconf(_SC_PAGESIZE), size); }

EXPORT void *pvalloc(size_t size) {
  size_t ps = (size_t)sysconf(_SC_PAGESIZE);
  size_t rounded = _hak_align_up(size ? size : 1, ps);
  if (rounded < size) { errno = ENOMEM; return NULL; }
  return hak_aligned_alloc(ps, rounded);
}

EXPORT size_t malloc_usable_size(void *p) { return hak_usable_size(p); }

/* Flushes pending releases and gives back cached memory. */
EXPORT int malloc_trim(size_t pad) {
  (void)pad;
  return hak_trim();
}
#else
typedef int hak_override_disabled;
#endif
