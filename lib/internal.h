/* hakmem internals: types, constants and the declarations shared by the files of lib/.
 *
 * Memory layout
 *   segment  4 MiB, 4 MiB-aligned, owned by one thread heap. Its first
 *            HAK_SEGMENT_INFO bytes hold the segment and page descriptors, so
 *            that any pointer finds its page with a mask and a shift.
 *   page     a slice of a segment serving one size class: 64 KiB in small
 *            segments (blocks up to 8 KiB), 1 MiB in medium segments (up to
 *            256 KiB). An empty page's memory is queued for release.
 *   large    anything bigger: its own mapping, registered in a hash table,
 *            kept in a bounded cache when freed, its pages queued for release.
 */
#ifndef HAK_INTERNAL_H
#define HAK_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "hakmem.h"

#define HAK_LIKELY(x)   __builtin_expect(!!(x), 1)
#define HAK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define HAK_INTERNAL    __attribute__((visibility("hidden")))
#define HAK_NOINLINE    __attribute__((noinline))

/* ---- constants ----------------------------------------------------------*/
#define HAK_OS_PAGE         4096UL
#define HAK_SEGMENT_SHIFT   22
#define HAK_SEGMENT_SIZE    (1UL << HAK_SEGMENT_SHIFT)
#define HAK_SEGMENT_MASK    (HAK_SEGMENT_SIZE - 1)
#define HAK_SEGMENT_INFO    (8 * 1024UL)         /* descriptors at segment start */
#define HAK_SMALL_PAGE_SHIFT  16                 /* 64 KiB */
#define HAK_MEDIUM_PAGE_SHIFT 20                 /* 1 MiB */
#define HAK_MAX_PAGES       (HAK_SEGMENT_SIZE >> HAK_SMALL_PAGE_SHIFT)
#define HAK_SMALL_BLOCK_MAX (8 * 1024UL)         /* largest block in a small page */
#define HAK_MEDIUM_MAX      (256 * 1024UL)       /* largest block in any page */
#define HAK_CLASS_COUNT     52                   /* 16..256 KiB, see heap.c */
#define HAK_ALIGN_MIN       16UL                 /* every block is 16-aligned */
#define HAK_HUGE_ALIGN      (2UL << 20)          /* THP size: large blocks >= it align to it */
#define HAK_ADDR_BITS       47                   /* user address space on x86-64 */
#define HAK_BATCH_LIMIT     1024                 /* HAKMEM_BATCH_MAX ceiling (IOV_MAX) */
#define HAK_SEGMENT_CACHE   8                    /* empty segments kept mapped */

enum hak_segment_kind { HAK_SEG_SMALL = 0, HAK_SEG_MEDIUM = 1, HAK_SEG_KINDS = 2 };

/* ---- options (options.c) ------------------------------------------------*/
typedef struct hak_options_s {
  int flush_mode;          /* hak_flush_mode_t requested */
  int advice;              /* MADV_DONTNEED or MADV_FREE */
  long batch_max;          /* ranges */
  long long batch_bytes;   /* bytes */
  long purge_delay_ms;     /* <0: never by time, 0: at once */
  long long cache_bytes;   /* large-block cache budget */
  int stats;               /* 0 off, 1 table, 2 json */
  char stats_file[256];
  int verbose;
  int purge_thread;        /* flush due ranges from a thread of our own */
} hak_options_t;

HAK_INTERNAL extern hak_options_t hak_opt;
HAK_INTERNAL void hak_options_init(void);

/* ---- statistics (stats.c) -----------------------------------------------*/
typedef struct hak_counters_s {
  _Atomic uint64_t ranges_added, bytes_added, ranges_flushed, bytes_flushed;
  _Atomic uint64_t ranges_cancelled, bytes_cancelled, ranges_dropped;
  _Atomic uint64_t flushes, flush_syscalls, flush_ns;
  _Atomic uint64_t flush_by_count, flush_by_bytes, flush_by_delay, flush_explicit;
  _Atomic uint64_t flush_errors, inflight_waits, fallbacks;
  _Atomic uint64_t mmap_calls, munmap_calls, madvise_calls, process_madvise_calls;
  _Atomic uint64_t uring_enter_calls, bytes_mapped, bytes_unmapped;
  _Atomic uint64_t cache_hits, cache_misses, cache_evictions;
  _Atomic uint64_t alloc_large, free_large, free_remote_cnt, pages_released;
  _Atomic uint64_t segments_mapped, segments_unmapped;
} hak_counters_t;

HAK_INTERNAL extern hak_counters_t hak_cnt;
#define hak_stat_add(field, n) atomic_fetch_add_explicit(&hak_cnt.field, (n), memory_order_relaxed)
#define hak_stat_inc(field)    hak_stat_add(field, 1)
HAK_INTERNAL void hak_stats_init(void);
HAK_INTERNAL void hak_stats_at_exit(void);

