/* Queues argv[1] freed large blocks of argv[2] KiB (default 8 x 512), prints its state, exits without flushing. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 8;
  size_t kib = argc > 2 ? (size_t)atol(argv[2]) : 512;
  void **v = hak_calloc((size_t)n + 1, sizeof *v);
  if (!v) return 2;
  for (int i = 0; i < n; i++) {
    v[i] = hak_malloc(kib * 1024);
    if (!v[i]) return 2;
    memset(v[i], 0x5a, kib * 1024);  /* resident, so the release has work */
  }
  for (int i = 0; i < n; i++) hak_free(v[i]);
  hak_free(v);
  hak_stats_t st;
  hak_stats(&st);
  /* What the exit report must account for: these are still queued now. */
  printf("pending_ranges=%" PRIu64 " ranges_added=%" PRIu64 " flush_mode=%s requested=%s\n",
         st.pending_ranges, st.ranges_added, hak_flush_mode_name((hak_flush_mode_t)st.flush_mode),
         hak_flush_mode_name((hak_flush_mode_t)st.flush_mode_requested));
  return 0;
}
