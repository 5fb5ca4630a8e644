/* Large blocks (above HAK_MEDIUM_MAX): one mapping each.
 *
 * A registry, sharded by address, tells a live block from a double free or a
 * foreign pointer. A freed block stays mapped in a cache (HAKMEM_CACHE_BYTES
 * in all) while its pages wait in the release batch; reusing it before the
 * flush takes the range out of the queue, and a block pushed out of the
 * cache is unmapped only once it is out of the queue.
 *
 * No lock is process-wide: the registry has a lock per shard of addresses,
 * and the cache is sharded too, each thread using its own shard first (and
 * taking from the others when its own has nothing that fits), so that
 * threads freeing and reusing large blocks do not queue behind each other. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

enum { LIVE = 1, CACHED = 2 };
#define REG_SHARDS 16  /* every lock is held across fork: keep them few */
#define CACHE_SHARDS 8
#define NBINS 64

typedef struct node_s {
  uint8_t *ptr;                  /* what the user holds */
  uint8_t *base;                 /* the mapping */
  size_t map_size;
  size_t usable;                 /* bytes from ptr to the mapping's end */
  uint64_t gen;                  /* batch token of its queued release */
  uint64_t freed_ms;             /* when it was freed (the policy's reuse intervals) */
  int state, bin, shard;         /* shard: the cache shard holding it */
  int advice;                    /* the advice its release was queued with */
  struct node_s *hnext;          /* registry chain */
  struct node_s *bprev, *bnext;  /* cache bin (most recent first) */
  struct node_s *lprev, *lnext;  /* cache shard's LRU, for eviction (newest at head) */
} node_t;

typedef struct {
  pthread_mutex_t lock;
  node_t **table;
  size_t size, count;
} __attribute__((aligned(64))) reg_shard_t;

typedef struct {
  pthread_mutex_t lock;
  node_t *bins[NBINS];
  node_t *lru_head, *lru_tail;
  size_t bytes;
} __attribute__((aligned(64))) cache_shard_t;

static reg_shard_t reg[REG_SHARDS];
static cache_shard_t cache[CACHE_SHARDS];
static _Atomic size_t cached_bytes;      /* over every cache shard */
static pthread_mutex_t spare_lock = PTHREAD_MUTEX_INITIALIZER;
static node_t *spare;                    /* unused nodes */
static _Atomic unsigned next_shard;
static __thread int my_shard = -1;

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

/* ---- nodes ---------------------------------------------------------------*/

static node_t *node_new(void) {
  pthread_mutex_lock(&spare_lock);
  if (!spare) {
    const size_t chunk = 64 * 1024;
    node_t *n = _hak_os_map(chunk);
    for (size_t i = 0; n && i < chunk / sizeof(node_t); i++) { n[i].hnext = spare; spare = &n[i]; }
  }
  node_t *e = spare;
  if (e) spare = e->hnext;
  pthread_mutex_unlock(&spare_lock);
  if (e) memset(e, 0, sizeof *e);
  return e;
}

static void node_free(node_t *e) {
  pthread_mutex_lock(&spare_lock);
  e->hnext = spare;
  spare = e;
  pthread_mutex_unlock(&spare_lock);
}

/* ---- registry --------------------------------------------------------------*/

static reg_shard_t *reg_of(const void *p) {
  uint64_t x = ((uintptr_t)p >> 12) * 0x9E3779B97F4A7C15ull;
  return &reg[x >> 60];
}

static size_t slot(const reg_shard_t *r, const void *p) {
  uint64_t x = ((uintptr_t)p >> 12) * 0xBF58476D1CE4E5B9ull;
  return (size_t)(x >> 32) & (r->size - 1);
}

static node_t *reg_find(reg_shard_t *r, const void *p) {
  if (!r->table) return NULL;
  for (node_t *e = r->table[slot(r, p)]; e; e = e->hnext)
    if (e->ptr == p) return e;
  return NULL;
}

static bool reg_grow(reg_shard_t *r) {
  size_t n = r->size ? r->size * 2 : 64;
  node_t **t = _hak_os_map(n * sizeof(node_t *));
  if (!t) return false;
  node_t **old = r->table;
  size_t old_n = r->size;
  r->table = t;
  r->size = n;
  for (size_t i = 0; i < old_n; i++) {
    for (node_t *e = old[i], *next; e; e = next) {
      next = e->hnext;
      size_t h = slot(r, e->ptr);
      e->hnext = t[h];
      t[h] = e;
    }
  }
  if (old) _hak_os_unmap(old, old_n * sizeof(node_t *));
  return true;
}

