/* Pages: the free lists of one page and the rules for touching them.
 *
 * A page has three lists, as in mimalloc: `free`, which malloc pops;
 * `local_free`, where the owner's frees go (swapped into `free` when it runs
 * dry, so that a page being allocated from is not also being freed into);
 * and `xthread_free`, where other threads push, collected by the owner.
 *
 * A remote free publishes its block with one compare-and-swap and never
 * touches the page again, because from then on the owner may collect the
 * block, empty the page and give its memory away. The one exception is a
 * full page, whose owner must learn that it has room again: the page's
 * xthread_free then carries HAK_USE_DELAYED, and the freer marks the page
 * HAK_DELAYED_FREEING, pushes the block on the owner heap's delayed list,
 * and resets the mark. Its block is not counted as freed until the owner
 * takes it from that list, so the page cannot empty meanwhile; and the
 * owner never frees a delayed block while the mark is up. */
#include <string.h>

#include "internal.h"

/* ---- set-up -----------------------------------------------------------------*/


void _hak_page_init(hak_page_t *pg, hak_heap_t *h, int c) {
  size_t len;
  hak_segment_t *s = _hak_segment_of(pg);
  uint32_t bs = _hak_class_size[c];
  pg->start = _hak_page_area(s, pg->index, &len);
  pg->block_size = bs;
  pg->class_idx = (uint8_t)c;
  pg->reserved = (uint16_t)(len / bs);
  pg->free = pg->local_free = NULL;
  pg->used = 0;
  pg->handed = pg->recycled = 0;
  HAK_STORE(pg->capacity, 0);
  pg->div_c = _hak_div_c(bs);
  HAK_STORE(pg->valid_lim, 0);
  atomic_store_explicit(&pg->xthread_free, HAK_NO_DELAYED, memory_order_relaxed);
  HAK_STORE(pg->xheap, (uintptr_t)h);
  HAK_STORE(pg->xtid, h->tid);
}

/* Carve up to 4 KiB worth of fresh blocks, in address order, so that memory
 * is touched only as it is used and new blocks sit next to each other. */
static void extend(hak_page_t *pg) {
  uint32_t bs = pg->block_size, left = pg->reserved - (uint32_t)pg->capacity;
  uint32_t n = (uint32_t)(HAK_OS_PAGE / bs);
  if (n < 1) n = 1;
  if (n > left) n = left;
  uint8_t *p = pg->start + (size_t)pg->capacity * bs;
  for (uint32_t i = 0; i + 1 < n; i++) ((hak_block_t *)(p + (size_t)i * bs))->next = (hak_block_t *)(p + (size_t)(i + 1) * bs);
  ((hak_block_t *)(p + (size_t)(n - 1) * bs))->next = NULL;
  pg->free = (hak_block_t *)p;
  HAK_STORE(pg->capacity, (uint16_t)(pg->capacity + n));
  HAK_STORE(pg->valid_lim, _hak_valid_lim(pg, pg->capacity));
}

/* ---- collecting ---------------------------------------------------------------*/

/* Move the blocks other threads freed into local_free; the state bits stay. */
void _hak_page_collect_remote(hak_page_t *pg) {
  uintptr_t tf = atomic_load_explicit(&pg->xthread_free, memory_order_relaxed);
  do {
    if (!HAK_TF_BLOCK(tf)) return;
  } while (!atomic_compare_exchange_weak_explicit(&pg->xthread_free, &tf, tf & 3,
                                                  memory_order_acquire, memory_order_relaxed));
  hak_block_t *b = HAK_TF_BLOCK(tf), *tail = b;
  uint32_t n = 1;
  while (tail->next) { tail = tail->next; n++; }
  tail->next = pg->local_free;
  pg->local_free = b;
  pg->used -= n;
}

/* free is empty: refill it from the frees, or (extend_ok) from fresh memory.
 * Returns the number of blocks now on it (0: none). */
uint32_t _hak_page_refill(hak_page_t *pg, bool extend_ok) {
  /* Most pages have no remote frees: one load rather than a call. */
  if (HAK_TF_BLOCK(atomic_load_explicit(&pg->xthread_free, memory_order_relaxed)))
    _hak_page_collect_remote(pg);
  uint32_t fresh = 0;
  if (pg->local_free) {
    pg->free = pg->local_free;
    pg->local_free = NULL;
  } else if (extend_ok && pg->capacity < pg->reserved) {
    fresh = (uint32_t)pg->capacity;
    extend(pg);
    fresh = (uint32_t)pg->capacity - fresh;
  } else {
    return 0;
  }
  /* Every carved block not in use is on free now: count them here, so that
   * the fast paths count nothing (malloc will hand them out; the recycled
   * ones were freed). */
  uint32_t n = (uint32_t)pg->capacity - pg->used;
  hak_heap_t *h = (hak_heap_t *)(pg->xheap & ~HAK_PAGE_FULL);
  pg->handed += n;
  pg->recycled += n - fresh;
  HAK_STORE(h->allocs, h->allocs + n);
  HAK_STORE(h->frees, h->frees + (n - fresh));
  return n;
}

