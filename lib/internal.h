/* hakmem internals: types, constants and the declarations shared by the files
 * of lib/. Names shared between files start with _hak_; public ones with hak_.
 *
 * Memory layout
 *   segment  4 MiB, 4 MiB-aligned, owned by one thread heap. Its first
 *            HAK_SEGMENT_INFO bytes hold the segment and page descriptors, so
 *            that any pointer finds its page descriptor with one table load.
 *   page     a slice of a segment serving one size class: 64 KiB in small
 *            segments (blocks up to 8 KiB), 1 MiB in medium segments (up to
 *            256 KiB). An empty page's memory is queued for release.
 *   large    anything bigger: its own mapping, registered in a hash table,
 *            kept in a bounded cache when freed, its pages queued for release.
 *
 * Layers (each calls only the ones below it):
 *   alloc.c control.c        the public API
 *   purge.c                  the background thread: drives the batch by time
 *   heap.c large.c           thread heaps, large blocks
 *   segment.c                segments and pages
 *   batch.c                  the release queue and its flushes
 *   io/                      the release backends
 *   os.c stats.c options.c error.c   leaves
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

/* Relaxed atomic access to plain fields that one thread writes and others
 * may read (page owner, capacity): a plain mov, but race-free for TSan. */
#define HAK_LOAD(x)     __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define HAK_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

/* ---- constants ----------------------------------------------------------*/
#define HAK_OS_PAGE         4096UL
#define HAK_SEGMENT_SHIFT   22
#define HAK_SEGMENT_SIZE    (1UL << HAK_SEGMENT_SHIFT)
#define HAK_SEGMENT_MASK    (HAK_SEGMENT_SIZE - 1)
#define HAK_SEGMENT_INFO    (16 * 1024UL)        /* descriptors at segment start */
#define HAK_SMALL_PAGE_SHIFT  16                 /* 64 KiB */
#define HAK_MEDIUM_PAGE_SHIFT 20                 /* 1 MiB */
#define HAK_MAX_PAGES       (HAK_SEGMENT_SIZE >> HAK_SMALL_PAGE_SHIFT)
#define HAK_SMALL_BLOCK_MAX (8 * 1024UL)         /* largest block in a small page */
#define HAK_MEDIUM_MAX      (256 * 1024UL)       /* largest block in any page */
#define HAK_DIRECT_MAX      1024UL               /* sizes with a direct page pointer */
#define HAK_DIRECT_SLOTS    (HAK_DIRECT_MAX + 1)   /* one per size: malloc needs no rounding */
#define HAK_CLASS_COUNT     52                   /* 16..256 KiB, see heap.c */
#define HAK_ALIGN_MIN       16UL                 /* every block is 16-aligned */
#define HAK_HUGE_ALIGN      (2UL << 20)          /* THP size: large blocks >= it align to it */
#define HAK_ADDR_BITS       47                   /* user address space on x86-64 */
#define HAK_BATCH_LIMIT     1024                 /* HAKMEM_BATCH_MAX ceiling (IOV_MAX) */
#define HAK_SEGMENT_CACHE   8                    /* empty segments kept mapped */

enum hak_segment_kind { HAK_SEG_SMALL = 0, HAK_SEG_MEDIUM = 1, HAK_SEG_KINDS = 2 };

/* ---- options (options.c) ------------------------------------------------
 * X(NAME, kind, default, min, max): every option once. kind says how its
 * text is read: MODE auto|vector|..., ADVICE dontneed|free, POLICY
 * fixed|adaptive, COUNT, MS and NUM integers, SIZE with K/M/G, STATS
 * 0|1|json, PATH a file name, BOOL 0|1. */