static bool reg_insert(node_t *e) {
  reg_shard_t *r = reg_of(e->ptr);
  pthread_mutex_lock(&r->lock);
  bool ok = r->count + 1 <= r->size || reg_grow(r) || r->table;
  if (ok) {
    size_t h = slot(r, e->ptr);
    e->hnext = r->table[h];
    r->table[h] = e;
    r->count++;
  }
  pthread_mutex_unlock(&r->lock);
  return ok;
}

static void reg_remove(node_t *e) {
  reg_shard_t *r = reg_of(e->ptr);
  pthread_mutex_lock(&r->lock);
  node_t **pp = &r->table[slot(r, e->ptr)];
  while (*pp != e) pp = &(*pp)->hnext;
  *pp = e->hnext;
  r->count--;
  pthread_mutex_unlock(&r->lock);
}

/* LIVE -> CACHED or back, under the shard lock: the state is what a double
 * free, or usable_size, is judged by. */
static void reg_set_state(node_t *e, int state) {
  reg_shard_t *r = reg_of(e->ptr);
  pthread_mutex_lock(&r->lock);
  e->state = state;
  pthread_mutex_unlock(&r->lock);
}

/* ---- cache shards -------------------------------------------------------------*/

static cache_shard_t *my_cache(void) {
  if (HAK_UNLIKELY(my_shard < 0))
    my_shard = (int)(atomic_fetch_add_explicit(&next_shard, 1, memory_order_relaxed) % CACHE_SHARDS);
  return &cache[my_shard];
}

static void cache_insert(cache_shard_t *c, node_t *e) {
  e->bin = bin_of(e->map_size);
  e->shard = (int)(c - cache);
  e->bprev = NULL;
  e->bnext = c->bins[e->bin];
  if (e->bnext) e->bnext->bprev = e;
  c->bins[e->bin] = e;
  e->lprev = NULL;
  e->lnext = c->lru_head;
  if (c->lru_head) c->lru_head->lprev = e;
  c->lru_head = e;
  if (!c->lru_tail) c->lru_tail = e;
  c->bytes += e->map_size;
  atomic_fetch_add(&cached_bytes, e->map_size);
}

static void cache_remove(cache_shard_t *c, node_t *e) {
  if (e->bprev) e->bprev->bnext = e->bnext;
  else c->bins[e->bin] = e->bnext;
  if (e->bnext) e->bnext->bprev = e->bprev;
  if (e->lprev) e->lprev->lnext = e->lnext;
  else c->lru_head = e->lnext;
  if (e->lnext) e->lnext->lprev = e->lprev;
  else c->lru_tail = e->lprev;
  c->bytes -= e->map_size;
  atomic_fetch_sub(&cached_bytes, e->map_size);
}

/* The smallest cached block of at least map_size and at most a quarter more
 * (its tail is not touched, so not resident), newest first within a bin. */
static node_t *cache_take(cache_shard_t *c, size_t map_size, size_t align) {
  size_t most = map_size + map_size / 4;
  node_t *best = NULL;
  pthread_mutex_lock(&c->lock);
  for (int b = bin_of(map_size); b < NBINS && b <= bin_of(most) && !best; b++)
    for (node_t *e = c->bins[b]; e; e = e->bnext)
      if (e->map_size >= map_size && e->map_size <= most && !((uintptr_t)e->base & (align - 1)) &&
          (!best || e->map_size < best->map_size))
        best = e;
  if (best) cache_remove(c, best);
  pthread_mutex_unlock(&c->lock);
  return best;
}

/* Cut LRU tails, this shard's first, until the cache fits its budget;
 * returns the chain (via lnext) of blocks to unmap once no lock is held. */
static node_t *cache_evict(cache_shard_t *first, size_t budget) {
  node_t *out = NULL;
  for (int k = 0; k < CACHE_SHARDS && atomic_load(&cached_bytes) > budget; k++) {
    cache_shard_t *c = &cache[((first - cache) + k) % CACHE_SHARDS];
    pthread_mutex_lock(&c->lock);
    while (c->lru_tail && atomic_load(&cached_bytes) > budget) {
      node_t *e = c->lru_tail;
      cache_remove(c, e);
      e->lnext = out;
      out = e;
    }
    pthread_mutex_unlock(&c->lock);
  }
  return out;
}

