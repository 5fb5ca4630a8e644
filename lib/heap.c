/* Thread heaps: per-thread page lists by size class, so that malloc and a
 * free by the owning thread take no lock. Other threads free into a page's
 * atomic xthread_free list, collected by the owner when it runs short.
 * A heap outlives its thread: at thread exit it goes to a pool, and the next
 * new thread adopts it with its pages (and the frees that arrived meanwhile). */
#include <string.h>

#include "internal.h"

__thread hak_heap_t *hak_tls_heap __attribute__((tls_model("initial-exec")));
uint32_t hak_class_size[HAK_CLASS_COUNT];

static pthread_mutex_t heaps_lock = PTHREAD_MUTEX_INITIALIZER;
static hak_heap_t *all_heaps;      /* every heap, linked through next_all */
static hak_heap_t *pool;           /* abandoned heaps */
static pthread_key_t heap_key;
static hak_heap_t *heap_arena;     /* heaps are carved from mapped chunks */
static size_t heap_arena_left;

static void heap_abandon(void *arg);

void hak_heap_init(void) {
  for (int c = 0; c < HAK_CLASS_COUNT; c++) {
    if (c < 8) { hak_class_size[c] = (uint32_t)(c + 1) * 16; continue; }
    int k = c - 8, b = 7 + k / 4;
    hak_class_size[c] = (1u << b) + (uint32_t)(k % 4 + 1) * (1u << (b - 2));
  }
  pthread_key_create(&heap_key, heap_abandon);
}

/* ---- heap life -----------------------------------------------------------*/

static hak_heap_t *heap_carve(void) {
  const size_t chunk = 64 * 1024;
  if (heap_arena_left < sizeof(hak_heap_t)) {
    heap_arena = hak_os_map(chunk);
    if (!heap_arena) return NULL;
    heap_arena_left = chunk;
  }
  hak_heap_t *h = heap_arena++;
  heap_arena_left -= sizeof(hak_heap_t);
  return h;
}

static hak_heap_t *heap_get(void) {
  hak_heap_t *h = hak_tls_heap;
  if (HAK_LIKELY(h)) return h;
  hak_ensure_init();
  pthread_mutex_lock(&heaps_lock);
  h = pool;
  if (h) {
    pool = h->next_pool;
    h->abandoned = false;
  } else if ((h = heap_carve()) != NULL) {
    memset(h, 0, sizeof *h);
    h->next_all = all_heaps;
    all_heaps = h;
  }
  pthread_mutex_unlock(&heaps_lock);
  if (!h) return NULL;
  hak_tls_heap = h;
  pthread_setspecific(heap_key, h);
  return h;
}

/* ---- page lists ----------------------------------------------------------*/

static void unlink_page(hak_page_t **head, hak_page_t *pg) {
  if (pg->prev) pg->prev->next = pg->next;
  else *head = pg->next;
  if (pg->next) pg->next->prev = pg->prev;
  pg->next = pg->prev = NULL;
}

static void push_page(hak_page_t **head, hak_page_t *pg) {
  pg->prev = NULL;
  pg->next = *head;
  if (*head) (*head)->prev = pg;
  *head = pg;
}

static hak_page_t **list_of(hak_heap_t *h, hak_page_t *pg) {
  return atomic_load_explicit(&pg->in_full, memory_order_relaxed) ? &h->full : &h->pages[pg->class_idx];
}

/* Take the blocks other threads freed into this page. */
static void collect(hak_page_t *pg) {
  hak_block_t *b = atomic_exchange_explicit(&pg->xthread_free, NULL, memory_order_acquire);
  if (!b) return;
  uint32_t n = 1;
  hak_block_t *tail = b;
  while (tail->next) { tail = tail->next; n++; }
  tail->next = pg->free;
  pg->free = b;
  pg->used -= n;
}

/* An empty page goes back to its segment, unless it is the last page of
 * its class: keeping one avoids release/reuse churn on alloc-free loops. */