#define HAK_OPTIONS(X)                                                  \
  X(FLUSH, MODE, HAK_FLUSH_AUTO, 0, HAK_FLUSH_MODE_COUNT - 1)           \
  X(ADVICE, ADVICE, 4 /*MADV_DONTNEED*/, 0, 255)                        \
  X(BATCH_MAX, COUNT, 256, 1, HAK_BATCH_LIMIT)                          \
  X(BATCH_BYTES, SIZE, 64LL << 20, 4096, 1LL << 46)                     \
  X(PURGE_DELAY_MS, MS, 10, -1, 3600 * 1000)                            \
  X(CACHE_BYTES, SIZE, 256LL << 20, 0, 1LL << 46)                       \
  X(POLICY, POLICY, 1, 0, 1)                                            \
  X(MEMORY_WEIGHT, NUM, 1000, 0, 1000000000)                            \
  X(PURGE_CAP_MS, MS, 1000, 1, 3600 * 1000)                             \
  X(TELEMETRY, BOOL, 1, 0, 1)                                           \
  X(STATS, STATS, 0, 0, 2)                                              \
  X(STATS_FILE, PATH, 0, 0, 0)                                          \
  X(VERBOSE, BOOL, 0, 0, 1)                                             \
  X(PURGE_THREAD, BOOL, 1, 0, 1)

typedef enum {
#define HAK_OPT_ENUM_(name, kind, def, lo, hi) HAK_OPT_##name,
  HAK_OPTIONS(HAK_OPT_ENUM_)
#undef HAK_OPT_ENUM_
  HAK_OPT_COUNT
} hak_option_id_t;

HAK_INTERNAL extern _Atomic long long _hak_opt_v[HAK_OPT_COUNT];
/* Current value of an option: one relaxed load. */
#define hak_opt(name) atomic_load_explicit(&_hak_opt_v[HAK_OPT_##name], memory_order_relaxed)
HAK_INTERNAL void _hak_options_init(void);              /* read the environment */
HAK_INTERNAL int _hak_option_find(const char *name);    /* id, or -1 */
HAK_INTERNAL bool _hak_option_parse(int id, const char *value);  /* store; false if malformed */
HAK_INTERNAL void _hak_option_stats_file(char *buf, size_t n);   /* HAKMEM_STATS_FILE */
HAK_INTERNAL void _hak_option_store(int id, long long value);     /* a value chosen by hakmem */
HAK_INTERNAL bool _hak_option_from_env(int id);                   /* was it in the environment? */

/* ---- statistics (stats.c) -----------------------------------------------*/
typedef struct hak_counters_s {
#define HAK_COUNTER_(name, kind, label) _Atomic uint64_t name;
  HAK_STATS_FIELDS(HAK_COUNTER_)
#undef HAK_COUNTER_
} hak_counters_t;

HAK_INTERNAL extern hak_counters_t _hak_cnt;
#define hak_stat_add(field, n) atomic_fetch_add_explicit(&_hak_cnt.field, (n), memory_order_relaxed)
#define hak_stat_inc(field)    hak_stat_add(field, 1)
HAK_INTERNAL void _hak_stats_init(void);
HAK_INTERNAL void _hak_stats_at_exit(void);
HAK_INTERNAL void _hak_stats_atfork_child(int parent_pid);

/* ---- os (os.c): every system call that maps or advises is counted -------*/
HAK_INTERNAL void *_hak_os_map(size_t size);                 /* NULL on failure */
HAK_INTERNAL void *_hak_os_map_aligned(size_t size, size_t align);
HAK_INTERNAL void _hak_os_unmap(void *p, size_t size);
/* mremap: resize in place (to NULL), or move the pages onto `to` */
HAK_INTERNAL bool _hak_os_remap(void *old, size_t old_size, size_t new_size, void *to);
HAK_INTERNAL void _hak_os_hugepage_hint(void *p, size_t size);
HAK_INTERNAL double _hak_os_refault_ps_per_byte(bool huge);
HAK_INTERNAL int _hak_os_populate(void *p, size_t len, uint64_t *ns);
HAK_INTERNAL uint64_t _hak_now_ns(void);                     /* CLOCK_MONOTONIC */
static inline uint64_t _hak_now_ms(void) { return _hak_now_ns() / 1000000; }