/* Out of the registry and out of the queue (waiting for a flush in
 * progress if it holds the range), then unmapped. */
static void unmap_chain(node_t *list) {
  while (list) {
    node_t *next = list->lnext;
    reg_remove(list);
    _hak_batch_cancel(list->base, list->map_size, list->gen, HAK_CANCEL_UNMAP);
    _hak_os_unmap(list->base, list->map_size);
    hak_stat_inc(cache_evictions);
    node_free(list);
    list = next;
  }
}

/* ---- allocation ------------------------------------------------------------*/

/* A live block's node for the mapping at base, registered; NULL if not. */
static node_t *register_live(uint8_t *base, size_t map_size) {
  node_t *e = node_new();
  if (!e) return NULL;
  e->base = e->ptr = base;
  e->map_size = e->usable = map_size;
  e->state = LIVE;
  if (!reg_insert(e)) { node_free(e); return NULL; }
  return e;
}

static node_t *map_block(size_t map_size, size_t align) {
  uint8_t *base = _hak_os_map_aligned(map_size, align);
  if (!base) return NULL;
  if (map_size >= HAK_HUGE_ALIGN) _hak_os_hugepage_hint(base, map_size);
  node_t *e = register_live(base, map_size);
  if (!e) { _hak_os_unmap(base, map_size); errno = ENOMEM; }
  return e;
}

static node_t *cache_find(size_t map_size, size_t align) {
  cache_shard_t *mine = my_cache();
  node_t *e = cache_take(mine, map_size, align);
  for (int k = 1; !e && k < CACHE_SHARDS; k++)
    e = cache_take(&cache[((mine - cache) + k) % CACHE_SHARDS], map_size, align);
  return e;
}

/* A cached block back in use: out of the queue before a byte is handed
 * out. Memory released with MADV_DONTNEED reads as zero already. */
static void *reuse(node_t *e, size_t size, bool zero) {
  bool released = _hak_batch_released(e->gen);
  hak_stat_inc(cache_hits);
  uint64_t now = _hak_now_ms();
  _hak_reuse_note(e->map_size, now, now - e->freed_ms, released);
  _hak_batch_cancel(e->base, e->map_size, e->gen, HAK_CANCEL_REUSE);
  e->gen = 0;
  /* (huge pages, from HAK_HUGE_ALIGN up, cost another price per byte) */
  if (released && e->advice == MADV_DONTNEED && e->map_size < HAK_HUGE_ALIGN)
    _hak_refault_sample(e->ptr, size, now);
  reg_set_state(e, LIVE);
  if (zero && !(released && e->advice == MADV_DONTNEED)) memset(e->ptr, 0, size);
  return e->ptr;
}

void *_hak_large_alloc(size_t size, size_t align, bool zero) {
  if (align < HAK_OS_PAGE) align = HAK_OS_PAGE;
  size_t map_size = round_size(size);
  if (!map_size || size > ((size_t)1 << HAK_ADDR_BITS)) { errno = ENOMEM; return NULL; }
  if (map_size >= HAK_HUGE_ALIGN && align < HAK_HUGE_ALIGN) align = HAK_HUGE_ALIGN;
  hak_stat_inc(alloc_large);
  node_t *e = cache_find(map_size, align);
  if (e) return reuse(e, size, zero);
  hak_stat_inc(cache_misses);
  e = map_block(map_size, align);
  return e ? e->ptr : NULL;  /* fresh mappings are zero */
}

/* The block's pages join the batch before it enters a cache, so that no
 * other thread can take it before its range is queued. */
bool _hak_large_free(void *p) {
  reg_shard_t *r = reg_of(p);
  pthread_mutex_lock(&r->lock);
  node_t *e = reg_find(r, p);
  if (!e) { pthread_mutex_unlock(&r->lock); return false; }
  if (e->state == CACHED) {
    pthread_mutex_unlock(&r->lock);
    _hak_fatal_pointer("free(): double free of a large block", p);
  }
  e->state = CACHED;
  pthread_mutex_unlock(&r->lock);
  hak_stat_inc(free_large);
  e->freed_ms = _hak_now_ms();
  e->advice = (int)hak_opt(ADVICE);
  e->gen = _hak_batch_add(e->base, e->map_size);
  cache_shard_t *c = my_cache();
  pthread_mutex_lock(&c->lock);
  cache_insert(c, e);
  pthread_mutex_unlock(&c->lock);
  unmap_chain(cache_evict(c, (size_t)hak_opt(CACHE_BYTES)));
  return true;
}

