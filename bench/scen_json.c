/* JSON scenario: a parser building document trees of many small nodes that
 * live only while the document is in use (a window of the last few
 * documents), then are freed node by node. */
#include "scen_common.h"

enum { J_OBJ, J_ARR, J_STR, J_NUM, J_LIT };

typedef struct jnode {
  struct jnode **kids; /* containers: children (objects: key, value pairs) */
  uint32_t nkids;
  uint32_t len;        /* inline payload bytes */
  uint8_t type;
  unsigned char data[];
} jnode_t;

struct json_doc {
  jnode_t *root;
  struct json_doc *next; /* MIXED hand-off list */
  uint64_t nodes;
};

#define JSON_MAX_DEPTH 8
#define JSON_WINDOW 8 /* documents alive at once in the JSON scenario */

/* String lengths of real documents: mostly short keys and values. */
static size_t str_len(scen_ctx_t *c) {
  unsigned r = (unsigned)(scen_rand(c) % 100);
  if (r < 60) return scen_range(c, 1, 12);
  if (r < 90) return scen_range(c, 13, 48);
  if (r < 98) return scen_range(c, 49, 200);
  return scen_range(c, 201, 1000);
}

static size_t kid_count(scen_ctx_t *c) {
  unsigned r = (unsigned)(scen_rand(c) % 100);
  if (r < 70) return scen_range(c, 1, 4);
  if (r < 95) return scen_range(c, 5, 12);
  return scen_range(c, 13, 40);
}

static jnode_t *node_new(scen_ctx_t *c, uint8_t type, size_t len) {
  jnode_t *n = scen_alloc(c, sizeof(jnode_t) + len);
  n->kids = NULL;
  n->nkids = 0;
  n->len = (uint32_t)len;
  n->type = type;
  scen_fill(n->data, len, c->rng);
  return n;
}

static jnode_t *leaf_new(scen_ctx_t *c) {
  unsigned r = (unsigned)(scen_rand(c) % 100);
  if (r < 55) return node_new(c, J_STR, str_len(c));
  if (r < 85) return node_new(c, J_NUM, 8);
  return node_new(c, J_LIT, 0);
}

/* Builds a value using at most *budget nodes (decremented). */
static jnode_t *value_new(scen_ctx_t *c, int depth, uint64_t *budget) {
  (*budget)--;
  int container = *budget > 2 && depth < JSON_MAX_DEPTH && scen_chance(c, depth == 0 ? 100 : 30);
  if (!container) return leaf_new(c);
  int is_obj = scen_chance(c, 60);
  size_t n = kid_count(c);
  if (n > *budget / 2) n = *budget / 2 ? *budget / 2 : 1;
  size_t slots = is_obj ? 2 * n : n;
  jnode_t *node = node_new(c, is_obj ? J_OBJ : J_ARR, 0);
  node->kids = scen_alloc(c, slots * sizeof(jnode_t *));
  node->nkids = (uint32_t)slots;
  for (size_t i = 0; i < slots; i++) {
    if (is_obj && i % 2 == 0) {
      node->kids[i] = node_new(c, J_STR, str_len(c)); /* key */
      if (*budget) (*budget)--;
    } else {
      node->kids[i] = *budget ? value_new(c, depth + 1, budget) : leaf_new(c);
    }
  }
  return node;
}

/* Document sizes: many small messages, some large payloads. */
static uint64_t doc_nodes(scen_ctx_t *c) {
  unsigned r = (unsigned)(scen_rand(c) % 100);
  if (r < 50) return scen_range(c, 10, 100);
  if (r < 90) return scen_range(c, 100, 1000);
  return scen_range(c, 1000, 5000);
}

json_doc_t *json_doc_build(scen_ctx_t *c) {
  json_doc_t *d = scen_alloc(c, sizeof(*d));
  uint64_t budget = doc_nodes(c);
  d->nodes = budget;
  d->next = NULL;
  d->root = value_new(c, 0, &budget);
  return d;
}

json_doc_t **json_doc_next(json_doc_t *d) { return &d->next; }

static uint64_t node_use(const jnode_t *n) {
  uint64_t s = n->type + n->len + scen_sum(n->data, n->len);
  for (uint32_t i = 0; i < n->nkids; i++) s += node_use(n->kids[i]);
  return s;
}

/* The application reads every byte the parser produced. */
void json_doc_use(scen_ctx_t *c, json_doc_t *d) {
  c->checksum += node_use(d->root);
}

static void node_free(jnode_t *n) {
  for (uint32_t i = 0; i < n->nkids; i++) node_free(n->kids[i]);
  free(n->kids);
  free(n);
}

void json_doc_free(json_doc_t *d) {
  node_free(d->root);
  free(d);
}

void scen_json_run(scen_ctx_t *c, uint64_t units) {
  json_doc_t *window[JSON_WINDOW] = {0};
  for (uint64_t u = 0; u < units; u++) {
    json_doc_t **slot = &window[u % JSON_WINDOW];
    if (*slot) json_doc_free(*slot);
    *slot = json_doc_build(c);
    json_doc_use(c, *slot);
  }
  for (int i = 0; i < JSON_WINDOW; i++)
    if (window[i]) json_doc_free(window[i]);
}
