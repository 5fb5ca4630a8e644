/* The table from flush modes (hakmem.h's hak_flush_mode_t) to backends. */
#include "hak_io.h"
#include "hakmem.h"

const hak_io_backend_t *_hak_io_backend(int mode) {
  switch (mode) {
  case HAK_FLUSH_VECTOR: return &_hak_io_vector;
  case HAK_FLUSH_URING: return &_hak_io_uring;
  case HAK_FLUSH_OFF: return NULL;
  default: return &_hak_io_loop;
  }
}