/* realloc of a live large block to a large size, without copying it: the
 * mapping grows or shrinks where it is when its alignment suits the new
 * size, else its pages move (mremap) onto a fresh mapping aligned as a new
 * block of that size would be (2 MiB from 2 MiB on). Copying would leave the
 * old block resident in the cache until its release is due, so that a block
 * grown by doubling kept every earlier size resident at once, and the copy
 * itself held both. A live block has no range in the release queue (a fresh
 * mapping never had one, and reuse cancels it), so its pages may move; the
 * new address is registered before the move and the old one removed after,
 * so that the block is never unregistered. NULL: not done, nothing changed. */
void *_hak_large_realloc(void *p, size_t size) {
  size_t map_size = round_size(size);
  if (!map_size || size > ((size_t)1 << HAK_ADDR_BITS)) return NULL;
  reg_shard_t *r = reg_of(p);
  pthread_mutex_lock(&r->lock);
  node_t *e = reg_find(r, p);
  bool mine = e && e->state == LIVE && e->ptr == e->base;
  pthread_mutex_unlock(&r->lock);
  if (!mine) return NULL;
  if (map_size == e->map_size) return p;
  size_t align = map_size >= HAK_HUGE_ALIGN ? HAK_HUGE_ALIGN : HAK_OS_PAGE;
  bool huge_before = e->map_size >= HAK_HUGE_ALIGN;
  if (((uintptr_t)e->base & (align - 1)) == 0 &&
      _hak_os_remap(e->base, e->map_size, map_size, NULL)) {
    if (map_size >= HAK_HUGE_ALIGN && !huge_before) _hak_os_hugepage_hint(e->base, map_size);
    pthread_mutex_lock(&r->lock);
    e->map_size = e->usable = map_size;
    pthread_mutex_unlock(&r->lock);
    return p;
  }
  uint8_t *to = _hak_os_map_aligned(map_size, align);
  if (!to) return NULL;
  node_t *n = register_live(to, map_size);
  if (!n) { _hak_os_unmap(to, map_size); return NULL; }
  if (!_hak_os_remap(e->base, e->map_size, map_size, to)) {
    reg_remove(n);
    node_free(n);
    _hak_os_unmap(to, map_size);
    return NULL;
  }
  /* The moved pages keep the old mapping's hint; a block that reaches
   * 2 MiB gets it now. */
  if (map_size >= HAK_HUGE_ALIGN && !huge_before) _hak_os_hugepage_hint(to, map_size);
  reg_remove(e);
  node_free(e);
  return to;
}

/* Usable bytes of a live large block; 0 for a cached (freed) block or a
 * pointer that is not a large block. */
size_t _hak_large_usable(const void *p) {
  reg_shard_t *r = reg_of(p);
  pthread_mutex_lock(&r->lock);
  node_t *e = reg_find(r, p);
  size_t n = e && e->state == LIVE ? e->usable : 0;
  pthread_mutex_unlock(&r->lock);
  return n;
}

size_t _hak_large_trim(void) {
  size_t before = atomic_load(&cached_bytes);
  unmap_chain(cache_evict(&cache[0], 0));
  return before;
}

void _hak_large_fill_stats(hak_stats_t *st) { st->cache_bytes = atomic_load(&cached_bytes); }

/* ---- fork: every lock, in one order ------------------------------------------------*/

void _hak_large_atfork_prepare(void) {
  for (int i = 0; i < CACHE_SHARDS; i++) pthread_mutex_lock(&cache[i].lock);
  for (int i = 0; i < REG_SHARDS; i++) pthread_mutex_lock(&reg[i].lock);
  pthread_mutex_lock(&spare_lock);
}

void _hak_large_atfork_parent(void) {
  pthread_mutex_unlock(&spare_lock);
  for (int i = REG_SHARDS; i-- > 0;) pthread_mutex_unlock(&reg[i].lock);
  for (int i = CACHE_SHARDS; i-- > 0;) pthread_mutex_unlock(&cache[i].lock);
}

void _hak_large_atfork_child(void) { _hak_large_atfork_parent(); }  /* locked by this thread */
