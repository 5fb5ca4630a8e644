/* Large blocks (above HAK_MEDIUM_MAX): one mapping each, registered in a hash
 * table so that free() can tell a live block from a double free or a foreign
 * pointer. A freed block stays mapped in a bounded cache (HAKMEM_CACHE_BYTES)
 * while its pages wait in the release batch; reusing it before the flush takes
 * the range out of the queue, and a block pushed out of the cache is unmapped
 * only once it is out of the queue. */
#include <errno.h>
#include <string.h>

#include "internal.h"

enum { LIVE = 1, CACHED = 2 };
#define NBINS 64

typedef struct node_s {
  uint8_t *ptr;                  /* what the user holds */
  uint8_t *base;                 /* the mapping */
  size_t map_size;
  size_t usable;                 /* bytes from ptr to the mapping's end */
  uint64_t gen;                  /* batch token of its queued release */
  uint64_t freed_ms;             /* when it was freed (the policy's reuse intervals) */
  int state, bin;
  struct node_s *hnext;          /* hash chain */
  struct node_s *bprev, *bnext;  /* cache bin (most recent first) */
  struct node_s *lprev, *lnext;  /* cache LRU, for eviction (newest at head) */
} node_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static node_t **table;
static size_t table_size, live_count;
static node_t *spare;            /* unused nodes */
static node_t *bins[NBINS];
static node_t *lru_head, *lru_tail;
static size_t cache_bytes;

/* ---- sizes ---------------------------------------------------------------*/

/* Four size steps per power of two, so that freed blocks fit later requests;
 * blocks of 2 MiB and more are whole huge pages. */
static size_t round_size(size_t size) {
  size_t step = HAK_OS_PAGE;
  if (size > 4 * HAK_OS_PAGE) step = (size_t)1 << (63 - __builtin_clzl(size - 1) - 2);
  size_t r = _hak_align_up(size, step);
  if (r >= HAK_HUGE_ALIGN) r = _hak_align_up(r, HAK_HUGE_ALIGN);
  return r < size ? 0 : r;
}

static int bin_of(size_t map_size) {
  int b = 63 - __builtin_clzl(map_size);
  int q = (int)((map_size >> (b - 2)) & 3);
  int bin = (b - 18) * 4 + q;
  return bin < 0 ? 0 : bin >= NBINS ? NBINS - 1 : bin;
}

/* ---- registry --------------------------------------------------------------*/

static size_t hash(const void *p) {
  uint64_t x = (uintptr_t)p >> 12;
  x *= 0x9E3779B97F4A7C15ull;
  return (size_t)(x >> 32) & (table_size - 1);
}

static bool grow_table(void) {
  size_t n = table_size ? table_size * 2 : 1024;
  node_t **t = _hak_os_map(n * sizeof(node_t *));
  if (!t) return false;
  node_t **old = table;
  size_t old_n = table_size;
  table = t;
  table_size = n;
  for (size_t i = 0; i < old_n; i++) {
    for (node_t *e = old[i], *next; e; e = next) {
      next = e->hnext;
      size_t h = hash(e->ptr);
      e->hnext = table[h];
      table[h] = e;
    }
  }
  if (old) _hak_os_unmap(old, old_n * sizeof(node_t *));
  return true;
}

static node_t *lookup(const void *p) {
  if (!table) return NULL;
  for (node_t *e = table[hash(p)]; e; e = e->hnext)
    if (e->ptr == p) return e;
  return NULL;
}

static void unregister(node_t *e) {
  node_t **pp = &table[hash(e->ptr)];
  while (*pp != e) pp = &(*pp)->hnext;
  *pp = e->hnext;
  live_count--;
}

static node_t *new_node(void) {
  if (!spare) {
    const size_t chunk = 64 * 1024;
    node_t *n = _hak_os_map(chunk);
    if (!n) return NULL;
    for (size_t i = 0; i < chunk / sizeof(node_t); i++) { n[i].hnext = spare; spare = &n[i]; }
  }
  node_t *e = spare;
  spare = e->hnext;
  memset(e, 0, sizeof *e);
  return e;
}

static bool register_node(node_t *e) {
  if (live_count + 1 > table_size && !grow_table() && !table) return false;
  size_t h = hash(e->ptr);
  e->hnext = table[h];
  table[h] = e;
  live_count++;
  return true;
}

/* ---- cache -----------------------------------------------------------------*/

static void cache_insert(node_t *e) {
  e->state = CACHED;
  e->bin = bin_of(e->map_size);
  e->bprev = NULL;
  e->bnext = bins[e->bin];
  if (e->bnext) e->bnext->bprev = e;
  bins[e->bin] = e;
  e->lprev = NULL;
  e->lnext = lru_head;
  if (lru_head) lru_head->lprev = e;
  lru_head = e;
  if (!lru_tail) lru_tail = e;
  cache_bytes += e->map_size;
}

static void cache_remove(node_t *e) {
  if (e->bprev) e->bprev->bnext = e->bnext;
  else bins[e->bin] = e->bnext;
  if (e->bnext) e->bnext->bprev = e->bprev;
  if (e->lprev) e->lprev->lnext = e->lnext;
  else lru_head = e->lnext;
  if (e->lnext) e->lnext->lprev = e->lprev;
  else lru_tail = e->lprev;
  e->state = LIVE;
  cache_bytes -= e->map_size;
}

