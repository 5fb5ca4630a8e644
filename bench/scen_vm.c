/* VM scenario: a virtual machine (or any runtime) managing its heap in
 * 2 MiB regions. Each round replaces a few regions of a small working set
 * (so freed regions are soon needed again: reuse), touches every page of
 * each new region, and now and then drops the whole working set, as a
 * full collection or an idle phase would. */
#include "scen_common.h"

#define VM_BLOCK (2u << 20)
#define VM_PAGE 4096u
#define VM_TOUCH 64u /* bytes written per page: one cache line */

struct vm_heap {
  unsigned slots;
  unsigned char *block[];
};

vm_heap_t *vm_heap_new(scen_ctx_t *c, unsigned slots) {
  vm_heap_t *h = scen_alloc(c, sizeof(*h) + slots * sizeof(h->block[0]));
  h->slots = slots;
  for (unsigned i = 0; i < slots; i++) h->block[i] = NULL;
  return h;
}

/* Write a line in every page (each page is really used), then read them. */
static void region_touch(scen_ctx_t *c, unsigned char *b) {
  uint64_t seed = scen_rand(c);
  for (size_t off = 0; off < VM_BLOCK; off += VM_PAGE) scen_fill(b + off, VM_TOUCH, seed + off);
  for (size_t off = 0; off < VM_BLOCK; off += VM_PAGE) c->checksum += scen_sum(b + off, VM_TOUCH);
}

static void heap_drop(vm_heap_t *h) {
  for (unsigned i = 0; i < h->slots; i++) {
    free(h->block[i]);
    h->block[i] = NULL;
  }
}

void vm_round(scen_ctx_t *c, vm_heap_t *h, unsigned max_blocks) {
  if (scen_chance(c, 12)) heap_drop(h); /* collection / idle phase */
  unsigned k = (unsigned)scen_range(c, 1, max_blocks);
  for (unsigned j = 0; j < k; j++) {
    unsigned char **slot = &h->block[scen_rand(c) % h->slots];
    if (*slot) c->checksum += scen_sum(*slot, VM_TOUCH);
    free(*slot);
    *slot = scen_alloc(c, VM_BLOCK);
    region_touch(c, *slot);
  }
}

void vm_heap_free(vm_heap_t *h) {
  heap_drop(h);
  free(h);
}

void scen_vm_run(scen_ctx_t *c, uint64_t units) {
  vm_heap_t *h = vm_heap_new(c, 6);
  for (uint64_t u = 0; u < units; u++) vm_round(c, h, 3);
  vm_heap_free(h);
}
