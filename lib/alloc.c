/* The public allocation API: the fast paths, and the dispatch between thread
 * heaps (up to HAK_MEDIUM_MAX) and large blocks. */
#include <errno.h>
#include <string.h>

#include "internal.h"

/* ---- malloc ----------------------------------------------------------------*/

static inline void *small_alloc(size_t size) {
  hak_heap_t *h = hak_tls_heap;
  if (HAK_LIKELY(h != NULL)) {
    hak_page_t *pg = h->pages[hak_size_class(size)];
    if (HAK_LIKELY(pg != NULL)) {
      hak_block_t *b = pg->free;
      if (HAK_LIKELY(b != NULL)) {
        pg->free = b->next;
        pg->used++;
        h->alloc_small++;
        return b;
      }
    }
  }
  return hak_heap_malloc_slow(size);
}

void *hak_malloc(size_t size) {
  if (HAK_LIKELY(size <= HAK_MEDIUM_MAX)) {
    void *p = small_alloc(size);
    if (HAK_UNLIKELY(!p)) errno = ENOMEM;
    return p;
  }
  hak_ensure_init();
  return hak_large_alloc(size, HAK_OS_PAGE, false);
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
  if (size + align - 1 <= HAK_MEDIUM_MAX && align <= HAK_OS_PAGE) return aligned_small(align, size);
  if (size > ((size_t)1 << HAK_ADDR_BITS) || align > ((size_t)1 << 40)) { errno = ENOMEM; return NULL; }
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

void hak_free(void *p) {
  if (HAK_UNLIKELY(!p)) return;
  if (HAK_LIKELY(hak_segmap_contains(p))) {
    hak_page_t *pg = hak_page_of(p);
    hak_heap_t *h = hak_tls_heap;
    if (HAK_UNLIKELY(!pg->heap)) hak_fatal_pointer("free(): invalid pointer (not allocated)", p);
    hak_block_t *b = hak_block_of(pg, p);
    if (HAK_LIKELY(pg->heap == h)) {
      if (HAK_UNLIKELY(b == pg->free)) hak_fatal_pointer("free(): double free detected", p);
      b->next = pg->free;
      pg->free = b;
      h->free_small++;
      if (HAK_UNLIKELY(--pg->used == 0 || atomic_load_explicit(&pg->in_full, memory_order_relaxed)))
        hak_heap_free_local_slow(pg, b);
      return;
    }
    hak_heap_free_remote(pg, b);
    return;
  }
  if (!hak_large_free(p)) hak_fatal_pointer("free(): invalid pointer", p);
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
