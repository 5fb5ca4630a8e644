/* MIXED scenario: a server process doing all three kinds of work at once.
 * Each unit is a JSON document (55%), a MIR function (40%) or a VM round of
 * at most two 2 MiB regions (5%). With several threads, one JSON document
 * in ten is handed to the next thread, which frees it: remote frees, as when
 * a request is parsed on one thread and retired on another. */
#include <pthread.h>
#include "scen_common.h"

typedef struct mailbox {
  pthread_mutex_t lock;
  json_doc_t *head;
  char pad[64]; /* keep neighbouring mailboxes on their own cache lines */
} mailbox_t;

struct scen_shared {
  int nthreads;
  pthread_barrier_t done; /* every thread has stopped handing off */
  mailbox_t box[];
};

scen_shared_t *scen_shared_new(int nthreads) {
  scen_shared_t *s = calloc(1, sizeof(*s) + (size_t)nthreads * sizeof(mailbox_t));
  if (!s) abort();
  s->nthreads = nthreads;
  pthread_barrier_init(&s->done, NULL, (unsigned)nthreads);
  for (int i = 0; i < nthreads; i++) pthread_mutex_init(&s->box[i].lock, NULL);
  return s;
}

void scen_shared_free(scen_shared_t *s) {
  pthread_barrier_destroy(&s->done);
  for (int i = 0; i < s->nthreads; i++) pthread_mutex_destroy(&s->box[i].lock);
  free(s);
}

static void handoff(scen_ctx_t *c, json_doc_t *d) {
  mailbox_t *b = &c->shared->box[(c->tid + 1) % c->nthreads];
  pthread_mutex_lock(&b->lock);
  *json_doc_next(d) = b->head;
  b->head = d;
  pthread_mutex_unlock(&b->lock);
}

/* Free whatever other threads handed to this one. */
static void drain(scen_ctx_t *c) {
  mailbox_t *b = &c->shared->box[c->tid];
  if (!__atomic_load_n(&b->head, __ATOMIC_RELAXED)) return;
  pthread_mutex_lock(&b->lock);
  json_doc_t *d = b->head;
  b->head = NULL;
  pthread_mutex_unlock(&b->lock);
  while (d) {
    json_doc_t *next = *json_doc_next(d);
    json_doc_free(d);
    d = next;
  }
}

#define MIXED_WINDOW 2

void scen_mixed_run(scen_ctx_t *c, uint64_t units) {
  json_doc_t *window[MIXED_WINDOW] = {0};
  mir_module_t *m = mir_module_new(c);
  vm_heap_t *h = vm_heap_new(c, 3);
  int share = c->nthreads > 1;
  for (uint64_t u = 0; u < units; u++) {
    if (share) drain(c);
    unsigned r = (unsigned)(scen_rand(c) % 100);
    if (r < 55) {
      json_doc_t *d = json_doc_build(c);
      json_doc_use(c, d);
      if (share && scen_chance(c, 10)) {
        handoff(c, d);
        continue;
      }
      json_doc_t **slot = &window[u % MIXED_WINDOW];
      if (*slot) json_doc_free(*slot);
      *slot = d;
    } else if (r < 95) {
      mir_function(c, m);
    } else {
      vm_round(c, h, 2);
    }
  }
  if (share) {
    pthread_barrier_wait(&c->shared->done);
    drain(c);
  }
  for (int i = 0; i < MIXED_WINDOW; i++)
    if (window[i]) json_doc_free(window[i]);
  mir_module_free(m);
  vm_heap_free(h);
}
