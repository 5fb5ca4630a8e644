/* The public allocation API: the fast paths, and the dispatch between thread
 * heaps (up to HAK_MEDIUM_MAX) and large blocks. */
#include <errno.h>
#include <string.h>

#include "internal.h"

/* ---- malloc ----------------------------------------------------------------
 * The fast paths are leaves: everything else is a tail call to a function
 * that is not inlined, so that the common case saves no registers. A
 * thread's heap is never NULL (a static empty heap stands in before its
 * first malloc), so the fast path does not test it. */

/* The current page of the class, its free list refilled from the page's own
 * frees if need be: what most slow mallocs come to. */
static inline void *malloc_current(size_t size) {
  hak_page_t *pg = _hak_tls_heap->pages[_hak_size_class(size)];
  if (!pg || (!pg->free && !_hak_page_refill(pg, false))) return NULL;
  return _hak_page_pop(pg);
}

static HAK_NOINLINE void *malloc_generic(size_t size) {
  void *p;
  if (size <= HAK_MEDIUM_MAX) {
    if ((p = malloc_current(size)) != NULL) return p;
    p = _hak_heap_malloc(size);
  } else {
    _hak_ensure_init();
    p = _hak_large_alloc(size, HAK_OS_PAGE, false);
  }
  _hak_purge_poll();
  if (HAK_UNLIKELY(!p)) errno = ENOMEM;
  return p;
}

/* Past the direct slots, the class's current page when it has a block: a
 * leaf as well, so that a 1-256 KiB malloc saves no registers either (a third
 * of the producer/consumer scenario's sizes). Sizes here are above 128, the
 * classes of 16-byte steps. */
static HAK_NOINLINE void *malloc_sized(size_t size) {
  if (HAK_LIKELY(size <= HAK_MEDIUM_MAX)) {
    hak_page_t *pg = _hak_tls_heap->pages[_hak_size_class_log(size)];
    if (HAK_LIKELY(pg != NULL && pg->free != NULL)) return _hak_page_pop(pg);
  }
  return malloc_generic(size);
}

/* malloc_current for a size with a direct slot, whose page malloc already
 * has (the class's current page, or page_empty, which refills to nothing). */
static HAK_NOINLINE void *malloc_refill(size_t size, hak_page_t *pg) {
  if (_hak_page_refill(pg, false)) return _hak_page_pop(pg);
  return malloc_generic(size);
}

void *hak_malloc(size_t size) {
  if (HAK_LIKELY(size <= HAK_DIRECT_MAX)) {
    hak_page_t *pg = _hak_tls_heap->direct[size];
    if (HAK_LIKELY(pg->free != NULL)) return _hak_page_pop(pg);
    return malloc_refill(size, pg);
  }
  return malloc_sized(size);
}

void *hak_calloc(size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) { errno = ENOMEM; return NULL; }
  if (total > HAK_MEDIUM_MAX) {
    _hak_ensure_init();
    void *p = _hak_large_alloc(total, HAK_OS_PAGE, true);
    _hak_purge_poll();
    if (!p) errno = ENOMEM;
    return p;
  }
  void *p = hak_malloc(total);
  if (p) memset(p, 0, total);
  return p;
}

/* ---- aligned ---------------------------------------------------------------
 * Up to 8 KiB of alignment comes from a size class whose blocks all start
 * aligned: free never meets an interior pointer. */

static void *aligned_any(size_t align, size_t size) {
  if (align <= HAK_ALIGN_MIN) return hak_malloc(size);
  if (align > HAK_ALIGN_MAX || size > ((size_t)1 << HAK_ADDR_BITS)) { errno = ENOMEM; return NULL; }
  void *p = NULL;
  if (align <= 2 * HAK_OS_PAGE && size <= HAK_MEDIUM_MAX) {
    p = _hak_heap_malloc_aligned(align, size);
  } else {
    _hak_ensure_init();
    p = _hak_large_alloc(size > HAK_MEDIUM_MAX ? size : HAK_MEDIUM_MAX + 1, align, false);
  }
  if (!p && size <= HAK_MEDIUM_MAX && align <= 2 * HAK_OS_PAGE) {
    _hak_ensure_init();  /* no class fits: a large block does */
    p = _hak_large_alloc(HAK_MEDIUM_MAX + 1, align, false);
  }
  _hak_purge_poll();
  if (!p) errno = ENOMEM;
  return p;
}

