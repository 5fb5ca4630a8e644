/* Thread heaps: per-thread page lists by size class, so that malloc and a
 * free by the owning thread take no lock. A heap outlives its thread: at
 * thread exit it gives back its empty pages and goes to a pool, where the
 * purge thread (or malloc_trim) collects what other threads free into it,
 * and the next new thread adopts it. Heaps are never unmapped, so a remote
 * free may always write to its page's owner heap. */
#include <errno.h>
#include <string.h>

#include "internal.h"

static hak_page_t page_empty;      /* free == NULL: sends malloc to the slow path */
hak_heap_t _hak_heap_empty = {.direct = {[0 ... HAK_DIRECT_SLOTS - 1] = &page_empty}};
__thread hak_heap_t *_hak_tls_heap __attribute__((tls_model("initial-exec"))) = &_hak_heap_empty;
uint32_t _hak_class_size[HAK_CLASS_COUNT];

static pthread_mutex_t heaps_lock = PTHREAD_MUTEX_INITIALIZER;
static hak_heap_t *all_heaps;      /* every heap, linked through next_all */
static hak_heap_t *pool;           /* abandoned heaps */
static _Atomic int pool_dirty;     /* a remote free reached a pooled heap */
static pthread_key_t heap_key;
static hak_heap_t *heap_arena;     /* heaps are carved from mapped chunks */
static size_t heap_arena_left;

static void heap_abandon(void *arg);

void _hak_heap_init(void) {
  for (int c = 0; c < HAK_CLASS_COUNT; c++) {
    if (c < 8) { _hak_class_size[c] = (uint32_t)(c + 1) * 16; continue; }
    int k = c - 8, b = 7 + k / 4;
    _hak_class_size[c] = (1u << b) + (uint32_t)(k % 4 + 1) * (1u << (b - 2));
  }
  pthread_key_create(&heap_key, heap_abandon);
}

/* ---- page lists ---------------------------------------------------------------*/

static void list_unlink(hak_page_t **head, hak_page_t *pg) {
  if (pg->prev) pg->prev->next = pg->next;
  else *head = pg->next;
  if (pg->next) pg->next->prev = pg->prev;
  pg->next = pg->prev = NULL;
}

static void list_push(hak_page_t **head, hak_page_t *pg) {
  pg->prev = NULL;
  pg->next = *head;
  if (*head) (*head)->prev = pg;
  *head = pg;
}

/* Eight direct slots, in four 16-byte stores: a class above 16 bytes has
 * a multiple of 16 slots, and classes change their page often enough (a
 * page filling up, a page with room again) for the stores to count. */
typedef uintptr_t hak_slot_pair __attribute__((vector_size(16)));

static void fill8(hak_page_t **slot, hak_page_t *pg) {
  hak_slot_pair v = {(uintptr_t)pg, (uintptr_t)pg};
  for (int k = 0; k < 4; k++) memcpy(slot + 2 * k, &v, sizeof v);
}

/* The direct slots of class c (one per size) follow the head of its list;
 * they always change together, so the last one tells whether they must. */
static void update_direct(hak_heap_t *h, int c) {
  uint32_t bs = _hak_class_size[c];
  if (bs > HAK_DIRECT_MAX) return;
  hak_page_t *pg = h->pages[c] ? h->pages[c] : &page_empty;
  if (h->direct[bs] == pg) return;
  uint32_t lo = c ? _hak_class_size[c - 1] + 1 : 0;
  if (lo == 0) h->direct[lo++] = pg;  /* size 0 goes with class 0: 17 slots */
  for (uint32_t i = lo; i <= bs; i += 8) fill8(&h->direct[i], pg);
}

static void class_unlink(hak_heap_t *h, hak_page_t *pg) {
  int c = pg->class_idx;
  bool head = h->pages[c] == pg;
  if (h->last[c] == pg) h->last[c] = pg->prev;
  list_unlink(&h->pages[c], pg);
  if (head) update_direct(h, c);
}

static void class_push(hak_heap_t *h, hak_page_t *pg) {
  int c = pg->class_idx;
  if (!h->pages[c]) h->last[c] = pg;
  list_push(&h->pages[c], pg);
  update_direct(h, c);
}

/* At the tail: the current page stays current (its direct slots too), and
 * the page gets its turn after the others, with the frees it gathered
 * meanwhile, as mimalloc queues a page that is no longer full. Pushed at
 * the head, a full page that got one block back became current, served one
 * malloc and was full again: two rewrites of the class's direct slots for
 * one block. */
