/* hakmem: a malloc that batches the release of memory to the kernel.
 *
 * This header is the whole public API. libhakmem.so and libhakmem.a also
 * define the standard malloc family (malloc, free, calloc, realloc, ...),
 * so that linking or LD_PRELOAD makes hakmem the process allocator.
 */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HAKMEM_VERSION "0.2.0"

#if defined(__GNUC__)
#define HAK_EXPORT __attribute__((visibility("default")))
#define HAK_MALLOC_ATTR __attribute__((malloc, warn_unused_result))
#else
#define HAK_EXPORT
#define HAK_MALLOC_ATTR
#endif

/* ---- allocation ---------------------------------------------------------
 * Same contracts as the C library: NULL with errno ENOMEM on failure,
 * malloc(0) returns a unique pointer, free(NULL) does nothing. A pointer
 * that is not the start of a live block (a double free, an interior or a
 * foreign pointer) makes free abort with a message, as glibc does. */
HAK_EXPORT HAK_MALLOC_ATTR void *hak_malloc(size_t size);
HAK_EXPORT HAK_MALLOC_ATTR void *hak_calloc(size_t count, size_t size);
HAK_EXPORT void *hak_realloc(void *p, size_t size);
HAK_EXPORT void hak_free(void *p);
/* C11 aligned_alloc: alignment a power of two (EINVAL otherwise); alignments
 * above HAK_ALIGN_MAX fail with ENOMEM. */
HAK_EXPORT HAK_MALLOC_ATTR void *hak_aligned_alloc(size_t alignment, size_t size);
/* POSIX: returns 0, EINVAL (alignment not a power-of-two multiple of
 * sizeof(void*)) or ENOMEM; *out untouched on failure. */
HAK_EXPORT int hak_posix_memalign(void **out, size_t alignment, size_t size);
/* Bytes usable at p (at least the size asked for); 0 for NULL. */
HAK_EXPORT size_t hak_usable_size(const void *p);

#define HAK_ALIGN_MAX ((size_t)1 << 30)  /* largest alignment served: 1 GiB */

/* ---- release control ----------------------------------------------------*/
/* Release every pending range to the kernel now (one batch flush). */
HAK_EXPORT void hak_flush(void);
/* hak_flush, then give back cached large blocks, empty pages of exited
 * threads and empty segments (what malloc_trim does). Returns 1 if memory
 * was given back. */
HAK_EXPORT int hak_trim(void);

/* Backends that give memory back: values of HAKMEM_FLUSH. */
typedef enum hak_flush_mode_e {
  HAK_FLUSH_AUTO = 0,  /* vector where the probe succeeds, else loop */
  HAK_FLUSH_VECTOR,    /* one process_madvise per batch */
  HAK_FLUSH_LOOP,      /* one madvise per range */
  HAK_FLUSH_URING,     /* one io_uring submit of IORING_OP_MADVISE per batch */
  HAK_FLUSH_OFF,       /* never give pages back (ranges are dropped) */
  HAK_FLUSH_MODE_COUNT
} hak_flush_mode_t;

/* Name of a mode ("auto", "vector", ...), or "?" */
HAK_EXPORT const char *hak_flush_mode_name(hak_flush_mode_t mode);

/* Set an option at run time, by its environment name without the prefix or
 * with it ("FLUSH" or "HAKMEM_FLUSH") and its textual value, exactly as the
 * environment variable would be written. Pending ranges are flushed first
 * when the release path (FLUSH or ADVICE) changes. Returns 0, or -1 with
 * errno EINVAL. */
HAK_EXPORT int hak_option_set(const char *name, const char *value);
/* Current value of an option as an integer (sizes in bytes, modes as their
 * enum value); -1 with errno EINVAL for an unknown name. */
HAK_EXPORT long long hak_option_get(const char *name);

/* ---- statistics ---------------------------------------------------------
 * Every number hakmem reports, in one list: X(field, kind, label).
 * kind C is a counter (zeroed by hak_stats_reset), G a gauge (the present).
 * The table (HAKMEM_STATS=1) prints the labels in this order; the JSON line
 * (HAKMEM_STATS=json) uses the field names as keys. */