void *hak_aligned_alloc(size_t align, size_t size) {
  if (!_hak_is_pow2(align)) { errno = EINVAL; return NULL; }
  return aligned_any(align, size);
}

int hak_posix_memalign(void **out, size_t align, size_t size) {
  if (!out || !_hak_is_pow2(align) || align % sizeof(void *)) return EINVAL;
  int saved = errno;
  void *p = aligned_any(align, size);
  if (!p) { errno = saved; return ENOMEM; }
  *out = p;
  return 0;
}

/* ---- free ------------------------------------------------------------------*/

/* A large block, or a pointer that is not ours. */
static HAK_NOINLINE void free_other(void *p) {
  if (!_hak_large_free(p)) _hak_fatal_pointer("free(): invalid pointer", p);
  _hak_purge_poll();
}

/* p first: hak_free keeps p where it came (rdi), which spares a copy. */
static HAK_NOINLINE void free_slow(void *p, hak_page_t *pg) {
  _hak_heap_free(pg, p);
  _hak_purge_poll();
}

/* A page its class keeps queued nothing: no poll (a program that empties
 * and refills the one page of a class on every batch called it every time). */
static HAK_NOINLINE void page_emptied(hak_page_t *pg) {
  if (_hak_heap_page_emptied(pg)) _hak_purge_poll();
}

/* The owner's free of a block start that is not free already: the page's
 * thread id proves the owner (the page is not full either), the block test
 * the block start, the key (the page descriptor's address, which malloc
 * clears) the last; anything else is checked on the slow path. */
void hak_free(void *p) {
  if (HAK_UNLIKELY(p == NULL)) return;
  uintptr_t u = (uintptr_t)p, idx = u >> HAK_SEGMENT_SHIFT;
  unsigned v;
  if (HAK_UNLIKELY(idx >= HAK_SEGMAP_SIZE ||
                   (v = atomic_load_explicit(&_hak_segmap[idx], memory_order_relaxed)) == 0)) {
    free_other(p);
    return;
  }
  /* _hak_page_at, with the segment's base made from idx: the barrier keeps
   * the compiler from making it from u again, which costs a copy of u. */
  __asm__("" : "+r"(idx));
  hak_page_t *pg = (hak_page_t *)((idx << HAK_SEGMENT_SHIFT) + ((u >> v) & ((HAK_MAX_PAGES - 1) << 7)));
  hak_block_t *b = p;
  uintptr_t key = (uintptr_t)pg;
#ifdef HAK_MEASURE_UNCHECKED_FREE  /* only to measure what the checks cost (docs/design.md) */
  if (HAK_LIKELY(HAK_LOAD(pg->xtid) == _hak_thread_id())) {
#else
  if (HAK_LIKELY(HAK_LOAD(pg->xtid) == _hak_thread_id() && _hak_block_valid(pg, p, pg->valid_lim) &&
                 b->key != key)) {
#endif
    b->next = pg->local_free;
    b->key = key;
    pg->local_free = b;
    if (HAK_UNLIKELY(--pg->used == 0)) page_emptied(pg);
    return;
  }
  free_slow(p, pg);
}

/* ---- size and realloc ------------------------------------------------------*/

size_t hak_usable_size(const void *p) {
  if (!p) return 0;
  hak_page_t *pg = _hak_page_lookup(p);
  return pg ? _hak_heap_usable(pg, p) : _hak_large_usable(p);
}

void *hak_realloc(void *p, size_t size) {
  if (!p) return hak_malloc(size);
  if (size == 0) { hak_free(p); return NULL; }  /* glibc's choice */
  size_t have = hak_usable_size(p);
  if (HAK_UNLIKELY(have == 0)) _hak_fatal_pointer("realloc(): invalid pointer", p);
  /* Keep the block when it fits and would not waste more than half of it. */
  if (size <= have && size >= have / 2) return p;
  /* A large block to a large size: its pages move, nothing is copied. */
  if (have > HAK_MEDIUM_MAX && size > HAK_MEDIUM_MAX) {
    void *q = _hak_large_realloc(p, size);
    if (q) return q;
  }
  void *q = hak_malloc(size);
  if (!q) return NULL;  /* the old block stays valid, as C says */
  memcpy(q, p, size < have ? size : have);
  hak_free(p);
  return q;
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