static void class_append(hak_heap_t *h, hak_page_t *pg) {
  int c = pg->class_idx;
  if (!h->pages[c]) {
    class_push(h, pg);
    return;
  }
  pg->next = NULL;
  pg->prev = h->last[c];
  h->last[c]->next = pg;
  h->last[c] = pg;
}

static bool is_full(const hak_page_t *pg) { return pg->xheap & HAK_PAGE_FULL; }

/* A page's owner, as slow paths (xheap) and free's fast path (xtid) see it:
 * a full page matches no heap and no thread, so free takes the slow path. */
static void set_owner(hak_page_t *pg, hak_heap_t *h, uintptr_t full) {
  HAK_STORE(pg->xheap, h ? (uintptr_t)h | full : 0);
  HAK_STORE(pg->xtid, h ? h->tid | full : 0);
}

static void to_full(hak_heap_t *h, hak_page_t *pg) {
  class_unlink(h, pg);
  list_push(&h->full, pg);
  set_owner(pg, h, HAK_PAGE_FULL);
}

static void unfull(hak_heap_t *h, hak_page_t *pg) {
  list_unlink(&h->full, pg);
  set_owner(pg, h, 0);
  class_append(h, pg);
}

/* The heap changes thread (tid 0: none): so do its pages, so that a new
 * thread that gets a dead one's thread pointer frees into them the slow
 * way, as into any other heap's. */
static void set_tid(hak_heap_t *h, uintptr_t tid) {
  h->tid = tid;
  for (hak_page_t *pg = h->full; pg; pg = pg->next) set_owner(pg, h, HAK_PAGE_FULL);
  for (int c = 0; c < HAK_CLASS_COUNT; c++)
    for (hak_page_t *pg = h->pages[c]; pg; pg = pg->next) set_owner(pg, h, 0);
}

static bool retire(hak_heap_t *h, hak_page_t *pg, bool keep_last);

/* The only page of its class (head and tail of the list): read from the
 * heap, not from the page's list links. */
static bool only_page(const hak_heap_t *h, const hak_page_t *pg) {
  return h->pages[pg->class_idx] == pg && h->last[pg->class_idx] == pg;
}

/* pg's slot among the kept medium pages, or NULL. */
static hak_page_t **kept_slot(hak_heap_t *h, const hak_page_t *pg) {
  for (int i = 0; i < HAK_KEPT_MEDIUM; i++)
    if (h->kept[i] == pg) return &h->kept[i];
  return NULL;
}

/* An empty page that is its class's only one stays if this holds: every
 * small page, and the medium pages among the kept ones. */
static bool stays_as_last(hak_heap_t *h, const hak_page_t *pg) {
  return pg->kind == HAK_SEG_SMALL || kept_slot(h, pg);
}

/* The last page of its class, empty, stays: that avoids release/reuse churn
 * on loops that allocate and free one block (250 ns a cycle for a 40 KiB
 * block, against 8). A small page always; a 1 MiB medium page only among
 * the heap's last HAK_KEPT_MEDIUM: a thread that went through the twenty
 * medium classes and went quiet kept 20 MiB it would never give back (the
 * phases scenario ended with 11 MiB of them), when a loop needs one or two. */
static void keep(hak_heap_t *h, hak_page_t *pg) {
  if (stays_as_last(h, pg)) return;
  hak_page_t *old = h->kept[h->kept_next];
  h->kept[h->kept_next] = pg;
  h->kept_next = (h->kept_next + 1) % HAK_KEPT_MEDIUM;
  if (old) retire(h, old, false);  /* unless it is in use again */
}

/* An empty page goes back to its segment, unless it is the last page of its
 * class and keep_last says so (see keep). */
static bool retire(hak_heap_t *h, hak_page_t *pg, bool keep_last) {
  if (pg->used != 0) return false;
  if (is_full(pg)) unfull(h, pg);
  if (keep_last && only_page(h, pg)) {
    keep(h, pg);
    return false;
  }
  hak_page_t **slot = kept_slot(h, pg);
  if (slot) *slot = NULL;
  class_unlink(h, pg);
  _hak_page_settle_stats(pg, h);
  set_owner(pg, NULL, 0);
  _hak_page_release(pg);
  return true;
}

/* ---- heap life ------------------------------------------------------------------*/

static hak_heap_t *heap_carve(void) {
  const size_t chunk = 64 * 1024;
  if (heap_arena_left < sizeof(hak_heap_t)) {
    heap_arena = _hak_os_map(chunk);
    if (!heap_arena) return NULL;
    heap_arena_left = chunk;
  }
  hak_heap_t *h = heap_arena++;
  heap_arena_left -= sizeof(hak_heap_t);
  return h;
}

