/* The operating system: mapping, unmapping and hints, each call counted. */
#include <errno.h>
#include <sys/mman.h>
#include <time.h>

#include "internal.h"

void *hak_os_map(size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  hak_stat_inc(mmap_calls);
  if (p == MAP_FAILED) { errno = ENOMEM; return NULL; }
  hak_stat_add(bytes_mapped, size);
  return p;
}

void hak_os_unmap(void *p, size_t size) {
  if (!p || !size) return;
  munmap(p, size);
  hak_stat_inc(munmap_calls);
  hak_stat_add(bytes_unmapped, size);
}

/* Most mappings come back aligned when the kernel places them next to the
 * previous one; otherwise map more and trim both ends (untouched memory, so
 * the trims cost no TLB flush). */
void *hak_os_map_aligned(size_t size, size_t align) {
  if (align <= HAK_OS_PAGE) return hak_os_map(size);
  void *p = hak_os_map(size);
  if (!p || ((uintptr_t)p & (align - 1)) == 0) return p;
  hak_os_unmap(p, size);
  if (size + align < size) { errno = ENOMEM; return NULL; }
  uint8_t *raw = hak_os_map(size + align);
  if (!raw) return NULL;
  uint8_t *aligned = (uint8_t *)hak_align_up((uintptr_t)raw, align);
  size_t head = (size_t)(aligned - raw), tail = align - head;
  if (head) hak_os_unmap(raw, head);
  if (tail) hak_os_unmap(aligned + size, tail);
  return aligned;
}

/* Transparent huge pages are "madvise" on many systems: ask for them. */
void hak_os_hugepage_hint(void *p, size_t size) {
  madvise(p, size, MADV_HUGEPAGE);
  hak_stat_inc(madvise_calls);
}

uint64_t hak_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t hak_coarse_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}
