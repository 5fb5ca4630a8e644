/* Segments: 4 MiB-aligned regions owned by one heap, divided into pages.
 * A bitmap over the address space says which 4 MiB regions are segments, so
 * that free() knows a hakmem pointer from any other in one load. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"


_Atomic uint64_t *hak_segmap;      /* lazily committed: untouched parts cost nothing */
#define segmap hak_segmap
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static hak_segment_t *cache;       /* empty segments, linked through next */
static int cache_count;

void hak_segmap_init(void) {
  segmap = mmap(NULL, HAK_SEGMAP_BITS / 8, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  hak_stat_inc(mmap_calls);
  if (segmap == MAP_FAILED) {
    hak_warn("cannot reserve the segment map\n");
    abort();
  }
}

static void segmap_mark(hak_segment_t *s, bool on) {
  uintptr_t idx = (uintptr_t)s >> HAK_SEGMENT_SHIFT;
  uint64_t bit = 1ull << (idx & 63);
  if (on) atomic_fetch_or(&segmap[idx >> 6], bit);
  else atomic_fetch_and(&segmap[idx >> 6], ~bit);
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

static void format(hak_segment_t *s, hak_heap_t *h, int kind) {
  if (s->release_gen && s->kind != (uint32_t)kind) {
    /* New page boundaries: queued ranges of the old ones are taken back. */
    hak_batch_cancel(s, HAK_SEGMENT_SIZE, s->release_gen);
    s->release_gen = 0;
    for (size_t i = 0; i < HAK_MAX_PAGES; i++) s->pages[i].release_gen = 0;
  }
  s->heap = h;
  s->kind = (uint32_t)kind;
  s->page_shift = kind == HAK_SEG_SMALL ? HAK_SMALL_PAGE_SHIFT : HAK_MEDIUM_PAGE_SHIFT;
  s->page_count = (uint32_t)(HAK_SEGMENT_SIZE >> s->page_shift);
  s->used_pages = 0;
  s->free_mask = s->page_count == 64 ? ~0ull : (1ull << s->page_count) - 1;
  s->next = s->prev = NULL;
  for (uint32_t i = 0; i < s->page_count; i++) {
    hak_page_t *pg = &s->pages[i];
    uint64_t gen = pg->release_gen;
    memset(pg, 0, sizeof *pg);
    pg->release_gen = gen;
    pg->index = (uint8_t)i;
  }
}

static hak_segment_t *acquire(hak_heap_t *h, int kind) {
  pthread_mutex_lock(&cache_lock);
  hak_segment_t *s = cache;
  if (s) { cache = s->next; cache_count--; }
  pthread_mutex_unlock(&cache_lock);
  if (!s) {
    s = hak_os_map_aligned(HAK_SEGMENT_SIZE, HAK_SEGMENT_SIZE);
    if (!s) return NULL;
    hak_stat_inc(segments_mapped);
    segmap_mark(s, true);
  }
  format(s, h, kind);
  return s;
}

static void unmap_segment(hak_segment_t *s) {
  segmap_mark(s, false);
  hak_batch_cancel(s, HAK_SEGMENT_SIZE, s->release_gen);  /* never advise unmapped memory */
  hak_os_unmap(s, HAK_SEGMENT_SIZE);
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

size_t hak_segment_trim(void) {
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

/* ---- pages ---------------------------------------------------------------*/

hak_page_t *hak_page_alloc(hak_heap_t *h, int kind) {
  hak_segment_t *s = h->segments[kind];
  if (!s) {
    s = acquire(h, kind);
    if (!s) return NULL;
    list_push(h, s);
  }
  unsigned i = (unsigned)__builtin_ctzll(s->free_mask);
  s->free_mask &= ~(1ull << i);
  s->used_pages++;
  if (s->free_mask == 0) list_remove(h, s);
  hak_page_t *pg = &s->pages[i];
  size_t len;
  pg->start = hak_page_area(s, i, &len);
  if (pg->release_gen) {  /* its memory may still be queued: take it back first */
    hak_batch_cancel(pg->start, len, pg->release_gen);
    pg->release_gen = 0;
  }
  pg->heap = h;
  return pg;
}

/* The page is empty: queue the part of it that was ever used. */
void hak_page_release(hak_page_t *pg) {
  hak_segment_t *s = hak_segment_of(pg);
  hak_heap_t *h = s->heap;
  size_t used_len = hak_align_up((size_t)pg->capacity * pg->block_size, HAK_OS_PAGE);
  uint8_t *start = pg->start;
  uint8_t index = pg->index;
  memset(pg, 0, sizeof *pg);
  pg->index = index;
  if (used_len) {
    pg->release_gen = hak_batch_add(start, used_len);
    if (pg->release_gen > s->release_gen) s->release_gen = pg->release_gen;
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

void hak_segment_atfork_prepare(void) { pthread_mutex_lock(&cache_lock); }
void hak_segment_atfork_parent(void) { pthread_mutex_unlock(&cache_lock); }
void hak_segment_atfork_child(void) { pthread_mutex_init(&cache_lock, NULL); }