static hak_heap_t *heap_new(void) {
  hak_heap_t *h = heap_carve();  /* zero: fresh mapped memory, never carved twice */
  if (!h) return NULL;
  h->direct[0] = &page_empty;
  for (size_t i = 1; i < HAK_DIRECT_SLOTS; i += 8) fill8(&h->direct[i], &page_empty);
  h->next_all = all_heaps;
  all_heaps = h;
  return h;
}

/* This thread's heap, adopting a pooled one or making one on first use. */
static hak_heap_t *heap_get(void) {
  hak_heap_t *h = _hak_tls_heap;
  if (HAK_LIKELY(h != &_hak_heap_empty)) return h;
  _hak_ensure_init();
  pthread_mutex_lock(&heaps_lock);
  h = pool;
  if (h) {
    pool = h->next_pool;
    atomic_store_explicit(&h->abandoned, false, memory_order_relaxed);
  } else {
    h = heap_new();
  }
  pthread_mutex_unlock(&heaps_lock);
  if (!h) return NULL;
  set_tid(h, _hak_thread_id());  /* out of the pool: nobody else walks its pages */
  _hak_tls_heap = h;
  pthread_setspecific(heap_key, h);  /* may allocate: the heap is already set */
  return h;
}

/* ---- delayed frees --------------------------------------------------------------*/

/* Blocks other threads freed into our full pages. A block whose freer has
 * not finished with the page yet goes back on the list for next time. */
static void take_delayed(hak_heap_t *h) {
  if (!atomic_load_explicit(&h->delayed_free, memory_order_relaxed)) return;
  hak_block_t *b = atomic_exchange_explicit(&h->delayed_free, NULL, memory_order_acquire);
  hak_block_t *later = NULL;
  while (b) {
    hak_block_t *next = b->next;
    hak_page_t *pg = _hak_page_lookup(b);
    if (!_hak_page_delayed_settled(pg)) {
      b->next = later;
      later = b;
    } else {
      _hak_page_collect_remote(pg);
      b->next = pg->local_free;
      pg->local_free = b;
      pg->used--;
      if (is_full(pg)) unfull(h, pg);
      retire(h, pg, true);
    }
    b = next;
  }
  while (later) {
    hak_block_t *next = later->next;
    hak_block_t *head = atomic_load_explicit(&h->delayed_free, memory_order_relaxed);
    do later->next = head;
    while (!atomic_compare_exchange_weak_explicit(&h->delayed_free, &head, later,
                                                  memory_order_release, memory_order_relaxed));
    later = next;
  }
}

/* ---- allocation -----------------------------------------------------------------*/

static hak_page_t *fresh_page(hak_heap_t *h, int c) {
  int kind = _hak_class_size[c] <= HAK_SMALL_BLOCK_MAX ? HAK_SEG_SMALL : HAK_SEG_MEDIUM;
  hak_page_t *pg = _hak_page_alloc(h, kind);
  if (!pg) return NULL;
  _hak_page_init(pg, h, c);
  class_push(h, pg);
  _hak_page_refill(pg, true);
  return pg;
}

/* A page of class c with a free block: blocks freed in the current page or
 * in the next few, then fresh blocks of a page not fully carved, then a
 * fresh page. Freed blocks go first so that memory is touched only when
 * none is free. Exhausted pages move to the full list. */
#define REUSE_SCAN 4
static hak_page_t *to_head(hak_heap_t *h, hak_page_t *pg) {
  if (pg != h->pages[pg->class_idx]) { class_unlink(h, pg); class_push(h, pg); }
  return pg;
}

/* Whether pg has free blocks now: its frees (extend: or fresh memory). A
 * page with nothing left to carve and nothing freed goes to the full list. */
static bool refill_or_full(hak_heap_t *h, hak_page_t *pg, bool extend) {
  if (pg->free || _hak_page_refill(pg, extend)) return true;
  if (pg->capacity < pg->reserved) return false;  /* fresh blocks left: not full */
  /* Frees that raced with the mark are on the page's list: look again. */
  _hak_page_use_delayed(pg);
  if (_hak_page_refill(pg, extend)) return true;
  to_full(h, pg);
  return false;
}