/* ---- telemetry (telemetry.c): hakmem.h's HAK_STATS_HISTOGRAMS ----------*/
enum {
#define HAK_HIST_ENUM_(name, label) HAK_HIST_##name,
  HAK_STATS_HISTOGRAMS(HAK_HIST_ENUM_)
#undef HAK_HIST_ENUM_
  HAK_HIST_COUNT
};
HAK_INTERNAL void _hak_hist_add(int which, uint64_t value);
HAK_INTERNAL void _hak_hist_read(int which, hak_percentiles_t *out);
HAK_INTERNAL uint64_t _hak_hist_count_upto(int which, uint64_t limit, uint64_t *total);
HAK_INTERNAL void _hak_hist_reset(void);
/* A freed range handed out again at now_ms, ms after it was freed;
 * `released`: it had been given to the kernel meanwhile (the reuse faults it
 * back in). */
HAK_INTERNAL void _hak_reuse_note(uint64_t bytes, uint64_t now_ms, uint64_t ms, bool released);
/* The reuse intervals since the last take, bytes per log2(ms) bucket, of
 * ranges reused before and after their release (the policy's input):
 * bytes[across][released][bucket], across = freed before the program went
 * quiet (the mark) and reused after. */
#define HAK_REUSE_BUCKETS 16
typedef struct {
  uint64_t bytes[2][2][HAK_REUSE_BUCKETS];
  uint64_t huge;  /* of all those bytes, the ones in ranges of at least a huge page */
} hak_reuse_t;
HAK_INTERNAL void _hak_reuse_take(hak_reuse_t *r);
HAK_INTERNAL void _hak_reuse_mark_quiet(uint64_t now_ms);
/* Released memory at p (len bytes), about to be handed out again at now_ms:
 * now and then its refault is measured (telemetry.c). The range must be out
 * of the release queue. */
HAK_INTERNAL void _hak_refault_sample(void *p, size_t len, uint64_t now_ms);
/* The refaults measured since the last take: their time and bytes. */
HAK_INTERNAL void _hak_refault_take(uint64_t *ns, uint64_t *bytes);

/* ---- the release policy (policy.c) -------------------------------------*/
HAK_INTERNAL void _hak_policy_init(void);
/* Called by the purge thread: closes an epoch when one is due; returns the
 * time of the next tick (0: no need, the policy is fixed or idle). */
HAK_INTERNAL uint64_t _hak_policy_tick(uint64_t now_ms);
HAK_INTERNAL void _hak_policy_fill_stats(hak_stats_t *st);
HAK_INTERNAL void _hak_policy_set_adaptive(bool on);
HAK_INTERNAL int _hak_policy_pick(const double est[HAK_POLICY_ARMS], int cur);
HAK_INTERNAL void _hak_policy_atfork_prepare(void);
HAK_INTERNAL void _hak_policy_atfork_parent(void);

/* ---- errors (error.c) ---------------------------------------------------*/
HAK_INTERNAL void _hak_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
HAK_INTERNAL _Noreturn void _hak_fatal_pointer(const char *what, const void *p);
HAK_INTERNAL const char *_hak_errno_name(int err);

/* ---- the release batch (batch.c) ----------------------------------------
 * _hak_batch_add queues [addr, addr+len) and returns a token (0: not
 * queued). Before any byte of a queued range is handed out again or
 * unmapped, its owner calls _hak_batch_cancel with the token: the range
 * leaves the queue, or, when a flush already holds it, the call waits for
 * that flush to end. A range is cancelled from the same 4 MiB region it was
 * queued from (the queue is sharded by it). Adding never flushes. */
enum { HAK_FLUSH_WHY_NONE = -1, HAK_FLUSH_WHY_COUNT, HAK_FLUSH_WHY_BYTES, HAK_FLUSH_WHY_DELAY,
       HAK_FLUSH_WHY_EXPLICIT, HAK_FLUSH_WHY_IDLE };
enum { HAK_CANCEL_REUSE, HAK_CANCEL_UNMAP };
HAK_INTERNAL void _hak_batch_init(void);
HAK_INTERNAL uint64_t _hak_batch_add(void *addr, size_t len);
HAK_INTERNAL void _hak_batch_cancel(void *addr, size_t len, uint64_t token, int why);
/* Has the range of this token been through a flush (given to the kernel)? */
HAK_INTERNAL bool _hak_batch_released(uint64_t token);
HAK_INTERNAL uint64_t _hak_batch_pending_bytes(void);
/* bytes[i]: the queued bytes younger than limit_ms[i]. */
HAK_INTERNAL void _hak_batch_pending_ages(const uint32_t *limit_ms, int n, uint64_t *bytes);
HAK_INTERNAL void _hak_batch_flush(int why);
/* What should be flushed now (HAK_FLUSH_WHY_*, or NONE); *next_ms: when the
 * oldest pending range falls due (0: nothing pending or no delay). */