/* A cached block of exactly this mapping size and alignment, newest first. */
static node_t *cache_take(size_t map_size, size_t align) {
  for (node_t *e = bins[bin_of(map_size)]; e; e = e->bnext) {
    if (e->map_size != map_size || ((uintptr_t)e->base & (align - 1))) continue;
    cache_remove(e);
    return e;
  }
  return NULL;
}

/* Cut the LRU tail until the cache fits its budget; returns the chain (via
 * lnext) of blocks to unmap once the lock is dropped. */
static node_t *cache_evict(size_t budget) {
  node_t *out = NULL;
  while (lru_tail && cache_bytes > budget) {
    node_t *e = lru_tail;
    cache_remove(e);
    unregister(e);
    e->lnext = out;
    out = e;
  }
  return out;
}

/* Outside the lock: out of the queue (waiting for a flush in progress if it
 * holds the range), then unmapped, then the node is recycled. */
static void unmap_chain(node_t *list) {
  while (list) {
    node_t *next = list->lnext;
    _hak_batch_cancel(list->base, list->map_size, list->gen, HAK_CANCEL_UNMAP);
    _hak_os_unmap(list->base, list->map_size);
    hak_stat_inc(cache_evictions);
    pthread_mutex_lock(&lock);
    list->hnext = spare;
    spare = list;
    pthread_mutex_unlock(&lock);
    list = next;
  }
}

/* ---- allocation ------------------------------------------------------------*/

static node_t *map_block(size_t map_size, size_t align) {
  uint8_t *base = _hak_os_map_aligned(map_size, align);
  if (!base) return NULL;
  if (map_size >= HAK_HUGE_ALIGN) _hak_os_hugepage_hint(base, map_size);
  pthread_mutex_lock(&lock);
  node_t *e = new_node();
  if (e) {
    e->base = e->ptr = base;
    e->map_size = e->usable = map_size;
    e->state = LIVE;
    if (!register_node(e)) { e->hnext = spare; spare = e; e = NULL; }
  }
  pthread_mutex_unlock(&lock);
  if (!e) { _hak_os_unmap(base, map_size); errno = ENOMEM; }
  return e;
}

void *_hak_large_alloc(size_t size, size_t align, bool zero) {
  if (align < HAK_OS_PAGE) align = HAK_OS_PAGE;
  size_t map_size = round_size(size);
  if (!map_size || size > ((size_t)1 << HAK_ADDR_BITS)) { errno = ENOMEM; return NULL; }
  if (map_size >= HAK_HUGE_ALIGN && align < HAK_HUGE_ALIGN) align = HAK_HUGE_ALIGN;
  pthread_mutex_lock(&lock);
  node_t *e = cache_take(map_size, align);
  pthread_mutex_unlock(&lock);
  hak_stat_inc(alloc_large);
  if (e) {
    hak_stat_inc(cache_hits);
    _hak_reuse_note(e->map_size, _hak_now_ms() - e->freed_ms, _hak_batch_released(e->gen));
    _hak_batch_cancel(e->base, e->map_size, e->gen, HAK_CANCEL_REUSE);  /* before a byte is handed out */
    e->gen = 0;
    if (zero) memset(e->ptr, 0, size);
    return e->ptr;
  }
  hak_stat_inc(cache_misses);
  e = map_block(map_size, align);
  return e ? e->ptr : NULL;  /* fresh mappings are zero */
}

/* The block's pages join the batch while the lock is held, so that no other
 * thread can take it from the cache before its range is queued. */
bool _hak_large_free(void *p) {
  pthread_mutex_lock(&lock);
  node_t *e = lookup(p);
  if (!e) { pthread_mutex_unlock(&lock); return false; }
  if (e->state == CACHED) {
    pthread_mutex_unlock(&lock);
    _hak_fatal_pointer("free(): double free of a large block", p);
  }
  hak_stat_inc(free_large);
  e->freed_ms = _hak_now_ms();
  e->gen = _hak_batch_add(e->base, e->map_size);
  cache_insert(e);
  node_t *evicted = cache_evict((size_t)hak_opt(CACHE_BYTES));
  pthread_mutex_unlock(&lock);
  unmap_chain(evicted);
  return true;
}

/* Usable bytes of a live large block; 0 for a cached (freed) block or a
 * pointer that is not a large block. */
size_t _hak_large_usable(const void *p) {
  pthread_mutex_lock(&lock);
  node_t *e = lookup(p);
  size_t n = e && e->state == LIVE ? e->usable : 0;
  pthread_mutex_unlock(&lock);
  return n;
}

size_t _hak_large_trim(void) {
  pthread_mutex_lock(&lock);
  size_t before = cache_bytes;
  node_t *evicted = cache_evict(0);
  pthread_mutex_unlock(&lock);
  unmap_chain(evicted);
  return before;
}

void _hak_large_fill_stats(hak_stats_t *st) {
  pthread_mutex_lock(&lock);
  st->cache_bytes = cache_bytes;
  pthread_mutex_unlock(&lock);
}

void _hak_large_atfork_prepare(void) { pthread_mutex_lock(&lock); }
void _hak_large_atfork_parent(void) { pthread_mutex_unlock(&lock); }
void _hak_large_atfork_child(void) { pthread_mutex_unlock(&lock); }  /* locked by this thread */