static hak_page_t *find_page(hak_heap_t *h, int c) {
  int n = 0;
  for (hak_page_t *pg = h->pages[c], *next; pg && n < REUSE_SCAN; pg = next, n++) {
    next = pg->next;
    if (refill_or_full(h, pg, false)) return to_head(h, pg);
  }
  for (hak_page_t *pg = h->pages[c], *next; pg; pg = next) {
    next = pg->next;
    if (refill_or_full(h, pg, true)) return to_head(h, pg);
  }
  return fresh_page(h, c);
}

static void *alloc_class(hak_heap_t *h, int c) {
  take_delayed(h);
  hak_page_t *pg = h->pages[c];
  if (!pg || !pg->free) pg = find_page(h, c);
  return pg ? _hak_page_pop(pg) : NULL;
}

void *_hak_heap_malloc(size_t size) {
  hak_heap_t *h = heap_get();
  return h ? alloc_class(h, _hak_size_class(size)) : NULL;
}

/* Every block of a class whose size is a multiple of align starts aligned,
 * because page areas start 8 KiB-aligned: no interior pointers, ever. */
void *_hak_heap_malloc_aligned(size_t align, size_t size) {
  hak_heap_t *h = heap_get();
  if (!h) return NULL;
  for (int c = _hak_size_class(size ? size : 1); c < HAK_CLASS_COUNT; c++)
    if (_hak_class_size[c] % align == 0) return alloc_class(h, c);
  return NULL;
}

/* ---- free -----------------------------------------------------------------------*/

static void free_local(hak_heap_t *h, hak_page_t *pg, hak_block_t *b) {
  b->next = pg->local_free;
  b->key = (uintptr_t)pg;
  pg->local_free = b;
  pg->used--;
  if (is_full(pg)) unfull(h, pg);
  if (pg->used == 0) retire(h, pg, true);
}

static void note_pooled(hak_heap_t *h) {
  if (!atomic_load_explicit(&h->abandoned, memory_order_relaxed)) return;
  if (!atomic_exchange(&pool_dirty, 1)) _hak_batch_kick();  /* the purge thread collects */
}

/* Everything the fast path did not take: a full page, another thread's
 * page, a suspected double free, or a pointer that is not a block start. */
void _hak_heap_free(hak_page_t *pg, void *p) {
  hak_heap_t *owner = (hak_heap_t *)(HAK_LOAD(pg->xheap) & ~HAK_PAGE_FULL);
  if (HAK_UNLIKELY(!owner)) _hak_fatal_pointer("free(): invalid pointer (not allocated)", p);
  if (HAK_UNLIKELY(!_hak_block_valid(pg, p, HAK_LOAD(pg->valid_lim))))
    _hak_fatal_pointer("free(): invalid pointer", p);
  hak_block_t *b = p;
  hak_heap_t *h = _hak_tls_heap;
  if (owner == h) {
    if (b->key == (uintptr_t)pg && _hak_page_holds_free(pg, h, b))
      _hak_fatal_pointer("free(): double free detected", p);
    free_local(h, pg, b);
    return;
  }
  /* Another thread's block: the page's lists are not ours to walk, so the
   * key alone decides (user data holding the address of one of hakmem's
   * page descriptors is not luck). */
  if (HAK_UNLIKELY(b->key == (uintptr_t)pg)) _hak_fatal_pointer("free(): double free detected", p);
  hak_stat_inc(free_remote);
  hak_heap_t *delayed = _hak_page_free_remote(pg, b);
  if (delayed) note_pooled(delayed);
}

/* The heap is this thread's (free's fast path checked the owner), and the
 * page is not full. The common case, a small page or a kept medium one that
 * is its class's only page and stays, is found from the heap alone (a
 * page's list links are in its descriptor's second line, which the fast
 * paths never touch); retire decides the rest. */
bool _hak_heap_page_emptied(hak_page_t *pg) {
  hak_heap_t *h = _hak_tls_heap;
  if (only_page(h, pg) && stays_as_last(h, pg)) return false;
  return retire(h, pg, true);
}

size_t _hak_heap_usable(hak_page_t *pg, const void *p) {
  uintptr_t owner = HAK_LOAD(pg->xheap) & ~HAK_PAGE_FULL;
  if (!owner || !_hak_block_valid(pg, p, HAK_LOAD(pg->valid_lim))) return 0;
  if (((const hak_block_t *)p)->key == (uintptr_t)pg) return 0;
  return pg->block_size;
}

/* ---- collection (thread exit, trim, the purge thread) -----------------------------*/

