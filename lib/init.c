/* Start, fork and exit. Initialisation runs on the first allocation (or from
 * the library constructor, whichever comes first) and must not allocate:
 * the pieces that may (pthread_atfork, the backend probe) come after
 * _hak_ready is set. */
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

_Atomic int _hak_ready;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static int pid_before_fork;

/* Locks are taken in the order the allocator nests them. */
static void atfork_prepare(void) {
  pid_before_fork = getpid();
  _hak_policy_atfork_prepare();
  _hak_heap_atfork_prepare();
  _hak_segment_atfork_prepare();
  _hak_large_atfork_prepare();
  _hak_batch_atfork_prepare();
}

static void atfork_parent(void) {
  _hak_batch_atfork_parent();
  _hak_large_atfork_parent();
  _hak_segment_atfork_parent();
  _hak_heap_atfork_parent();
  _hak_policy_atfork_parent();
}

static void atfork_child(void) {
  _hak_purge_atfork_child();
  _hak_batch_atfork_child();
  _hak_large_atfork_child();
  _hak_segment_atfork_child();
  _hak_heap_atfork_child();
  _hak_stats_atfork_child(pid_before_fork);
  _hak_policy_atfork_parent();  /* the same lock, held by this same thread */
}

void _hak_init_slow(void) {
  static _Atomic int started;
  if (atomic_exchange(&started, 1)) {
    /* Another thread is initialising: wait for it. The initialising thread
     * itself never gets here (_hak_ready is set before anything allocates). */
    pthread_mutex_lock(&init_lock);
    pthread_mutex_unlock(&init_lock);
    return;
  }
  pthread_mutex_lock(&init_lock);
  _hak_options_init();
  _hak_policy_init();
  _hak_stats_init();
  _hak_heap_init();
  atomic_store_explicit(&_hak_ready, 1, memory_order_release);
  _hak_batch_init();  /* probes may allocate: after _hak_ready */
  pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
  pthread_mutex_unlock(&init_lock);
}

__attribute__((constructor)) static void hak_constructor(void) { _hak_ensure_init(); }

/* Exit: what is pending goes to the kernel through the batch like everything
 * else, then the report. */
__attribute__((destructor)) static void hak_destructor(void) {
  if (!atomic_load(&_hak_ready)) return;
  _hak_batch_flush(HAK_FLUSH_WHY_EXPLICIT);
  _hak_stats_at_exit();
}
