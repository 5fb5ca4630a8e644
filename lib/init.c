/* Start, fork and exit. Initialisation runs on the first allocation (or from
 * the library constructor, whichever comes first) and must not allocate:
 * the pieces that may (pthread_atfork) come after hak_ready is set. */
#include <stdlib.h>

#include "internal.h"

_Atomic int hak_ready;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

static void atfork_prepare(void) {
  hak_heap_atfork_prepare();
  hak_segment_atfork_prepare();
  hak_large_atfork_prepare();
  hak_batch_atfork_prepare();
}

static void atfork_parent(void) {
  hak_batch_atfork_parent();
  hak_large_atfork_parent();
  hak_segment_atfork_parent();
  hak_heap_atfork_parent();
}

static void atfork_child(void) {
  hak_purge_atfork_child();
  hak_batch_atfork_child();
  hak_large_atfork_child();
  hak_segment_atfork_child();
  hak_heap_atfork_child();
}

void hak_init_slow(void) {
  static _Atomic int started;
  if (atomic_exchange(&started, 1)) {
    /* Another thread is initialising: wait for it. The initialising thread
     * itself never gets here (hak_ready is set before anything allocates). */
    pthread_mutex_lock(&init_lock);
    pthread_mutex_unlock(&init_lock);
    return;
  }
  pthread_mutex_lock(&init_lock);
  hak_options_init();
  hak_stats_init();
  hak_segmap_init();
  hak_heap_init();
  atomic_store_explicit(&hak_ready, 1, memory_order_release);
  hak_batch_init();  /* probes may allocate: after hak_ready */
  pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
  pthread_mutex_unlock(&init_lock);
}

__attribute__((constructor)) static void hak_constructor(void) { hak_ensure_init(); }

/* Exit: what is pending goes to the kernel through the batch like everything
 * else, then the report. */
__attribute__((destructor)) static void hak_destructor(void) {
  if (!atomic_load(&hak_ready)) return;
  hak_batch_flush(HAK_FLUSH_WHY_EXPLICIT);
  hak_stats_at_exit();
}
