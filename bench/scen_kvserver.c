/* KVSERVER scenario: an in-memory key-value server answering GETs of
 * values of about 100 KB, in bursts. Per request: a request object
 * (64-256 B), the key (16-64 B), a reply buffer of 96-128 KiB into which the
 * value is written in full (memset), and a reply header (100-300 B); the
 * reply is "sent" (a line of every page read back) and everything is freed.
 * Many connections are served at once: requests come in waves of 16-64 in
 * flight, whose replies are all alive together before they are sent.
 * KV_BURST requests per thread make a burst; bursts are separated by an idle
 * gap of 20-50 ms for the whole process (scen_idle: sleep, no CPU).
 *
 * What it shows: an allocator that returns the reply buffer's pages to the
 * kernel at free (or during the gap) faults them back in at the next
 * request; minflt counts them, cpu_ns_per_op pays for them. */
#include "scen_common.h"

#define KV_BURST 200 /* requests per thread and burst */
#define KV_WAVE_MIN 16 /* requests in flight at once */
#define KV_WAVE_MAX 64
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

typedef struct kv_request {
  kv_obj_t req, key, reply, hdr;
} kv_request_t;

static void kv_receive(scen_ctx_t *c, kv_request_t *r) {
  r->req = kv_small(c, 64, 256);
  r->key = kv_small(c, 16, 64);
  r->reply = kv_new(c, 96u << 10, 128u << 10);
  scen_fill(r->reply.p, r->reply.size, c->rng); /* the value */
  r->hdr = kv_small(c, 100, 300);
}

static void kv_send(scen_ctx_t *c, kv_request_t *r) {
  c->checksum += scen_sum_pages(r->reply.p, r->reply.size);
  free(r->reply.p);
  kv_free_small(c, r->hdr);
  kv_free_small(c, r->key);
  kv_free_small(c, r->req);
}

/* A burst: waves of requests in flight together. */
static void kv_burst(scen_ctx_t *c) {
  kv_request_t wave[KV_WAVE_MAX];
  for (int done = 0; done < KV_BURST;) {
    int n = (int)scen_range(c, KV_WAVE_MIN, KV_WAVE_MAX);
    if (n > KV_BURST - done) n = KV_BURST - done;
    for (int i = 0; i < n; i++) kv_receive(c, &wave[i]);
    for (int i = 0; i < n; i++) kv_send(c, &wave[i]);
    done += n;
  }
}

/* One unit is one burst; the gap follows every burst but the last. */
void scen_kvserver_run(scen_ctx_t *c, uint64_t units) {
  for (uint64_t u = 0; u < units; u++) {
    kv_burst(c);
    if (u + 1 < units)
      scen_idle(c, c->tid == 0 ? (unsigned)scen_range(c, KV_GAP_MIN_MS, KV_GAP_MAX_MS) : 0);
  }
}
