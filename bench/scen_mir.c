/* MIR scenario: a compiler's intermediate representation. Per function,
 * basic blocks of instructions (medium objects) live for the whole
 * compilation; optimisation passes allocate short-lived analysis data and
 * replace some instructions; each function leaves long-lived symbols and
 * emitted code in the module, which are dropped much later. */
#include "scen_common.h"

typedef struct mir_insn {
  uint32_t opcode;
  uint32_t nops;
  uint64_t operands[]; /* 2 words per operand (value, type) */
} mir_insn_t;

typedef struct mir_block {
  mir_insn_t **insns;
  uint32_t n;
  uint32_t pad[13]; /* dominators, loop info, ... of a real block: 64 B */
} mir_block_t;

#define MIR_SYMBOLS 2048 /* long-lived module objects per thread */
#define MIR_CODE 32      /* emitted function bodies kept (FIFO) */

struct mir_module {
  void *symbols[MIR_SYMBOLS];
  void *code[MIR_CODE];
  uint64_t functions;
};

static size_t insn_operands(scen_ctx_t *c) {
  unsigned r = (unsigned)(scen_rand(c) % 100);
  if (r < 90) return scen_range(c, 0, 6);
  return scen_range(c, 8, 24); /* calls, phis, switches */
}

static mir_insn_t *insn_new(scen_ctx_t *c) {
  size_t nops = insn_operands(c);
  size_t size = 40 + 16 * nops;
  mir_insn_t *i = scen_alloc(c, size);
  scen_fill(i, size, c->rng);
  i->opcode = (uint32_t)(scen_rand(c) % 200);
  i->nops = (uint32_t)nops;
  return i;
}

static uint64_t insn_read(const mir_insn_t *i) {
  return i->opcode + scen_sum(i->operands, i->nops * 16);
}

static mir_block_t *block_new(scen_ctx_t *c, size_t n) {
  mir_block_t *b = scen_alloc(c, sizeof(*b));
  size_t cap = 8;
  while (cap < n) cap *= 2;
  b->insns = scen_alloc(c, cap * sizeof(mir_insn_t *));
  b->n = (uint32_t)n;
  for (size_t k = 0; k < n; k++) b->insns[k] = insn_new(c);
  return b;
}

static void block_free(mir_block_t *b) {
  for (uint32_t k = 0; k < b->n; k++) free(b->insns[k]);
  free(b->insns);
  free(b);
}

/* One pass: a liveness-like analysis (bitset per block, a worklist; both
 * short-lived), reading every instruction, then rewriting ~15% of them. */
static void pass_run(scen_ctx_t *c, mir_block_t **blocks, size_t nb, size_t ninsns) {
  size_t bits = ((ninsns + 127) / 128) * 16;
  void **sets = scen_alloc(c, nb * sizeof(void *));
  uint32_t *work = scen_alloc(c, ninsns * sizeof(uint32_t) + 16);
  scen_fill(work, ninsns * sizeof(uint32_t), c->rng);
  for (size_t b = 0; b < nb; b++) {
    sets[b] = scen_alloc(c, bits);
    scen_fill(sets[b], bits, b);
    for (uint32_t k = 0; k < blocks[b]->n; k++) {
      c->checksum += insn_read(blocks[b]->insns[k]);
      if (scen_chance(c, 15)) {
        free(blocks[b]->insns[k]);
        blocks[b]->insns[k] = insn_new(c);
      }
    }
  }
  for (size_t b = 0; b < nb; b++) {
    c->checksum += scen_sum(sets[b], bits);
    free(sets[b]);
  }
  c->checksum += scen_sum(work, ninsns * sizeof(uint32_t));
  free(work);
  free(sets);
}

/* Emitted code and symbols outlive the function: symbols replace a random
 * older one (long, random lifetimes), code bodies leave in FIFO order. */
static void module_keep(scen_ctx_t *c, mir_module_t *m, size_t ninsns) {
  size_t nsym = scen_range(c, 2, 6);
  for (size_t s = 0; s < nsym; s++) {
    size_t size = scen_range(c, 32, 256);
    void **slot = &m->symbols[scen_rand(c) % MIR_SYMBOLS];
    free(*slot);
    *slot = scen_alloc(c, size);
    scen_fill(*slot, size, s);
  }
  size_t code_size = 16 * ninsns + 64;
  void **slot = &m->code[m->functions % MIR_CODE];
  if (*slot) c->checksum += scen_sum(*slot, 64);
  free(*slot);
  *slot = scen_alloc(c, code_size);
  scen_fill(*slot, code_size, ninsns);
  m->functions++;
}

mir_module_t *mir_module_new(scen_ctx_t *c) {
  mir_module_t *m = scen_alloc(c, sizeof(*m));
  memset(m, 0, sizeof(*m));
  return m;
}

void mir_function(scen_ctx_t *c, mir_module_t *m) {
  size_t nb = scen_range(c, 2, 24);
  mir_block_t **blocks = scen_alloc(c, nb * sizeof(*blocks));
  size_t ninsns = 0;
  for (size_t b = 0; b < nb; b++) {
    blocks[b] = block_new(c, scen_range(c, 3, 30));
    ninsns += blocks[b]->n;
  }
  size_t passes = scen_range(c, 3, 6);
  for (size_t p = 0; p < passes; p++) pass_run(c, blocks, nb, ninsns);
  module_keep(c, m, ninsns);
  for (size_t b = 0; b < nb; b++) block_free(blocks[b]);
  free(blocks);
}

void mir_module_free(mir_module_t *m) {
  for (int i = 0; i < MIR_SYMBOLS; i++) free(m->symbols[i]);
  for (int i = 0; i < MIR_CODE; i++) free(m->code[i]);
  free(m);
}

void scen_mir_run(scen_ctx_t *c, uint64_t units) {
  mir_module_t *m = mir_module_new(c);
  for (uint64_t u = 0; u < units; u++) mir_function(c, m);
  mir_module_free(m);
}