static bool retire_if_empty(hak_heap_t *h, hak_page_t *pg, bool keep_last) {
  if (pg->used != 0) return false;
  hak_page_t **head = list_of(h, pg);
  if (keep_last && head == &h->pages[pg->class_idx] && *head == pg && !pg->next) return false;
  unlink_page(head, pg);
  atomic_store_explicit(&pg->in_full, 0, memory_order_relaxed);
  hak_page_release(pg);
  return true;
}

static void move_to_full(hak_heap_t *h, hak_page_t *pg) {
  unlink_page(&h->pages[pg->class_idx], pg);
  push_page(&h->full, pg);
  /* Pairs with the remote free: it pushes, then reads in_full; we set
   * in_full, then read xthread_free. One of the two sees the other. */
  atomic_store(&pg->in_full, 1);
  if (atomic_load(&pg->xthread_free)) {
    unlink_page(&h->full, pg);
    atomic_store_explicit(&pg->in_full, 0, memory_order_relaxed);
    push_page(&h->pages[pg->class_idx], pg);
    collect(pg);
  }
}

static void move_from_full(hak_heap_t *h, hak_page_t *pg) {
  unlink_page(&h->full, pg);
  atomic_store_explicit(&pg->in_full, 0, memory_order_relaxed);
  push_page(&h->pages[pg->class_idx], pg);
}

/* Full pages that received remote frees go back to their class lists. */
static void rescue_full(hak_heap_t *h) {
  if (!atomic_load_explicit(&h->remote_full, memory_order_relaxed)) return;
  atomic_store(&h->remote_full, 0);
  for (hak_page_t *pg = h->full, *next; pg; pg = next) {
    next = pg->next;
    if (!atomic_load_explicit(&pg->xthread_free, memory_order_relaxed)) continue;
    move_from_full(h, pg);
    collect(pg);
    retire_if_empty(h, pg, true);
  }
}

/* ---- allocation ----------------------------------------------------------*/

/* Thread fresh blocks onto the free list a few at a time, so that memory is
 * touched only as it is used. */
static void extend(hak_page_t *pg) {
  uint32_t bs = pg->block_size, left = pg->reserved - pg->capacity;
  uint32_t n = (uint32_t)(HAK_OS_PAGE / bs);
  if (n < 8) n = 8;
  if (n > left) n = left;
  uint8_t *p = pg->start + (size_t)pg->capacity * bs;
  for (uint32_t i = 0; i + 1 < n; i++) ((hak_block_t *)(p + (size_t)i * bs))->next = (hak_block_t *)(p + (size_t)(i + 1) * bs);
  ((hak_block_t *)(p + (size_t)(n - 1) * bs))->next = pg->free;
  pg->free = (hak_block_t *)p;
  pg->capacity += n;
}

static bool page_has_room(hak_page_t *pg) {
  if (pg->free) return true;
  if (pg->capacity < pg->reserved) { extend(pg); return true; }
  collect(pg);
  return pg->free != NULL;
}

static hak_page_t *fresh_page(hak_heap_t *h, int c) {
  uint32_t bs = hak_class_size[c];
  int kind = bs <= HAK_SMALL_BLOCK_MAX ? HAK_SEG_SMALL : HAK_SEG_MEDIUM;
  hak_page_t *pg = hak_page_alloc(h, kind);
  if (!pg) return NULL;
  size_t len;
  hak_segment_t *s = hak_segment_of(pg);
  hak_page_area(s, pg->index, &len);
  pg->block_size = bs;
  pg->class_idx = (uint8_t)c;
  pg->reserved = (uint32_t)(len / bs);
  push_page(&h->pages[c], pg);
  extend(pg);
  return pg;
}

static hak_page_t *find_page(hak_heap_t *h, int c) {
  rescue_full(h);
  for (hak_page_t *pg = h->pages[c], *next; pg; pg = next) {
    next = pg->next;
    if (page_has_room(pg)) {
      if (pg != h->pages[c]) { unlink_page(&h->pages[c], pg); push_page(&h->pages[c], pg); }
      return pg;
    }
    move_to_full(h, pg);
    if (!atomic_load_explicit(&pg->in_full, memory_order_relaxed) && pg->free) return pg;
  }
  return fresh_page(h, c);
}

