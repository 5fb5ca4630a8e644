/* Segments: 4 MiB-aligned regions owned by one heap, divided into pages.
 * A byte per 4 MiB of the address space says whether a region is a segment
 * and how big its pages are, so that free() finds any block's page
 * descriptor with one table load, and knows a foreign pointer from ours. */
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

_Atomic uint8_t _hak_segmap[HAK_SEGMAP_SIZE];
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static hak_segment_t *cache;       /* empty segments, linked through next */
static int cache_count;

static void segmap_mark(hak_segment_t *s, unsigned v) {
  atomic_store_explicit(&_hak_segmap[(uintptr_t)s >> HAK_SEGMENT_SHIFT], (uint8_t)v,
                        memory_order_release);
}

/* ---- heap's list of segments with free pages ----------------------------*/

static void list_push(hak_heap_t *h, hak_segment_t *s) {
  s->prev = NULL;
  s->next = h->segments[s->kind];
  if (s->next) s->next->prev = s;
  h->segments[s->kind] = s;
}

static void list_remove(hak_heap_t *h, hak_segment_t *s) {
  if (s->prev) s->prev->next = s->next;
  else h->segments[s->kind] = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = NULL;
}

/* ---- segment life ---------------------------------------------------------*/

/* Memory a page gave back is handed out again: the policy learns from when.
 * Returns whether the kernel had it. */
static bool note_reuse(const hak_page_t *pg, uint64_t now) {
  uint32_t ms = (uint32_t)now - pg->freed_ms;  /* wraps with the stamp */
  bool released = _hak_batch_released(pg->release_token);
  _hak_reuse_note(pg->released_bytes, now, ms, released);
  return released;
}

static void format(hak_segment_t *s, hak_heap_t *h, int kind) {
  if (s->release_token && s->kind != (uint32_t)kind) {
    /* New page boundaries: queued ranges of the old ones are taken back,
     * and the new pages will reuse their memory. */
    _hak_batch_cancel(s, HAK_SEGMENT_SIZE, s->release_token, HAK_CANCEL_REUSE);
    s->release_token = 0;
    uint64_t now = _hak_now_ms();
    for (size_t i = 0; i < HAK_MAX_PAGES; i++) {
      if (s->pages[i].release_token) note_reuse(&s->pages[i], now);
      s->pages[i].release_token = 0;
    }
  }
  s->heap = h;
  s->kind = (uint32_t)kind;
  s->page_shift = kind == HAK_SEG_SMALL ? HAK_SMALL_PAGE_SHIFT : HAK_MEDIUM_PAGE_SHIFT;
  s->page_count = (uint32_t)(HAK_SEGMENT_SIZE >> s->page_shift);
  s->used_pages = 0;
  s->free_mask = s->page_count == 64 ? ~0ull : (1ull << s->page_count) - 1;
  s->next = s->prev = NULL;
  for (uint32_t i = 0; i < s->page_count; i++) {
    hak_page_t *pg = _hak_segment_page(s, i);
    uint64_t token = pg->release_token;
    uint32_t released = pg->released_bytes, freed = pg->freed_ms;
    memset(pg, 0, sizeof *pg);
    pg->release_token = token;
    pg->released_bytes = released;
    pg->freed_ms = freed;
    pg->index = (uint8_t)i;
    pg->kind = (uint8_t)kind;
  }
  segmap_mark(s, s->page_shift - 7);
}

static hak_segment_t *acquire(hak_heap_t *h, int kind) {
  pthread_mutex_lock(&cache_lock);
  hak_segment_t *s = cache;
  if (s) { cache = s->next; cache_count--; }
  pthread_mutex_unlock(&cache_lock);
  if (!s) {
    s = _hak_os_map_aligned(HAK_SEGMENT_SIZE, HAK_SEGMENT_SIZE);
    if (!s) return NULL;
    hak_stat_inc(segments_mapped);
  }
  format(s, h, kind);
  return s;
}

static void unmap_segment(hak_segment_t *s) {
  segmap_mark(s, 0);
  _hak_batch_cancel(s, HAK_SEGMENT_SIZE, s->release_token, HAK_CANCEL_UNMAP);  /* never advise unmapped memory */
  _hak_os_unmap(s, HAK_SEGMENT_SIZE);
  hak_stat_inc(segments_unmapped);
}

/* An empty segment keeps its mapping in a small cache (its pages are already
 * queued for release); past the cache it is unmapped. */
static void retire(hak_segment_t *s) {
  s->heap = NULL;
  pthread_mutex_lock(&cache_lock);
  if (cache_count < HAK_SEGMENT_CACHE) {
    s->next = cache;
    cache = s;
    cache_count++;
    s = NULL;
  }
  pthread_mutex_unlock(&cache_lock);
  if (s) unmap_segment(s);
}

size_t _hak_segment_trim(void) {
  pthread_mutex_lock(&cache_lock);
  hak_segment_t *list = cache;
  cache = NULL;
  cache_count = 0;
  pthread_mutex_unlock(&cache_lock);
  size_t n = 0;
  while (list) {
    hak_segment_t *next = list->next;
    unmap_segment(list);
    n += HAK_SEGMENT_SIZE;
    list = next;
  }
  return n;
}