#define HAK_STATS_FIELDS(X)                                                   \
  /* the release batch */                                                     \
  X(ranges_added, C, "ranges added")                                          \
  X(bytes_added, C, "bytes added")                                            \
  X(ranges_flushed, C, "ranges flushed")                                      \
  X(bytes_flushed, C, "bytes flushed")                                        \
  X(ranges_cancelled, C, "ranges cancelled (reused)")                         \
  X(bytes_cancelled, C, "bytes cancelled (reused)")                           \
  X(ranges_unqueued, C, "ranges unqueued (unmapped)")                         \
  X(ranges_dropped, C, "ranges dropped")                                      \
  X(flushes, C, "flushes")                                                    \
  X(flush_syscalls, C, "flush syscalls")                                      \
  X(flush_ns, C, "flush time (ns)")                                           \
  X(flush_by_count, C, "  by count")                                          \
  X(flush_by_bytes, C, "  by bytes")                                          \
  X(flush_by_delay, C, "  by delay")                                          \
  X(flush_by_idle, C, "  by quiet program")                                   \
  X(flush_explicit, C, "  explicit/exit")                                     \
  X(flush_errors, C, "flush errors (kernel refused)")                         \
  X(range_retries, C, "ranges retried with madvise")                          \
  X(pending_ranges, G, "pending ranges")                                      \
  X(pending_bytes, G, "pending bytes")                                        \
  X(held_mib_ms, C, "free memory held (MiB*ms)")                              \
  X(ranges_reused_released, C, "released ranges reused")                      \
  X(bytes_reused_released, C, "released bytes reused (refaulted)")            \
  X(refault_samples, C, "refaults timed in the program")                      \
  X(inflight_waits, C, "waits for a flush")                                   \
  X(purge_wakeups, C, "purge thread wakeups")                                 \
  X(purge_cpu_us, G, "purge thread CPU (us)")                                 \
  X(fallbacks, C, "fallbacks")                                                \
  /* the operating system */                                                  \
  X(mmap_calls, C, "mmap calls")                                              \
  X(munmap_calls, C, "munmap calls")                                          \
  X(madvise_calls, C, "madvise calls")                                        \
  X(mremap_calls, C, "mremap calls")                                          \
  X(process_madvise_calls, C, "process_madvise calls")                        \
  X(uring_enter_calls, C, "io_uring_enter calls")                             \
  X(bytes_mapped, C, "bytes mapped")                                          \
  X(bytes_unmapped, C, "bytes unmapped")                                      \
  X(bytes_mapped_now, G, "bytes mapped now")                                  \
  /* the large-block cache */                                                 \
  X(cache_hits, C, "cache hits")                                              \
  X(cache_misses, C, "cache misses")                                          \
  X(cache_evictions, C, "cache evictions")                                    \
  X(cache_bytes, G, "cache bytes")                                            \
  /* allocation paths */                                                      \
  X(alloc_small, C, "allocs small (approx.)")                                 \
  X(alloc_large, C, "allocs large")                                           \
  X(free_small, C, "frees small (approx.)")                                   \
  X(free_remote, C, "frees small (remote)")                                   \
  X(free_large, C, "frees large")                                             \
  X(pages_released, C, "pages released")                                      \
  X(abandoned_pages_released, C, "pages released (exited)")         \
  X(segments_mapped, C, "segments mapped")                                    \
  X(segments_unmapped, C, "segments unmapped")

/* Distributions, from fixed log-bucket histograms (each value within 1/8
 * of the true one): X(field, label). */
#define HAK_STATS_HISTOGRAMS(X)                                               \
  X(flush_latency_ns, "flush latency (ns)")                                   \
  X(ranges_per_flush, "ranges per flush")                                     \
  X(release_delay_ms, "free to release (ms)")                                 \
  X(reuse_delay_ms, "free to reuse, released (ms)")

typedef struct hak_percentiles_s {
  uint64_t count, p50, p95, p99, max;
} hak_percentiles_t;

#define HAK_POLICY_ARMS 5  /* settings the adaptive release policy chooses among */

typedef struct hak_stats_s {
#define HAK_STATS_FIELD_(name, kind, label) uint64_t name;
  HAK_STATS_FIELDS(HAK_STATS_FIELD_)
#undef HAK_STATS_FIELD_
#define HAK_STATS_HIST_(name, label) hak_percentiles_t name;
  HAK_STATS_HISTOGRAMS(HAK_STATS_HIST_)
#undef HAK_STATS_HIST_
  /* the release policy (HAKMEM_POLICY) */
  int policy_adaptive;        /* 1 adaptive, 0 fixed */
  int policy_arm;             /* the arm in force (adaptive), -1 when fixed */
  uint64_t policy_epochs;     /* epochs the policy has scored */
  uint64_t arm_delay_ms[HAK_POLICY_ARMS];   /* each arm's purge delay */
  uint64_t arm_batch_bytes[HAK_POLICY_ARMS];/* and its batch byte limit */
  uint64_t arm_pulls[HAK_POLICY_ARMS];      /* epochs each arm ran */
  double arm_cost[HAK_POLICY_ARMS];         /* its estimated cost, microseconds per second */
  double arm_cost_seen[HAK_POLICY_ARMS];    /* its cost measured while it ran (0: never ran) */
  uint64_t policy_pauses;     /* times the program went quiet, and the rule learned from it */
  int pause_hold;             /* the rule: 1 hold free memory through pauses, 0 give it back */
  double pause_cost_give_back;/* estimated cost per pause of giving it back, microseconds */
  double pause_cost_hold;     /* ... of holding it */
  double refault_ps_small;    /* measured cost of faulting memory back in, ps per byte: 4 KiB pages */
  double refault_ps_small_start; /* ... as measured at start (refault_samples refine it) */
  double refault_ps_huge;     /* ... transparent huge pages */
  double refault_ps;          /* ... the mix this program reuses (what the policy assumes) */
  double release_ps;          /* measured cost of giving memory back, ps per byte (its flushes) */
  /* the backend */
  int flush_mode;             /* hak_flush_mode_t in use (never AUTO) */
  int flush_mode_requested;   /* what HAKMEM_FLUSH asked for */
  int advice;                 /* MADV_DONTNEED or MADV_FREE, for new ranges */
  int fallback_errno;         /* errno that made vector/uring fall back, or 0 */
  char fallback_reason[64];   /* why, in words ("" when none) */
  /* the purge thread: 1 running, 0 not (yet) needed or turned off,
   * -errno when it could not start (then delays are kept on slow paths) */
  int purge_thread;
  int forked_from;            /* parent's pid when the counters restarted at fork, else 0 */
} hak_stats_t;

/* Fill *st with the current numbers (approximate while threads run). */
HAK_EXPORT void hak_stats(hak_stats_t *st);
/* Print the statistics table (the HAKMEM_STATS=1 report) to fd. */
HAK_EXPORT void hak_stats_print(int fd);
/* Zero the counters (not the gauges). */
HAK_EXPORT void hak_stats_reset(void);

#ifdef __cplusplus
}
#endif
#endif /* HAKMEM_H */