/* The page is empty and leaves its heap: settle its counts exactly. Blocks
 * still on free were never handed out; every other block was, and is free. */
void _hak_page_settle_stats(hak_page_t *pg, hak_heap_t *h) {
  uint64_t left = 0;
  for (hak_block_t *b = pg->free; b && left <= pg->capacity; b = b->next) left++;
  uint64_t popped = pg->handed - left;
  HAK_STORE(h->allocs, h->allocs - left);
  HAK_STORE(h->frees, h->frees + (popped - pg->recycled));
}

/* ---- the delayed-free mark ----------------------------------------------------*/

/* The page goes on the full list: from now on remote frees tell the heap.
 * A free already marked DELAYED_FREEING tells it anyway. */
void _hak_page_use_delayed(hak_page_t *pg) {
  uintptr_t tf = atomic_load_explicit(&pg->xthread_free, memory_order_relaxed);
  for (;;) {
    unsigned st = HAK_TF_STATE(tf);
    if (st == HAK_USE_DELAYED || st == HAK_DELAYED_FREEING) return;
    uintptr_t nf = (tf & ~(uintptr_t)3) | HAK_USE_DELAYED;
    if (atomic_compare_exchange_weak_explicit(&pg->xthread_free, &tf, nf, memory_order_acq_rel,
                                              memory_order_relaxed))
      return;
  }
}

/* May the owner take a delayed block of this page now? Not while a freer is
 * between its two steps: it still reads the page. */
bool _hak_page_delayed_settled(hak_page_t *pg) {
  uintptr_t tf = atomic_load_explicit(&pg->xthread_free, memory_order_acquire);
  return HAK_TF_STATE(tf) != HAK_DELAYED_FREEING;
}

/* In a forked child, a freer that was between its steps no longer exists. */
void _hak_page_atfork_child(hak_page_t *pg) {
  uintptr_t tf = atomic_load_explicit(&pg->xthread_free, memory_order_relaxed);
  if (HAK_TF_STATE(tf) == HAK_DELAYED_FREEING)
    atomic_store_explicit(&pg->xthread_free, (tf & ~(uintptr_t)3) | HAK_USE_DELAYED,
                          memory_order_relaxed);
}

/* ---- remote free ----------------------------------------------------------------*/

/* Returns the heap whose delayed list got the block, or NULL when the block
 * went on the page's own list. Either way the page is not touched after the
 * block is visible to its owner. */
hak_heap_t *_hak_page_free_remote(hak_page_t *pg, hak_block_t *b) {
  b->key = (uintptr_t)pg;
  uintptr_t tf = atomic_load_explicit(&pg->xthread_free, memory_order_relaxed), nf;
  bool delayed;
  do {
    delayed = HAK_TF_STATE(tf) == HAK_USE_DELAYED;
    if (delayed) {
      nf = (tf & ~(uintptr_t)3) | HAK_DELAYED_FREEING;
    } else {
      b->next = HAK_TF_BLOCK(tf);
      nf = (uintptr_t)b | HAK_TF_STATE(tf);
    }
  } while (!atomic_compare_exchange_weak_explicit(&pg->xthread_free, &tf, nf, memory_order_release,
                                                  memory_order_relaxed));
  if (!delayed) return NULL;
  /* b is still counted as used: the page and its owner stay put. */
  hak_heap_t *h = (hak_heap_t *)(HAK_LOAD(pg->xheap) & ~HAK_PAGE_FULL);
  hak_block_t *head = atomic_load_explicit(&h->delayed_free, memory_order_relaxed);
  do b->next = head;
  while (!atomic_compare_exchange_weak_explicit(&h->delayed_free, &head, b, memory_order_release,
                                                memory_order_relaxed));
  /* Last touch of the page: the owner defers b until this lands. */
  tf = atomic_load_explicit(&pg->xthread_free, memory_order_relaxed);
  do nf = (tf & ~(uintptr_t)3) | HAK_NO_DELAYED;
  while (!atomic_compare_exchange_weak_explicit(&pg->xthread_free, &tf, nf, memory_order_release,
                                                memory_order_relaxed));
  return h;
}

/* ---- validation -------------------------------------------------------------------*/

static bool list_has(const hak_block_t *list, const hak_block_t *b, uint32_t limit) {
  for (uint32_t n = 0; list && n <= limit; list = list->next, n++)
    if (list == b) return true;
  return false;
}

/* The owner's confirmation of a suspected double free: b carries the free
 * key, but user data could too. Walks every list a free block can be on. */
bool _hak_page_holds_free(hak_page_t *pg, hak_heap_t *h, const hak_block_t *b) {
  uint32_t limit = (uint32_t)pg->capacity;
  if (list_has(pg->free, b, limit) || list_has(pg->local_free, b, limit)) return true;
  uintptr_t tf = atomic_load_explicit(&pg->xthread_free, memory_order_acquire);
  if (list_has(HAK_TF_BLOCK(tf), b, limit)) return true;
  /* The delayed list mixes pages and only grows at its head: walk a snapshot. */
  const hak_block_t *d = atomic_load_explicit(&h->delayed_free, memory_order_acquire);
  for (; d; d = d->next)
    if (d == b) return true;
  return false;
}
