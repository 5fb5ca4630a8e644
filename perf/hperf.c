/* hperf: open, start, stop and read the counters; the tlb:tlb_flush split by
 * reason comes from the sampler (hperf_sample.c). Each event is opened on its
 * own, because one unsupported event would make a whole group fail. */
#include "hperf_int.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <perf/core.h>
#include <perf/evsel.h>
#include <perf/threadmap.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct hperf_s {
  hperf_value_t state[HPERF_EVENT_COUNT];   /* after open */
  struct perf_evsel *evsel[HPERF_EVENT_COUNT];
  struct perf_thread_map *threads;
  struct hperf_sampler *sampler;
  uint64_t base[HPERF_EVENT_COUNT], end[HPERF_EVENT_COUNT];
  char missing[768];
};

/* libperf prints its debug chatter through this; we report through states. */
static int quiet_print(enum libperf_print_level level, const char *fmt, va_list ap) {
  (void)level; (void)fmt; (void)ap;
  return 0;
}

static void fill_attr(struct perf_event_attr *attr, const hperf_def_t *d, long long tp_id) {
  memset(attr, 0, sizeof *attr);
  attr->size = sizeof *attr;
  attr->disabled = 1;
  attr->inherit = 1;
  switch (d->kind) {
  case HPERF_KIND_HW_CACHE: attr->type = PERF_TYPE_HW_CACHE; attr->config = d->config; break;
  case HPERF_KIND_SW: attr->type = PERF_TYPE_SOFTWARE; attr->config = d->config; break;
  default: attr->type = PERF_TYPE_TRACEPOINT; attr->config = (uint64_t)tp_id; break;
  }
}

static int open_one(hperf_t *h, hperf_event_t ev) {
  const hperf_def_t *d = &hperf_defs[ev];
  struct perf_event_attr attr;
  long long id = 0;
  if (d->kind == HPERF_KIND_TP) {
    id = hperf_tracepoint_id(d->tp_sys, d->tp_name);
    if (id < 0) {
      hperf_state_from_errno(&h->state[ev], (int)-id,
                             id == -ENOENT ? "no such tracepoint in tracefs" : "tracefs");
      return (int)id;
    }
  }
  fill_attr(&attr, d, id);
  struct perf_evsel *evsel = perf_evsel__new(&attr);
  if (!evsel) return -ENOMEM;
  int err = perf_evsel__open(evsel, NULL, h->threads);
  if ((err == -EACCES || err == -EPERM) && d->user_ok) {
    /* perf_event_paranoid >= 2 without root: user space only is still exact. */
    perf_evsel__attr(evsel)->exclude_kernel = 1;
    perf_evsel__attr(evsel)->exclude_hv = 1;
    err = perf_evsel__open(evsel, NULL, h->threads);
    if (!err) snprintf(h->state[ev].why, sizeof h->state[ev].why, "user space only");
  }
  if (err) {
    hperf_state_from_errno(&h->state[ev], -err, d->name);
    perf_evsel__delete(evsel);
    return err;
  }
  h->state[ev].state = HPERF_COUNTED;
  h->evsel[ev] = evsel;
  return 0;
}

/* Name in the missing line: the reason buckets appear once, as one. */
static const char *missing_name(int ev) {
  if (ev == HPERF_TLB_REASON_FIRST) return "tlb:tlb_flush by reason";
  if (ev > HPERF_TLB_REASON_FIRST && ev <= HPERF_TLB_REASON_LAST) return NULL;
  return hperf_defs[ev].name;
}

/* "not counted: a, b (why); c (why)" - events with the same reason together. */
static void build_missing(hperf_t *h) {
  size_t n = 0, cap = sizeof h->missing;
  int done[HPERF_EVENT_COUNT] = {0};
  h->missing[0] = 0;
  for (int i = 0; i < HPERF_EVENT_COUNT; i++) {
    if (done[i] || h->state[i].state == HPERF_COUNTED || !missing_name(i)) continue;
    n += snprintf(h->missing + n, n < cap ? cap - n : 0, "%s%s", n ? "; " : "not counted: ",
                  missing_name(i));
    for (int j = i + 1; j < HPERF_EVENT_COUNT; j++) {
      if (done[j] || h->state[j].state != h->state[i].state ||
          strcmp(h->state[j].why, h->state[i].why) != 0) continue;
      done[j] = 1;
      if (missing_name(j))
        n += snprintf(h->missing + n, n < cap ? cap - n : 0, ", %s", missing_name(j));
    }
    n += snprintf(h->missing + n, n < cap ? cap - n : 0, " (%s: %s)",
                  hperf_state_name(h->state[i].state), h->state[i].why);
  }
}

