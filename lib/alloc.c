/* The public allocation API: the fast paths, and the dispatch between thread
 * heaps (up to HAK_MEDIUM_MAX) and large blocks. */
#include <errno.h>
#include <string.h>

#include "internal.h"

/* ---- malloc ----------------------------------------------------------------
 * The fast paths are leaves: everything else is a tail call to a function
 * that is not inlined, so that the common case saves no registers. */

static HAK_NOINLINE void *malloc_slow(size_t size) {
  void *p;
  if (size <= HAK_MEDIUM_MAX) p = hak_heap_malloc_slow(size);
  else { hak_ensure_init(); p = hak_large_alloc(size, HAK_OS_PAGE, false); }
  if (HAK_UNLIKELY(!p)) errno = ENOMEM;
  return p;
}

void *hak_malloc(size_t size) {
  hak_heap_t *h = hak_tls_heap;
  if (HAK_LIKELY(size <= HAK_MEDIUM_MAX && h != NULL)) {
    hak_page_t *pg = h->pages[hak_size_class(size)];
    hak_block_t *b;
    if (HAK_LIKELY(pg != NULL && (b = pg->free) != NULL)) {
      pg->free = b->next;
      pg->used++;
      h->alloc_small++;
      return b;
    }
  }
  return malloc_slow(size);
}

void *hak_calloc(size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) { errno = ENOMEM; return NULL; }
  if (total > HAK_MEDIUM_MAX) {
    hak_ensure_init();
    return hak_large_alloc(total, HAK_OS_PAGE, true);
  }
  void *p = hak_malloc(total);
  if (p) memset(p, 0, total);
  return p;
}

/* ---- aligned ---------------------------------------------------------------*/

/* Small alignments come from a block big enough to hold an aligned run of
 * size bytes; the page remembers that it holds interior pointers. */
static void *aligned_small(size_t align, size_t size) {
  size_t need = size + align - 1;
  uint8_t *p = hak_malloc(need ? need : 1);
  if (!p) return NULL;
  uint8_t *a = (uint8_t *)hak_align_up((uintptr_t)p, align);
  if (a != p) hak_page_of(p)->has_aligned = 1;
  return a;
}

static void *aligned_any(size_t align, size_t size) {
  if (align <= HAK_ALIGN_MIN) return hak_malloc(size);
  if (size > ((size_t)1 << HAK_ADDR_BITS) || align > ((size_t)1 << 40)) { errno = ENOMEM; return NULL; }
  if (size + align - 1 <= HAK_MEDIUM_MAX && align <= HAK_OS_PAGE) return aligned_small(align, size);
  hak_ensure_init();
  return hak_large_alloc(size > HAK_MEDIUM_MAX ? size : HAK_MEDIUM_MAX + 1, align, false);
}

void *hak_aligned_alloc(size_t align, size_t size) {
  if (!hak_is_pow2(align)) { errno = EINVAL; return NULL; }
  return aligned_any(align, size);
}

int hak_posix_memalign(void **out, size_t align, size_t size) {
  if (!out || !hak_is_pow2(align) || align % sizeof(void *)) return EINVAL;
  int saved = errno;
  void *p = aligned_any(align, size);
  if (!p) { errno = saved; return ENOMEM; }
  *out = p;
  return 0;
}

/* ---- free ------------------------------------------------------------------*/

/* NULL, a large block, or a pointer that is not ours. */
static HAK_NOINLINE void free_other(void *p) {
  if (!p) return;
  if (!hak_large_free(p)) hak_fatal_pointer("free(): invalid pointer", p);
}

/* The owner's free: push, and see to the page when it empties or was full. */
static inline void free_local(hak_heap_t *h, hak_page_t *pg, hak_block_t *b) {
  b->next = pg->free;
  pg->free = b;
  h->free_small++;
  if (HAK_UNLIKELY(--pg->used == 0 || atomic_load_explicit(&pg->in_full, memory_order_relaxed)))
    hak_heap_free_local_slow(pg);
}

/* A small block freed by another thread, at an aligned interior pointer, or
 * freed twice in a row. */
static HAK_NOINLINE void free_small_slow(hak_page_t *pg, void *p) {
  if (HAK_UNLIKELY(!pg->heap)) hak_fatal_pointer("free(): invalid pointer (not allocated)", p);
  hak_block_t *b = hak_block_of(pg, p);
  hak_heap_t *h = hak_tls_heap;
  if (pg->heap != h) { hak_heap_free_remote(pg, b); return; }
  if (HAK_UNLIKELY(b == pg->free)) hak_fatal_pointer("free(): double free detected", p);
  free_local(h, pg, b);
}

void hak_free(void *p) {
  if (HAK_LIKELY(hak_segmap_contains(p))) {
    hak_page_t *pg = hak_page_of(p);
    hak_heap_t *h = hak_tls_heap;
    hak_block_t *b = p;
    if (HAK_LIKELY(pg->heap == h && !pg->has_aligned && b != pg->free)) {
      free_local(h, pg, b);
      return;
    }
    free_small_slow(pg, p);
    return;
  }
  free_other(p);
}

/* ---- size and realloc ------------------------------------------------------*/

size_t hak_usable_size(const void *p) {
  if (!p) return 0;
  if (hak_segmap_contains(p)) {
    hak_page_t *pg = hak_page_of(p);
    if (!pg->heap) return 0;
    const uint8_t *b = (const uint8_t *)hak_block_of(pg, p);
    return pg->block_size - (size_t)((const uint8_t *)p - b);
  }
  return hak_large_usable(p);
}

void *hak_realloc(void *p, size_t size) {
  if (!p) return hak_malloc(size);
  if (size == 0) { hak_free(p); return NULL; }  /* glibc's choice */
  size_t have = hak_usable_size(p);
  if (HAK_UNLIKELY(have == 0)) hak_fatal_pointer("realloc(): invalid pointer", p);
  /* Keep the block when it fits and would not waste more than half of it. */
  if (size <= have && size >= have / 2) return p;
  void *q = hak_malloc(size);
  if (!q) return NULL;  /* the old block stays valid, as C says */
  memcpy(q, p, size < have ? size : have);
  hak_free(p);
  return q;
}

/* ---- release control -------------------------------------------------------*/

void hak_flush(void) {
  hak_ensure_init();
  hak_batch_flush(HAK_FLUSH_WHY_EXPLICIT);
}

int hak_trim(void) {
  hak_ensure_init();
  hak_heap_collect_all();
  size_t given = hak_large_trim();
  hak_batch_flush(HAK_FLUSH_WHY_EXPLICIT);
  given += hak_segment_trim();
  return given > 0;
}

/* ---- the C library's names for the hottest entry points ----------------------
 * Aliases, not wrappers: malloc is hak_malloc, without a call in between.
 * The rest of the family is in override.c. */
#ifndef HAK_SANITIZE
#define HAK_ALIAS(name) __attribute__((alias(#name), visibility("default")))
HAK_MALLOC_ATTR void *malloc(size_t size) HAK_ALIAS(hak_malloc);
void free(void *p) HAK_ALIAS(hak_free);
void cfree(void *p) HAK_ALIAS(hak_free);
HAK_MALLOC_ATTR void *calloc(size_t count, size_t size) HAK_ALIAS(hak_calloc);
void *realloc(void *p, size_t size) HAK_ALIAS(hak_realloc);
#endif