/* ---- pages ---------------------------------------------------------------
 * A free page whose memory the kernel still has (queued for release, not
 * yet flushed) costs a cancel to take; any other costs a page fault per
 * 4 KiB the program touches. So a resident page goes first: in the heap's
 * own segments, else in a cached segment of the kind; only then one that
 * the kernel must fault in. Without this, segments rotate through the cache
 * (they empty between bursts) while the heap touches the fresh pages of the
 * segment it kept: a server's bursts touched 12 MiB of pages for a peak of
 * 10 MiB in use. */

#define RESIDENT_SCAN 4  /* heap segments looked through: a bound on the search */

static bool resident(const hak_page_t *pg) {
  return pg->release_token && !_hak_batch_released(pg->release_token);
}

/* A free page of s whose memory is resident, or -1. (The segment's newest
 * token bounds its pages': a segment whose newest release is done, or that
 * never released anything, has none, and is not looked through.) */
static int resident_page(hak_segment_t *s) {
  if (!s->release_token || _hak_batch_released(s->release_token)) return -1;
  for (uint64_t m = s->free_mask; m; m &= m - 1) {
    unsigned i = (unsigned)__builtin_ctzll(m);
    if (resident(_hak_segment_page(s, i))) return (int)i;
  }
  return -1;
}

/* A cached segment of the kind with a resident page, taken out of the cache. */
static hak_segment_t *take_cached_resident(int kind) {
  hak_segment_t *s = NULL;
  pthread_mutex_lock(&cache_lock);
  for (hak_segment_t **at = &cache; *at; at = &(*at)->next)
    if ((*at)->kind == (uint32_t)kind && resident_page(*at) >= 0) {
      s = *at;
      *at = s->next;
      cache_count--;
      break;
    }
  pthread_mutex_unlock(&cache_lock);
  return s;
}

/* The segment and page to take, *index set; NULL when out of memory. */
static hak_segment_t *choose(hak_heap_t *h, int kind, unsigned *index) {
  int i = -1, n = 0;
  hak_segment_t *s = h->segments[kind];
  for (; s && n < RESIDENT_SCAN; s = s->next, n++)
    if ((i = resident_page(s)) >= 0) break;
  if (i < 0 && (s = take_cached_resident(kind)) != NULL) {
    format(s, h, kind);  /* (same kind: the pages keep their tokens) */
    list_push(h, s);
    i = resident_page(s);
  }
  if (i < 0) {
    s = h->segments[kind];
    if (!s) {
      if (!(s = acquire(h, kind))) return NULL;
      list_push(h, s);
    }
    i = __builtin_ctzll(s->free_mask);
  }
  *index = (unsigned)i;
  return s;
}

hak_page_t *_hak_page_alloc(hak_heap_t *h, int kind) {
  unsigned i;
  hak_segment_t *s = choose(h, kind, &i);
  if (!s) return NULL;
  s->free_mask &= ~(1ull << i);
  s->used_pages++;
  if (s->free_mask == 0) list_remove(h, s);
  hak_page_t *pg = _hak_segment_page(s, i);
  if (pg->release_token) {  /* its memory may still be queued: take it back first */
    size_t len;
    uint8_t *area = _hak_page_area(s, i, &len);
    uint64_t now = _hak_now_ms();
    bool released = note_reuse(pg, now);
    _hak_batch_cancel(area, len, pg->release_token, HAK_CANCEL_REUSE);
    pg->release_token = 0;
    if (released && hak_opt(ADVICE) == MADV_DONTNEED) _hak_refault_sample(area, pg->released_bytes, now);
  }
  return pg;
}

/* The page is empty: queue the part of it that was ever used. */
void _hak_page_release(hak_page_t *pg) {
  hak_segment_t *s = _hak_segment_of(pg);
  hak_heap_t *h = s->heap;
  size_t used_len = _hak_align_up((size_t)pg->capacity * pg->block_size, HAK_OS_PAGE);
  uint8_t *start = pg->start;
  uint8_t index = pg->index, kind = pg->kind;
  memset(pg, 0, sizeof *pg);
  pg->index = index;
  pg->kind = kind;
  if (used_len) {
    pg->released_bytes = (uint32_t)used_len;
    pg->freed_ms = (uint32_t)_hak_now_ms();
    pg->release_token = _hak_batch_add(start, used_len);
    if (pg->release_token > s->release_token) s->release_token = pg->release_token;
    hak_stat_inc(pages_released);
  }
  bool was_full = s->free_mask == 0;
  s->free_mask |= 1ull << index;
  s->used_pages--;
  if (s->used_pages == 0) {
    if (!was_full) list_remove(h, s);
    retire(s);
  } else if (was_full) {
    list_push(h, s);
  }
}

void _hak_segment_atfork_prepare(void) { pthread_mutex_lock(&cache_lock); }
void _hak_segment_atfork_parent(void) { pthread_mutex_unlock(&cache_lock); }
void _hak_segment_atfork_child(void) { pthread_mutex_unlock(&cache_lock); }  /* locked by this thread */