hperf_t *hperf_open(void) {
  hperf_t *h = calloc(1, sizeof *h);
  pid_t tid = (pid_t)syscall(SYS_gettid);
  if (!h) return NULL;
  libperf_init(quiet_print);
  h->threads = perf_thread_map__new_array(1, &tid);
  if (!h->threads) { free(h); return NULL; }
  /* Sampler first: its drain thread must exist before any inherited event. */
  hperf_value_t st = {0};
  hperf_sampler_open(&h->sampler, tid, &st);
  for (int ev = HPERF_TLB_REASON_FIRST; ev <= HPERF_TLB_REASON_LAST; ev++) h->state[ev] = st;
  for (int ev = 0; ev < HPERF_EVENT_COUNT; ev++)
    if (hperf_defs[ev].kind != HPERF_KIND_TLB_REASON) open_one(h, (hperf_event_t)ev);
  build_missing(h);
  return h;
}

static uint64_t read_counter(struct perf_evsel *e) {
  struct perf_counts_values v = {0};
  return perf_evsel__read(e, 0, 0, &v) == 0 ? v.val : 0;
}

int hperf_start(hperf_t *h) {
  if (h->sampler) hperf_sampler_reset(h->sampler);
  for (int ev = 0; ev < HPERF_EVENT_COUNT; ev++)
    if (h->evsel[ev]) h->base[ev] = h->end[ev] = read_counter(h->evsel[ev]);
  if (h->sampler) hperf_sampler_enable(h->sampler);
  for (int ev = 0; ev < HPERF_EVENT_COUNT; ev++)
    if (h->evsel[ev]) perf_evsel__enable(h->evsel[ev]);
  return 0;
}

int hperf_stop(hperf_t *h) {
  for (int ev = 0; ev < HPERF_EVENT_COUNT; ev++)
    if (h->evsel[ev]) perf_evsel__disable(h->evsel[ev]);
  if (h->sampler) hperf_sampler_disable(h->sampler);
  for (int ev = 0; ev < HPERF_EVENT_COUNT; ev++)
    if (h->evsel[ev]) h->end[ev] = read_counter(h->evsel[ev]);
  return 0;
}

void hperf_read(hperf_t *h, hperf_counts_t *out) {
  memset(out, 0, sizeof *out);
  for (int ev = 0; ev < HPERF_EVENT_COUNT; ev++) {
    out->ev[ev] = h->state[ev];
    if (h->evsel[ev]) out->ev[ev].value = h->end[ev] - h->base[ev];
  }
  if (!h->sampler) return;
  uint64_t by[5];
  hperf_sampler_counts(h->sampler, by, &out->tlb_samples, &out->tlb_lost, &out->tlb_pages_full);
  /* The kernel writes PERF_RECORD_LOST only once the buffer has room again, so
   * losses at the end of a window never show there: the counter, which sees
   * every event, gives the true number. */
  const hperf_value_t *total = &out->ev[HPERF_TLB_FLUSH];
  if (total->state == HPERF_COUNTED && total->value > out->tlb_samples + out->tlb_lost)
    out->tlb_lost = total->value - out->tlb_samples;
  for (int ev = HPERF_TLB_REASON_FIRST; ev <= HPERF_TLB_REASON_LAST; ev++) {
    out->ev[ev].value = by[ev - HPERF_TLB_REASON_FIRST];
    if (out->tlb_lost)
      snprintf(out->ev[ev].why, sizeof out->ev[ev].why, "%llu samples lost: a lower bound",
               (unsigned long long)out->tlb_lost);
  }
}

void hperf_close(hperf_t *h) {
  if (!h) return;
  for (int ev = 0; ev < HPERF_EVENT_COUNT; ev++) {
    if (!h->evsel[ev]) continue;
    perf_evsel__close(h->evsel[ev]);
    perf_evsel__delete(h->evsel[ev]);
  }
  hperf_sampler_close(h->sampler);
  perf_thread_map__put(h->threads);
  free(h);
}

const hperf_value_t *hperf_event_state(hperf_t *h, hperf_event_t ev) {
  return &h->state[ev];
}

const char *hperf_missing(hperf_t *h) {
  return h->missing;
}
