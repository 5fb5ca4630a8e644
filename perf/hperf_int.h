/* Internals shared by the files of the perf module (not a public header). */
#ifndef HPERF_INT_H
#define HPERF_INT_H

#include "hperf.h"

#include <stdint.h>
#include <sys/types.h>

struct perf_evsel;
struct perf_thread_map;
struct hperf_sampler;

/* How an event is opened. */
typedef enum hperf_kind_e {
  HPERF_KIND_HW_CACHE,   /* PERF_TYPE_HW_CACHE, config given */
  HPERF_KIND_SW,         /* PERF_TYPE_SOFTWARE, config given */
  HPERF_KIND_TP,         /* PERF_TYPE_TRACEPOINT, config = id of tp_sys:tp_name */
  HPERF_KIND_TLB_REASON  /* bucket of the tlb:tlb_flush samples */
} hperf_kind_t;

typedef struct hperf_def_s {
  const char *name;      /* perf's name */
  const char *key;       /* short name for JSON/CSV keys */
  hperf_kind_t kind;
  uint64_t config;
  const char *tp_sys, *tp_name;
  int user_ok;           /* still exact with exclude_kernel=1 (for non-root) */
} hperf_def_t;

extern const hperf_def_t hperf_defs[HPERF_EVENT_COUNT];

/* Fill v with the state an open error means (err is a positive errno). */
void hperf_state_from_errno(hperf_value_t *v, int err, const char *what);
int hperf_paranoid(void);

/* The tlb:tlb_flush sampler: per-CPU ring buffers, inherited, drained by its
 * own thread, which exists before the events so that it is not counted. */
int hperf_sampler_open(struct hperf_sampler **out, pid_t tid, hperf_value_t *state);
void hperf_sampler_enable(struct hperf_sampler *s);
void hperf_sampler_disable(struct hperf_sampler *s);   /* and drain */
void hperf_sampler_reset(struct hperf_sampler *s);     /* drain, discard, zero */
/* by_reason[0..5] = buckets in hperf_event_t order from HPERF_TLB_LOCAL_MM. */
void hperf_sampler_counts(struct hperf_sampler *s, uint64_t by_reason[5],
                          uint64_t *samples, uint64_t *lost, uint64_t *full);
void hperf_sampler_close(struct hperf_sampler *s);

#endif