void *hak_heap_malloc_slow(size_t size) {
  hak_heap_t *h = heap_get();
  if (!h) return NULL;
  hak_batch_poll();
  int c = hak_size_class(size);
  hak_page_t *pg = find_page(h, c);
  if (!pg) return NULL;
  hak_block_t *b = pg->free;
  pg->free = b->next;
  pg->used++;
  h->alloc_small++;
  return b;
}

/* ---- free ----------------------------------------------------------------*/

/* The block is already on pg->free; the page just emptied or was full. */
void hak_heap_free_local_slow(hak_page_t *pg) {
  hak_heap_t *h = pg->heap;
  if (atomic_load_explicit(&pg->in_full, memory_order_relaxed)) move_from_full(h, pg);
  if (retire_if_empty(h, pg, true)) hak_batch_poll();
}

void hak_heap_free_remote(hak_page_t *pg, hak_block_t *b) {
  hak_block_t *head = atomic_load_explicit(&pg->xthread_free, memory_order_relaxed);
  do b->next = head;
  while (!atomic_compare_exchange_weak(&pg->xthread_free, &head, b));
  hak_stat_inc(free_remote_cnt);
  if (atomic_load(&pg->in_full)) atomic_store(&pg->heap->remote_full, 1);
}

/* ---- collection (thread exit, trim) --------------------------------------*/

/* Collect remote frees everywhere and give back every empty page. */
static void heap_collect(hak_heap_t *h) {
  atomic_store(&h->remote_full, 0);
  for (hak_page_t *pg = h->full, *next; pg; pg = next) {
    next = pg->next;
    collect(pg);
    if (pg->free) move_from_full(h, pg);
  }
  for (int c = 0; c < HAK_CLASS_COUNT; c++) {
    for (hak_page_t *pg = h->pages[c], *next; pg; pg = next) {
      next = pg->next;
      collect(pg);
      retire_if_empty(h, pg, false);
    }
  }
}

static void heap_abandon(void *arg) {
  hak_heap_t *h = arg;
  heap_collect(h);
  if (hak_tls_heap == h) hak_tls_heap = NULL;
  pthread_mutex_lock(&heaps_lock);
  h->abandoned = true;
  h->next_pool = pool;
  pool = h;
  pthread_mutex_unlock(&heaps_lock);
}

void hak_heap_collect_all(void) {
  if (hak_tls_heap) heap_collect(hak_tls_heap);
  pthread_mutex_lock(&heaps_lock);  /* no thread adopts a pooled heap meanwhile */
  for (hak_heap_t *h = pool; h; h = h->next_pool) heap_collect(h);
  pthread_mutex_unlock(&heaps_lock);
}

void hak_heap_sum_stats(hak_stats_t *st) {
  pthread_mutex_lock(&heaps_lock);
  for (hak_heap_t *h = all_heaps; h; h = h->next_all) {
    st->alloc_small += h->alloc_small;
    st->free_small += h->free_small;
  }
  pthread_mutex_unlock(&heaps_lock);
}

void hak_heap_reset_stats(void) {
  pthread_mutex_lock(&heaps_lock);
  for (hak_heap_t *h = all_heaps; h; h = h->next_all) h->alloc_small = h->free_small = 0;
  pthread_mutex_unlock(&heaps_lock);
}

/* ---- fork ----------------------------------------------------------------*/

void hak_heap_atfork_prepare(void) { pthread_mutex_lock(&heaps_lock); }
void hak_heap_atfork_parent(void) { pthread_mutex_unlock(&heaps_lock); }

/* Only the forking thread lives on in the child: every other heap is
 * abandoned, for the child's future threads to adopt. */
void hak_heap_atfork_child(void) {
  pthread_mutex_init(&heaps_lock, NULL);
  pool = NULL;
  for (hak_heap_t *h = all_heaps; h; h = h->next_all) {
    if (h == hak_tls_heap) continue;
    h->abandoned = true;
    h->next_pool = pool;
    pool = h;
  }
}