HAK_INTERNAL int _hak_batch_due(uint64_t *next_ms);
HAK_INTERNAL bool _hak_batch_pending(void);
/* Sleep until a limit is reached, the queue stops being empty, a kick, or
 * the CLOCK_MONOTONIC_COARSE time until_ms (0: no time limit). */
HAK_INTERNAL bool _hak_batch_wait(uint64_t until_ms);   /* true: a kick woke it */
HAK_INTERNAL void _hak_batch_kick(void);          /* wake _hak_batch_wait */
HAK_INTERNAL int _hak_batch_set_mode(int mode);   /* probe, switch, fall back */
HAK_INTERNAL void _hak_batch_fill_stats(hak_stats_t *st);
HAK_INTERNAL void _hak_batch_atfork_prepare(void);
HAK_INTERNAL void _hak_batch_atfork_parent(void);
HAK_INTERNAL void _hak_batch_atfork_child(void);

/* ---- the purge thread (purge.c) ----------------------------------------*/
/* On allocator slow paths: start the thread when ranges are pending, or,
 * without one, flush what is due from the caller. */
HAK_INTERNAL void _hak_purge_poll(void);
HAK_INTERNAL int _hak_purge_state(void);          /* hak_stats_t.purge_thread */
HAK_INTERNAL uint64_t _hak_purge_cpu_us(void);    /* hak_stats_t.purge_cpu_us */
HAK_INTERNAL void _hak_purge_atfork_child(void);

/* ---- pages and segments (segment.c) -------------------------------------*/
typedef struct hak_block_s {
  struct hak_block_s *next;
  uintptr_t key;                       /* its page descriptor's address while the block is free */
} hak_block_t;
struct hak_heap_s;

/* Remote frees go to a page's xthread_free: a block list whose two low bits
 * say what a remote free into a full page does (mimalloc's delayed free). */
enum {
  HAK_USE_DELAYED = 0,   /* page is full: push on the owner heap's delayed list */
  HAK_DELAYED_FREEING = 1, /* a remote free is pushing on that list right now */
  HAK_NO_DELAYED = 2,    /* push on the page's own list */
};
#define HAK_TF_STATE(tf) ((unsigned)((tf) & 3))
#define HAK_TF_BLOCK(tf) ((hak_block_t *)((tf) & ~(uintptr_t)3))
#define HAK_PAGE_FULL    ((uintptr_t)1)   /* low bit of xheap and xtid: on the full list */

/* 128 bytes: the fields malloc and free touch in the first cache line,
 * what other threads write (xthread_free) and the slow paths' in the
 * second; and a power of two, so that a pointer's descriptor is a shift
 * and a mask away (_hak_page_at). */
typedef struct hak_page_s {
  hak_block_t *free;                   /* blocks malloc pops */
  hak_block_t *local_free;             /* the owner's frees, moved to free when it runs dry */
  uintptr_t xtid;                      /* owner heap's tid | HAK_PAGE_FULL; 0 when the page is free */
  uint8_t *start;                      /* first block */
  uint64_t div_c;                      /* floor(2^64 / block_size) + 1: see _hak_block_valid */
  uint64_t valid_lim;                  /* capacity * (div_c * block_size mod 2^64): likewise */
  uint32_t used;                       /* handed out, not yet freed or collected */
  uint16_t capacity;                   /* blocks carved so far (at most 4096) */
  uint16_t reserved;                   /* blocks that fit */
  uint32_t block_size;
  uint8_t class_idx;
  uint8_t index;                       /* in the segment */
  uint8_t kind;
  _Atomic uintptr_t xthread_free __attribute__((aligned(64)));  /* remote frees, tagged */
  uintptr_t xheap;                     /* owner heap | HAK_PAGE_FULL; 0 when the page is free */
  uint64_t release_token;              /* batch token of its queued release, or 0 */
  uint32_t released_bytes;             /* what that release queued */
  uint32_t freed_ms;                   /* when (the policy's reuse intervals) */
  uint64_t handed;                     /* blocks put on free by refills (stats) */
  uint64_t recycled;                   /* of those, blocks that had been freed (stats) */
  struct hak_page_s *next, *prev;      /* in the heap's class or full list */
} hak_page_t;

