/* The operating system: mapping, unmapping and hints, each call counted. */
#include <errno.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>

#include "internal.h"

void *_hak_os_map(size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  hak_stat_inc(mmap_calls);
  if (p == MAP_FAILED) { errno = ENOMEM; return NULL; }
  hak_stat_add(bytes_mapped, size);
  return p;
}

void _hak_os_unmap(void *p, size_t size) {
  if (!p || !size) return;
  munmap(p, size);
  hak_stat_inc(munmap_calls);
  hak_stat_add(bytes_unmapped, size);
}

/* Resizes a mapping, or moves its pages to `to` (a mapping of new_size the
 * caller made, which the move replaces): page table entries move, no byte is
 * copied and no page is resident twice. NULL `to`: in place or not at all.
 * false: the kernel refused, and the old mapping is as it was. */
bool _hak_os_remap(void *old, size_t old_size, size_t new_size, void *to) {
  void *p = to ? mremap(old, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, to)
               : mremap(old, old_size, new_size, 0);
  hak_stat_inc(mremap_calls);
  if (p == MAP_FAILED) return false;
  if (to) hak_stat_add(bytes_unmapped, old_size);  /* `to` was counted when mapped */
  else if (new_size > old_size) hak_stat_add(bytes_mapped, new_size - old_size);
  else hak_stat_add(bytes_unmapped, old_size - new_size);
  return true;
}

static _Atomic uintptr_t next_hint;  /* just below the last aligned mapping */

/* The kernel places mappings top-down: asking for the aligned spot just
 * below the previous one usually succeeds in one call. Otherwise map more
 * and trim both ends (untouched memory: the trims flush nothing). */
void *_hak_os_map_aligned(size_t size, size_t align) {
  if (align <= HAK_OS_PAGE) return _hak_os_map(size);
  uintptr_t hint = atomic_load_explicit(&next_hint, memory_order_relaxed);
  if (hint > size && size % align == 0) {
    void *want = (void *)(hint - size);
    void *p = mmap(want, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    hak_stat_inc(mmap_calls);
    if (p != MAP_FAILED) {
      hak_stat_add(bytes_mapped, size);
      if (((uintptr_t)p & (align - 1)) == 0) {
        atomic_store_explicit(&next_hint, (uintptr_t)p, memory_order_relaxed);
        return p;
      }
      _hak_os_unmap(p, size);
    }
  }
  if (size + align < size) { errno = ENOMEM; return NULL; }
  uint8_t *raw = _hak_os_map(size + align);
  if (!raw) return NULL;
  uint8_t *aligned = (uint8_t *)_hak_align_up((uintptr_t)raw, align);
  size_t head = (size_t)(aligned - raw), tail = align - head;
  if (head) _hak_os_unmap(raw, head);
  if (tail) _hak_os_unmap(aligned + size, tail);
  atomic_store_explicit(&next_hint, (uintptr_t)aligned, memory_order_relaxed);
  return aligned;
}

/* Transparent huge pages are "madvise" on many systems: ask for them. */
void _hak_os_hugepage_hint(void *p, size_t size) {
  madvise(p, size, MADV_HUGEPAGE);
  hak_stat_inc(madvise_calls);
}

/* What it costs here to fault memory back in right after giving it back
 * (the page is zeroed, and mapped again), in picoseconds per byte: 4 KiB
 * pages, or transparent huge pages when `huge` and the system gives them.
 * It varies tenfold between machines, and between virtual machines with the
 * host's handling of guest memory, so the policy measures it rather than
 * assume it: touch a region, give it back, touch it again, timed; the best
 * of two, so that a preemption does not count. 0 when it cannot tell. */
double _hak_os_refault_ps_per_byte(bool huge) {
  size_t len = huge ? HAK_HUGE_ALIGN : 16 * HAK_OS_PAGE;
  uint8_t *p = _hak_os_map_aligned(len, huge ? HAK_HUGE_ALIGN : HAK_OS_PAGE);
  if (!p) return 0;
  madvise(p, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  hak_stat_inc(madvise_calls);
  double best = 0;
  for (int round = 0; round < 3; round++) {
    uint64_t t0 = _hak_now_ns();
    for (size_t off = 0; off < len; off += HAK_OS_PAGE) ((volatile uint8_t *)p)[off] = 1;
    uint64_t ps = (_hak_now_ns() - t0) * 1000;
    if (round && (best == 0 || (double)ps / (double)len < best)) best = (double)ps / (double)len;
    madvise(p, len, MADV_DONTNEED);  /* round 0 only faults it in the first time */
    hak_stat_inc(madvise_calls);
  }
  _hak_os_unmap(p, len);
  return best;
}

/* Fault [p, p+len) in, writable, in one call, and say how long it took.
 * Returns 0 or the errno (EINVAL before Linux 5.14). errno is kept. */
int _hak_os_populate(void *p, size_t len, uint64_t *ns) {
  int saved = errno, err = 0;
  uint64_t t0 = _hak_now_ns();
  if (madvise(p, len, MADV_POPULATE_WRITE) != 0) err = errno;
  *ns = _hak_now_ns() - t0;
  hak_stat_inc(madvise_calls);
  errno = saved;
  return err;
}

uint64_t _hak_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