/* Take every free there is and give back every empty page. */
static size_t heap_collect(hak_heap_t *h) {
  size_t released = 0;
  take_delayed(h);
  for (hak_page_t *pg = h->full, *next; pg; pg = next) {
    next = pg->next;
    _hak_page_collect_remote(pg);
    if (pg->local_free || pg->used == 0) unfull(h, pg);
  }
  for (int c = 0; c < HAK_CLASS_COUNT; c++) {
    for (hak_page_t *pg = h->pages[c], *next; pg; pg = next) {
      next = pg->next;
      _hak_page_collect_remote(pg);
      released += retire(h, pg, false);
    }
  }
  return released;
}

/* Every page left will tell the heap of a remote free, so that a pooled heap
 * with nothing on its delayed list has nothing to collect. */
static void mark_all_delayed(hak_heap_t *h) {
  for (hak_page_t *pg = h->full; pg; pg = pg->next) _hak_page_use_delayed(pg);
  for (int c = 0; c < HAK_CLASS_COUNT; c++)
    for (hak_page_t *pg = h->pages[c]; pg; pg = pg->next) _hak_page_use_delayed(pg);
}

static void heap_abandon(void *arg) {
  hak_heap_t *h = arg;
  heap_collect(h);
  mark_all_delayed(h);
  set_tid(h, 0);
  if (_hak_tls_heap == h) _hak_tls_heap = &_hak_heap_empty;
  pthread_mutex_lock(&heaps_lock);
  atomic_store_explicit(&h->abandoned, true, memory_order_relaxed);
  h->next_pool = pool;
  pool = h;
  pthread_mutex_unlock(&heaps_lock);
}

void _hak_heap_collect_mine(void) {
  if (_hak_tls_heap != &_hak_heap_empty) heap_collect(_hak_tls_heap);
}

bool _hak_heap_has_abandoned(void) {
  return atomic_load_explicit(&pool_dirty, memory_order_relaxed);
}

/* The pooled heaps' frees: the lock keeps threads from adopting them meanwhile. */
size_t _hak_heap_collect_abandoned(void) {
  size_t released = 0;
  atomic_store(&pool_dirty, 0);
  pthread_mutex_lock(&heaps_lock);
  for (hak_heap_t *h = pool; h; h = h->next_pool) {
    released += heap_collect(h);
    mark_all_delayed(h);
  }
  pthread_mutex_unlock(&heaps_lock);
  hak_stat_add(abandoned_pages_released, released);
  return released;
}

/* ---- statistics -------------------------------------------------------------------*/

/* Counted per refill and settled when a page retires, not per call: the
 * fast paths count nothing. Exact for pages given back; for pages in use,
 * allocs run ahead by the blocks on their free lists and frees lag by the
 * frees not yet reused. */
void _hak_heap_fill_stats(hak_stats_t *st) {
  pthread_mutex_lock(&heaps_lock);
  for (hak_heap_t *h = all_heaps; h; h = h->next_all) {
    st->alloc_small += HAK_LOAD(h->allocs);
    st->free_small += HAK_LOAD(h->frees);
  }
  pthread_mutex_unlock(&heaps_lock);
}

void _hak_heap_reset_stats(void) {
  pthread_mutex_lock(&heaps_lock);
  for (hak_heap_t *h = all_heaps; h; h = h->next_all) {
    HAK_STORE(h->allocs, 0);
    HAK_STORE(h->frees, 0);
  }
  pthread_mutex_unlock(&heaps_lock);
}

/* ---- fork -------------------------------------------------------------------------*/

void _hak_heap_atfork_prepare(void) { pthread_mutex_lock(&heaps_lock); }
void _hak_heap_atfork_parent(void) { pthread_mutex_unlock(&heaps_lock); }

static void settle_pages(hak_heap_t *h) {
  for (hak_page_t *pg = h->full; pg; pg = pg->next) _hak_page_atfork_child(pg);
  for (int c = 0; c < HAK_CLASS_COUNT; c++)
    for (hak_page_t *pg = h->pages[c]; pg; pg = pg->next) _hak_page_atfork_child(pg);
}

/* Only the forking thread lives on in the child: every other heap is
 * abandoned, for the child's future threads to adopt. */
void _hak_heap_atfork_child(void) {
  pool = NULL;
  for (hak_heap_t *h = all_heaps; h; h = h->next_all) {
    settle_pages(h);
    if (h == _hak_tls_heap) continue;
    set_tid(h, 0);  /* its thread is gone; a new one may get its thread pointer */
    atomic_store_explicit(&h->abandoned, true, memory_order_relaxed);
    h->next_pool = pool;
    pool = h;
  }
  atomic_store(&pool_dirty, 1);
  pthread_mutex_unlock(&heaps_lock);  /* locked by this thread in prepare */
}