_Static_assert(sizeof(hak_page_t) == 128, "page descriptors are 128 bytes");

/* The descriptors come first, so that a page's is at segment + slot * 128
 * (_hak_page_at says which slot). */
typedef struct hak_segment_s {
  hak_page_t pages[HAK_MAX_PAGES];
  struct hak_heap_s *heap;             /* owner */
  uint32_t kind, page_shift, page_count, used_pages;
  uint64_t free_mask;                  /* bit i: page i is free */
  uint64_t release_token;              /* newest token of its pages' releases */
  struct hak_segment_s *next, *prev;   /* heap's list of segments with free pages */
} hak_segment_t;

_Static_assert(sizeof(hak_segment_t) <= HAK_SEGMENT_INFO, "segment info too big");

/* One byte per 4 MiB of the address space: 0, or the page shift of the
 * segment there minus 7 (see _hak_page_at). The table is in .bss:
 * untouched parts cost nothing. */
#define HAK_SEGMAP_SIZE (1UL << (HAK_ADDR_BITS - HAK_SEGMENT_SHIFT))
HAK_INTERNAL extern _Atomic uint8_t _hak_segmap[HAK_SEGMAP_SIZE];

/* The descriptor of the page at u, in a segment of pages of 1 << (v + 7)
 * bytes: descriptor slot (u >> (v + 7)) % 64, one shift and one mask, the
 * same for both kinds. A small page's slot is its number; a medium
 * segment's four pages take slots 4g to 4g + 3, g being its address bits
 * 22 to 25 (_hak_segment_page). */
static inline hak_page_t *_hak_page_at(uintptr_t u, unsigned v) {
  return (hak_page_t *)((u & ~HAK_SEGMENT_MASK) + ((u >> v) & ((HAK_MAX_PAGES - 1) << 7)));
}

/* Descriptor of the page holding p, or NULL when p is not in a segment:
 * one table load, no load from the segment itself. */
static inline hak_page_t *_hak_page_lookup(const void *p) {
  uintptr_t u = (uintptr_t)p, idx = u >> HAK_SEGMENT_SHIFT;
  if (HAK_UNLIKELY(idx >= HAK_SEGMAP_SIZE)) return NULL;
  unsigned v = atomic_load_explicit(&_hak_segmap[idx], memory_order_relaxed);
  if (HAK_UNLIKELY(v == 0)) return NULL;
  return _hak_page_at(u, v);
}

static inline hak_segment_t *_hak_segment_of(const void *p) {
  return (hak_segment_t *)((uintptr_t)p & ~HAK_SEGMENT_MASK);
}

/* The descriptor of page i of s (pg->index is i, not the slot). */
static inline hak_page_t *_hak_segment_page(hak_segment_t *s, size_t i) {
  return _hak_page_at((uintptr_t)s + (i << s->page_shift), s->page_shift - 7);
}

/* Is p the start of a carved block? One multiplication and one comparison
 * (after Lemire, Kaser and Kurz's remainder test). With d the block size,
 * c = floor(2^64 / d) + 1 and e = c * d - 2^64 (1 <= e <= d), an offset
 * k * d + r (r < d) times c, modulo 2^64, is k * e when r = 0, and at least
 * c (about 2^64 / d, far above capacity * e) otherwise; an offset below the
 * first block wraps to nearly 2^64. So the offset is a carved block start
 * exactly when off * c < capacity * e, for every pointer into the page
 * (tests/test_api.c checks every class, page kind and offset). */
static inline bool _hak_block_valid(const hak_page_t *pg, const void *p, uint64_t valid_lim) {
  uint64_t off = (uint64_t)((uintptr_t)p - (uintptr_t)pg->start);
  return off * pg->div_c < valid_lim;
}

