/* KVSERVER scenario: an in-memory key-value server answering GETs of
 * values of about 100 KB, in bursts. Per request: a request object
 * (64-256 B), the key (16-64 B), a reply buffer of 96-128 KiB into which the
 * value is written in full (memset), and a reply header (100-300 B); the
 * reply is "sent" (a line of every page read back) and everything is freed.
 * KV_BURST requests per thread make a burst; bursts are separated by an idle
 * gap of 20-50 ms for the whole process (scen_idle: sleep, no CPU).
 *
 * What it shows: an allocator that returns the reply buffer's pages to the
 * kernel at free (or during the gap) faults them back in at the next
 * request; minflt counts them, cpu_ns_per_op pays for them. */
#include "scen_common.h"

#define KV_BURST 200 /* requests per thread and burst */
#define KV_GAP_MIN_MS 20
#define KV_GAP_MAX_MS 50

typedef struct kv_obj {
  unsigned char *p;
  size_t size;
} kv_obj_t;

static kv_obj_t kv_new(scen_ctx_t *c, size_t lo, size_t hi) {
  kv_obj_t o = {NULL, scen_range(c, lo, hi)};
  o.p = scen_alloc(c, o.size);
  return o;
}

/* Small objects are written and read in full. */
static kv_obj_t kv_small(scen_ctx_t *c, size_t lo, size_t hi) {
  kv_obj_t o = kv_new(c, lo, hi);
  scen_fill(o.p, o.size, c->rng);
  return o;
}

static void kv_free_small(scen_ctx_t *c, kv_obj_t o) {
  c->checksum += scen_sum(o.p, o.size);
  free(o.p);
}

static void kv_request(scen_ctx_t *c) {
  kv_obj_t req = kv_small(c, 64, 256);
  kv_obj_t key = kv_small(c, 16, 64);
  kv_obj_t reply = kv_new(c, 96u << 10, 128u << 10);
  scen_fill(reply.p, reply.size, c->rng); /* the value */
  kv_obj_t hdr = kv_small(c, 100, 300);
  c->checksum += scen_sum_pages(reply.p, reply.size);
  free(reply.p);
  kv_free_small(c, hdr);
  kv_free_small(c, key);
  kv_free_small(c, req);
}

/* One unit is one burst; the gap follows every burst but the last. */
void scen_kvserver_run(scen_ctx_t *c, uint64_t units) {
  for (uint64_t u = 0; u < units; u++) {
    for (int r = 0; r < KV_BURST; r++) kv_request(c);
    if (u + 1 < units)
      scen_idle(c, c->tid == 0 ? (unsigned)scen_range(c, KV_GAP_MIN_MS, KV_GAP_MAX_MS) : 0);
  }
}