/* ---- os (os.c): every system call that maps or advises is counted -------*/
HAK_INTERNAL void *hak_os_map(size_t size);                 /* NULL on failure */
HAK_INTERNAL void *hak_os_map_aligned(size_t size, size_t align);
HAK_INTERNAL void hak_os_unmap(void *p, size_t size);
HAK_INTERNAL void hak_os_hugepage_hint(void *p, size_t size);
HAK_INTERNAL uint64_t hak_now_ns(void);                     /* CLOCK_MONOTONIC */
HAK_INTERNAL uint64_t hak_coarse_ms(void);                  /* cheap, ms resolution */

/* ---- errors (error.c) ---------------------------------------------------*/
HAK_INTERNAL void hak_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
HAK_INTERNAL _Noreturn void hak_fatal_pointer(const char *what, const void *p);

/* ---- the release batch (batch.c) ----------------------------------------
 * hak_batch_add queues [addr, addr+len) and returns the generation it joined;
 * a range of generation g is out of the kernel's hands once
 * hak_batch_done(g). Before reusing or unmapping a range queued with
 * generation g, call hak_batch_cancel: it removes the range from the queue,
 * or waits for the flush that holds it. */
HAK_INTERNAL void hak_batch_init(void);
HAK_INTERNAL uint64_t hak_batch_add(void *addr, size_t len);
HAK_INTERNAL bool hak_batch_done(uint64_t gen);
HAK_INTERNAL void hak_batch_cancel(void *addr, size_t len, uint64_t gen);
HAK_INTERNAL void hak_batch_poll(void);           /* flush if a trigger fired */
HAK_INTERNAL bool hak_batch_flush_due(void);      /* flush if the oldest range is due */
HAK_INTERNAL uint64_t hak_batch_oldest_ms(void);  /* 0 when nothing is queued */
HAK_INTERNAL void hak_batch_flush(int reason);    /* reason: enum below */
HAK_INTERNAL int hak_batch_set_mode(int mode);    /* probe, fall back; flushes first */
HAK_INTERNAL void hak_batch_fill_stats(hak_stats_t *st);
HAK_INTERNAL void hak_batch_atfork_prepare(void);
HAK_INTERNAL void hak_batch_atfork_parent(void);
HAK_INTERNAL void hak_batch_atfork_child(void);
enum { HAK_FLUSH_WHY_COUNT, HAK_FLUSH_WHY_BYTES, HAK_FLUSH_WHY_DELAY, HAK_FLUSH_WHY_EXPLICIT };

/* ---- the purge thread (purge.c) ----------------------------------------*/
HAK_INTERNAL void hak_purge_start(void);
HAK_INTERNAL void hak_purge_wake(void);
HAK_INTERNAL void hak_purge_atfork_child(void);

/* ---- pages and segments (segment.c) -------------------------------------*/
typedef struct hak_block_s { struct hak_block_s *next; } hak_block_t;
struct hak_heap_s;

typedef struct hak_page_s {
  hak_block_t *free;                   /* owner's free list */
  uint32_t used;                       /* blocks handed out (remote frees not yet collected count) */
  uint32_t capacity;                   /* blocks carved from the page so far */
  uint32_t reserved;                   /* blocks that fit */
  uint32_t block_size;
  uint8_t *start;
  struct hak_heap_s *heap;             /* owner; NULL when the page is free */
  _Atomic(hak_block_t *) xthread_free; /* frees from other threads */
  _Atomic uint8_t in_full;             /* on the heap's full list */
  uint8_t class_idx;
  uint8_t has_aligned;                 /* holds interior (aligned) pointers */
  uint8_t index;                       /* in the segment */
  uint64_t release_gen;                /* batch generation of its release, or 0 */
  struct hak_page_s *next, *prev;      /* in the heap's class or full list */
} hak_page_t;

typedef struct hak_segment_s {
  struct hak_heap_s *heap;             /* owner */
  uint32_t kind, page_shift, page_count, used_pages;
  uint64_t free_mask;                  /* bit i: page i is free */
  uint64_t release_gen;                /* newest batch generation of its pages */
  struct hak_segment_s *next, *prev;   /* heap's list of segments with free pages */
  hak_page_t pages[HAK_MAX_PAGES];
} hak_segment_t;

_Static_assert(sizeof(hak_segment_t) <= HAK_SEGMENT_INFO, "segment info too big");

HAK_INTERNAL void hak_segmap_init(void);
/* One bit per 4 MiB of the address space: is it a hakmem segment? */
#define HAK_SEGMAP_BITS (1UL << (HAK_ADDR_BITS - HAK_SEGMENT_SHIFT))
HAK_INTERNAL extern _Atomic uint64_t *hak_segmap;
static inline bool hak_segmap_contains(const void *p) {
  uintptr_t idx = (uintptr_t)p >> HAK_SEGMENT_SHIFT;
  if (HAK_UNLIKELY(idx >= HAK_SEGMAP_BITS)) return false;
  return (atomic_load_explicit(&hak_segmap[idx >> 6], memory_order_relaxed) >> (idx & 63)) & 1;
}
HAK_INTERNAL hak_page_t *hak_page_alloc(struct hak_heap_s *heap, int kind);
HAK_INTERNAL void hak_page_release(hak_page_t *page);
HAK_INTERNAL size_t hak_segment_trim(void);   /* unmap cached empty segments */
HAK_INTERNAL void hak_segment_atfork_prepare(void);
HAK_INTERNAL void hak_segment_atfork_parent(void);
HAK_INTERNAL void hak_segment_atfork_child(void);