/* The page's div_c and its valid_lim for `capacity` carved blocks. */
static inline uint64_t _hak_div_c(uint32_t block_size) {
  return (uint64_t)(((unsigned __int128)1 << 64) / block_size) + 1;
}
static inline uint64_t _hak_valid_lim(const hak_page_t *pg, uint32_t capacity) {
  return (uint64_t)capacity * (pg->div_c * pg->block_size);
}

/* Hand out the first block of a page whose free list is not empty (the key
 * that marks a free block is cleared). */
static inline void *_hak_page_pop(hak_page_t *pg) {
  hak_block_t *b = pg->free;
  pg->free = b->next;
  pg->used++;
  b->key = 0;
  return b;
}

/* First byte and length of a page's block area (page 0 skips the info). */
static inline uint8_t *_hak_page_area(hak_segment_t *s, size_t i, size_t *len) {
  uint8_t *base = (uint8_t *)s + (i << s->page_shift);
  uint8_t *start = i == 0 ? (uint8_t *)s + HAK_SEGMENT_INFO : base;
  *len = (size_t)(base + (1UL << s->page_shift) - start);
  return start;
}

/* page.c: one page's free lists (the owner's, unless said otherwise). */
HAK_INTERNAL void _hak_page_init(hak_page_t *pg, struct hak_heap_s *h, int class_idx);
HAK_INTERNAL uint32_t _hak_page_refill(hak_page_t *pg, bool extend_ok);        /* blocks now on free */
HAK_INTERNAL void _hak_page_collect_remote(hak_page_t *pg);
HAK_INTERNAL void _hak_page_settle_stats(hak_page_t *pg, struct hak_heap_s *h);
HAK_INTERNAL void _hak_page_use_delayed(hak_page_t *pg);
HAK_INTERNAL bool _hak_page_delayed_settled(hak_page_t *pg);
HAK_INTERNAL void _hak_page_atfork_child(hak_page_t *pg);
HAK_INTERNAL bool _hak_page_holds_free(hak_page_t *pg, struct hak_heap_s *h, const hak_block_t *b);
/* Any thread: push b on the page's remote list (or its owner's delayed list,
 * whose heap is returned). */
HAK_INTERNAL struct hak_heap_s *_hak_page_free_remote(hak_page_t *pg, hak_block_t *b);

HAK_INTERNAL hak_page_t *_hak_page_alloc(struct hak_heap_s *heap, int kind);
HAK_INTERNAL void _hak_page_release(hak_page_t *page);
HAK_INTERNAL size_t _hak_segment_trim(void);   /* unmap cached empty segments */
HAK_INTERNAL void _hak_segment_atfork_prepare(void);
HAK_INTERNAL void _hak_segment_atfork_parent(void);
HAK_INTERNAL void _hak_segment_atfork_child(void);

/* ---- thread heaps (heap.c) ----------------------------------------------*/
#define HAK_KEPT_MEDIUM 2  /* empty 1 MiB pages a heap keeps, at most */
typedef struct hak_heap_s {
  hak_page_t *direct[HAK_DIRECT_SLOTS]; /* current page for size i (never NULL) */
  hak_page_t *pages[HAK_CLASS_COUNT];  /* pages with (maybe) free blocks; head = current */
  hak_page_t *last[HAK_CLASS_COUNT];   /* the tail of each of those lists */
  hak_page_t *full;                    /* pages without free blocks */
  _Atomic(hak_block_t *) delayed_free; /* remote frees into full pages */
  hak_segment_t *segments[HAK_SEG_KINDS]; /* segments with free pages */
  hak_page_t *kept[HAK_KEPT_MEDIUM];   /* empty medium pages kept for reuse (heap.c: keep) */
  uint32_t kept_next;                  /* the slot the next one takes */
  uint64_t allocs, frees;              /* counted at refills and retirements (stats) */
  struct hak_heap_s *next_all;         /* every heap ever made */
  struct hak_heap_s *next_pool;        /* abandoned heaps awaiting a thread */
  _Atomic bool abandoned;
  uintptr_t tid;                       /* _hak_thread_id() of its thread; 0 in the pool */
} hak_heap_t;

