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

#define HAKMEM_VERSION "0.1.0"

#if defined(__GNUC__)
#define HAK_EXPORT __attribute__((visibility("default")))
#define HAK_MALLOC_ATTR __attribute__((malloc, warn_unused_result))
#else
#define HAK_EXPORT
#define HAK_MALLOC_ATTR
#endif

/* ---- allocation ---------------------------------------------------------
 * Same contracts as the C library: NULL with errno ENOMEM on failure,
 * malloc(0) returns a unique pointer, free(NULL) does nothing. */
HAK_EXPORT HAK_MALLOC_ATTR void *hak_malloc(size_t size);
HAK_EXPORT HAK_MALLOC_ATTR void *hak_calloc(size_t count, size_t size);
HAK_EXPORT void *hak_realloc(void *p, size_t size);
HAK_EXPORT void hak_free(void *p);
/* C11 aligned_alloc: alignment a power of two (EINVAL otherwise). */
HAK_EXPORT HAK_MALLOC_ATTR void *hak_aligned_alloc(size_t alignment, size_t size);
/* POSIX: returns 0, EINVAL (alignment not a power-of-two multiple of
 * sizeof(void*)) or ENOMEM; *out untouched on failure. */
HAK_EXPORT int hak_posix_memalign(void **out, size_t alignment, size_t size);
/* Bytes usable at p (at least the size asked for); 0 for NULL. */
HAK_EXPORT size_t hak_usable_size(const void *p);

/* ---- release control ----------------------------------------------------*/
/* Release every pending range to the kernel now (one batch flush). */
HAK_EXPORT void hak_flush(void);
/* hak_flush, then give back cached large blocks and empty segments
 * (what malloc_trim does). Returns 1 if memory was given back. */
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
 * when the release path changes. Returns 0, or -1 with errno EINVAL. */
HAK_EXPORT int hak_option_set(const char *name, const char *value);
/* Current value of an option as an integer (sizes in bytes, modes as their
 * enum value); -1 with errno EINVAL for an unknown name. */
HAK_EXPORT long long hak_option_get(const char *name);

/* ---- statistics ---------------------------------------------------------*/
typedef struct hak_stats_s {
  /* release batch */
  uint64_t ranges_added;      /* ranges queued for release */
  uint64_t bytes_added;
  uint64_t ranges_flushed;    /* ranges given to the kernel */
  uint64_t bytes_flushed;
  uint64_t ranges_cancelled;  /* taken out of the queue because reused/unmapped */
  uint64_t bytes_cancelled;
  uint64_t ranges_dropped;    /* not released (HAKMEM_FLUSH=off, or errors) */
  uint64_t flushes;           /* batch flushes, whatever the backend */
  uint64_t flush_syscalls;    /* system calls those flushes made */
  uint64_t flush_ns;          /* time spent in flush system calls */
  uint64_t flush_by_count;    /* flush triggers */
  uint64_t flush_by_bytes;
  uint64_t flush_by_delay;
  uint64_t flush_explicit;    /* hak_flush, malloc_trim, exit, mode change */
  uint64_t flush_errors;      /* ranges the kernel refused */
  uint64_t pending_ranges;    /* queued now */
  uint64_t pending_bytes;
  uint64_t inflight_waits;    /* reuses that waited for a flush in progress */
  /* backend */
  int flush_mode;             /* hak_flush_mode_t in use (never AUTO) */
  int flush_mode_requested;   /* what HAKMEM_FLUSH asked for */
  int advice;                 /* MADV_DONTNEED or MADV_FREE */
  int fallback_errno;         /* errno that made vector/uring fall back, or 0 */
  uint64_t fallbacks;         /* times a backend fell back to loop */
  char fallback_reason[64];   /* why, in words ("" when none) */
  /* operating system */
  uint64_t mmap_calls;
  uint64_t munmap_calls;
  uint64_t madvise_calls;     /* every madvise: release loop and THP hints */
  uint64_t process_madvise_calls;
  uint64_t uring_enter_calls;
  uint64_t bytes_mapped;      /* total ever mapped */
  uint64_t bytes_unmapped;
  uint64_t bytes_mapped_now;  /* mapped minus unmapped */
  /* large-block cache */
  uint64_t cache_hits;
  uint64_t cache_misses;
  uint64_t cache_evictions;
  uint64_t cache_bytes;       /* bytes held in the cache now */
  /* allocation paths */
  uint64_t alloc_small;       /* served from a thread heap */
  uint64_t alloc_large;       /* served by the large-block path */
  uint64_t free_small;
  uint64_t free_remote;       /* freed by a thread other than the owner */
  uint64_t free_large;
  uint64_t pages_released;    /* empty small pages queued for release */
  uint64_t segments_mapped;
  uint64_t segments_unmapped;
} hak_stats_t;

/* Fill *st with the current numbers (approximate while threads run). */
HAK_EXPORT void hak_stats(hak_stats_t *st);
/* Print the statistics table (the HAKMEM_STATS=1 report) to fd. */
HAK_EXPORT void hak_stats_print(int fd);
/* Zero the counters (not the gauges: pending, mapped now, cache bytes). */
HAK_EXPORT void hak_stats_reset(void);

#ifdef __cplusplus
}
#endif
#endif /* HAKMEM_H */
