/* Release control, the public half: flush, trim, and options at run time.
 * options.c stores a new value; the owner of the option reacts here. */
#include <errno.h>

#include "internal.h"

void hak_flush(void) {
  _hak_ensure_init();
  _hak_batch_flush(HAK_FLUSH_WHY_EXPLICIT);
}

/* Everything that can be given back is queued first, so that it all goes
 * in one flush; empty segments are unmapped only after it. */
int hak_trim(void) {
  _hak_ensure_init();
  _hak_heap_collect_mine();
  size_t given = _hak_heap_collect_abandoned();
  given += _hak_large_trim();
  _hak_batch_flush(HAK_FLUSH_WHY_EXPLICIT);
  given += _hak_segment_trim();
  return given > 0;
}

int hak_option_set(const char *name, const char *value) {
  _hak_ensure_init();
  int id = value ? _hak_option_find(name) : -1;
  if (id < 0) { errno = EINVAL; return -1; }
  long long before = _hak_opt_v[id];
  if (!_hak_option_parse(id, value)) { errno = EINVAL; return -1; }
  switch (id) {
  case HAK_OPT_POLICY:
  case HAK_OPT_PURGE_CAP_MS:
    _hak_policy_set_adaptive(hak_opt(POLICY));  /* (re)applies the arm within the cap */
    _hak_batch_kick();
    break;
  case HAK_OPT_PURGE_DELAY_MS:
  case HAK_OPT_BATCH_BYTES:
  case HAK_OPT_BATCH_MAX:
    /* A program that sets what the adaptive policy chooses wants it fixed. */
    _hak_option_store(HAK_OPT_POLICY, 0);
    _hak_policy_set_adaptive(false);
    _hak_batch_kick();
    _hak_purge_poll();
    break;
  case HAK_OPT_FLUSH:
    _hak_batch_set_mode((int)hak_opt(FLUSH));  /* flushes what is queued, then switches */
    break;
  case HAK_OPT_ADVICE:
    /* Queued ranges keep the advice they were queued with; flushing them now
     * keeps the promise that the change applies from here on. */
    if (before != hak_opt(ADVICE)) _hak_batch_flush(HAK_FLUSH_WHY_EXPLICIT);
    break;
  default:
    _hak_batch_kick();  /* limits and delays are read anew by whoever drives the batch */
    _hak_purge_poll();
    break;
  }
  return 0;
}

long long hak_option_get(const char *name) {
  _hak_ensure_init();
  int id = _hak_option_find(name);
  if (id < 0 || id == HAK_OPT_STATS_FILE) { errno = EINVAL; return -1; }
  return _hak_opt_v[id];
}