static inline hak_segment_t *hak_segment_of(const void *p) {
  return (hak_segment_t *)((uintptr_t)p & ~HAK_SEGMENT_MASK);
}
static inline hak_page_t *hak_page_of(const void *p) {
  hak_segment_t *s = hak_segment_of(p);
  return &s->pages[((uintptr_t)p - (uintptr_t)s) >> s->page_shift];
}
/* First byte and length of a page's block area (page 0 skips the info). */
static inline uint8_t *hak_page_area(hak_segment_t *s, size_t i, size_t *len) {
  uint8_t *base = (uint8_t *)s + (i << s->page_shift);
  uint8_t *start = i == 0 ? (uint8_t *)s + HAK_SEGMENT_INFO : base;
  *len = (size_t)(base + (1UL << s->page_shift) - start);
  return start;
}

/* ---- thread heaps (heap.c) ----------------------------------------------*/
typedef struct hak_heap_s {
  hak_page_t *pages[HAK_CLASS_COUNT];  /* pages with (maybe) free blocks; head = current */
  hak_page_t *full;                    /* pages without free blocks */
  hak_segment_t *segments[HAK_SEG_KINDS]; /* segments with free pages */
  _Atomic int remote_full;             /* a full page got a remote free */
  uint64_t alloc_small, free_small;    /* owner-only counters */
  struct hak_heap_s *next_all;         /* every heap ever made */
  struct hak_heap_s *next_pool;        /* abandoned heaps awaiting a thread */
  bool abandoned;
} hak_heap_t;

HAK_INTERNAL extern __thread hak_heap_t *hak_tls_heap;
HAK_INTERNAL extern uint32_t hak_class_size[HAK_CLASS_COUNT];

/* Size classes: 16-byte steps up to 128, then four per power of two. */
static inline int hak_size_class(size_t size) {
  if (size <= 128) return size ? (int)((size - 1) >> 4) : 0;
  int b = 63 - __builtin_clzl(size - 1);
  return 8 + (b - 7) * 4 + (int)(((size - 1) >> (b - 2)) & 3);
}
HAK_INTERNAL void *hak_heap_malloc_slow(size_t size);
HAK_INTERNAL void hak_heap_free_local_slow(hak_page_t *page);
HAK_INTERNAL void hak_heap_free_remote(hak_page_t *page, hak_block_t *b);
HAK_INTERNAL void hak_heap_init(void);
HAK_INTERNAL void hak_heap_collect_all(void);  /* this thread: retire empty pages */
HAK_INTERNAL void hak_heap_sum_stats(hak_stats_t *st);
HAK_INTERNAL void hak_heap_reset_stats(void);
HAK_INTERNAL void hak_heap_atfork_prepare(void);
HAK_INTERNAL void hak_heap_atfork_parent(void);
HAK_INTERNAL void hak_heap_atfork_child(void);

/* Block that holds p (p may be an aligned interior pointer). */
static inline hak_block_t *hak_block_of(hak_page_t *page, const void *p) {
  if (HAK_LIKELY(!page->has_aligned)) return (hak_block_t *)p;
  size_t off = (size_t)((const uint8_t *)p - page->start);
  return (hak_block_t *)(page->start + off - off % page->block_size);
}

/* ---- large blocks (large.c) ---------------------------------------------*/
HAK_INTERNAL void hak_large_init(void);
HAK_INTERNAL void *hak_large_alloc(size_t size, size_t align, bool zero);
HAK_INTERNAL bool hak_large_free(void *p);            /* false: not a large block */
HAK_INTERNAL size_t hak_large_usable(const void *p);  /* 0: not a large block */
HAK_INTERNAL size_t hak_large_trim(void);
HAK_INTERNAL void hak_large_fill_stats(hak_stats_t *st);
HAK_INTERNAL void hak_large_atfork_prepare(void);
HAK_INTERNAL void hak_large_atfork_parent(void);
HAK_INTERNAL void hak_large_atfork_child(void);

/* ---- init (init.c) ------------------------------------------------------*/
HAK_INTERNAL extern _Atomic int hak_ready;
HAK_INTERNAL void hak_init_slow(void);
static inline void hak_ensure_init(void) {
  if (HAK_UNLIKELY(!atomic_load_explicit(&hak_ready, memory_order_acquire))) hak_init_slow();
}

/* ---- small helpers ------------------------------------------------------*/
static inline size_t hak_align_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }
static inline bool hak_is_pow2(size_t n) { return n && !(n & (n - 1)); }

#endif /* HAK_INTERNAL_H */