HAK_INTERNAL extern __thread hak_heap_t *_hak_tls_heap;

/* The thread pointer (%fs:0 on x86-64): one load, where _hak_tls_heap takes
 * two in a shared library. It names a live thread; a new thread may get a
 * dead one's, which is why a heap's pages forget it when it is abandoned. */
static inline uintptr_t _hak_thread_id(void) { return (uintptr_t)__builtin_thread_pointer(); }
HAK_INTERNAL extern hak_heap_t _hak_heap_empty;  /* a thread's heap before its first malloc */
HAK_INTERNAL extern uint32_t _hak_class_size[HAK_CLASS_COUNT];

/* Size classes: 16-byte steps up to 128, then four per power of two. */
static inline unsigned _hak_size_class_log(size_t size) {  /* size > 128 */
  size_t x = size - 1, b = 63 ^ (size_t)__builtin_clzl(x);  /* x's top bit: b >= 7 */
  return (unsigned)(4 * b - 20 + ((x >> (b - 2)) & 3));     /* 8 + 4 (b - 7) + ... */
}
static inline int _hak_size_class(size_t size) {
  if (size <= 128) return size ? (int)((size - 1) >> 4) : 0;
  return _hak_size_class_log(size);
}
HAK_INTERNAL void _hak_heap_init(void);
HAK_INTERNAL void *_hak_heap_malloc(size_t size);    /* small/medium, any path */
HAK_INTERNAL void *_hak_heap_malloc_aligned(size_t align, size_t size);
/* The slow part of free for a block of a page: p is checked here. */
HAK_INTERNAL void _hak_heap_free(hak_page_t *page, void *p);
/* The owner's free emptied the page (used reached 0): true when it went
 * back to its segment, false when it stays (its class's only page). */
HAK_INTERNAL bool _hak_heap_page_emptied(hak_page_t *page);
HAK_INTERNAL size_t _hak_heap_usable(hak_page_t *page, const void *p);  /* 0: not a live block */
HAK_INTERNAL void _hak_heap_collect_mine(void);       /* this thread: retire empty pages */
HAK_INTERNAL size_t _hak_heap_collect_abandoned(void); /* exited threads' heaps */
HAK_INTERNAL bool _hak_heap_has_abandoned(void);
HAK_INTERNAL void _hak_heap_fill_stats(hak_stats_t *st);
HAK_INTERNAL void _hak_heap_reset_stats(void);
HAK_INTERNAL void _hak_heap_atfork_prepare(void);
HAK_INTERNAL void _hak_heap_atfork_parent(void);
HAK_INTERNAL void _hak_heap_atfork_child(void);

/* ---- large blocks (large.c) ---------------------------------------------*/
HAK_INTERNAL void *_hak_large_alloc(size_t size, size_t align, bool zero);
HAK_INTERNAL bool _hak_large_free(void *p);            /* false: not a large block */
HAK_INTERNAL size_t _hak_large_usable(const void *p);  /* 0: not a live large block */
/* realloc of a live large block to a large size by mremap (no copy); NULL:
 * not done, the caller copies */
HAK_INTERNAL void *_hak_large_realloc(void *p, size_t size);
HAK_INTERNAL size_t _hak_large_trim(void);
HAK_INTERNAL void _hak_large_fill_stats(hak_stats_t *st);
HAK_INTERNAL void _hak_large_atfork_prepare(void);
HAK_INTERNAL void _hak_large_atfork_parent(void);
HAK_INTERNAL void _hak_large_atfork_child(void);

/* ---- init (init.c) ------------------------------------------------------*/
HAK_INTERNAL extern _Atomic int _hak_ready;
HAK_INTERNAL void _hak_init_slow(void);
static inline void _hak_ensure_init(void) {
  if (HAK_UNLIKELY(!atomic_load_explicit(&_hak_ready, memory_order_acquire))) _hak_init_slow();
}

/* ---- small helpers ------------------------------------------------------*/
static inline size_t _hak_align_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }
static inline bool _hak_is_pow2(size_t n) { return n && !(n & (n - 1)); }

#endif /* HAK_INTERNAL_H */
