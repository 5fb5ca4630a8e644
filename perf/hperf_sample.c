/* The exact split of tlb:tlb_flush by reason: the tracepoint is sampled at
 * period 1 with PERF_SAMPLE_RAW into one ring buffer per CPU (inherited
 * events write into their parent's buffer), and the reason field is read from
 * each raw record. A drain thread empties the buffers while the work runs so
 * that they do not overflow; overflows that still happen are counted from
 * PERF_RECORD_LOST and reported, never hidden. */
#include "hperf_int.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <perf/cpumap.h>
#include <perf/event.h>
#include <perf/evlist.h>
#include <perf/evsel.h>
#include <perf/mmap.h>
#include <perf/threadmap.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING_PAGES 512  /* 2 MiB per CPU: ~50k samples between two drains */

/* HPERF_RING_PAGES (a power of two) overrides the size: tests shrink it to
 * make the kernel drop samples and check that the loss is reported. */
static int ring_pages(void) {
  const char *e = getenv("HPERF_RING_PAGES");
  long v = e ? strtol(e, NULL, 10) : 0;
  return v > 0 && v <= 65536 && !(v & (v - 1)) ? (int)v : RING_PAGES;
}

struct hperf_sampler {
  struct perf_evlist *evlist;
  struct perf_cpu_map *cpus;
  struct perf_thread_map *threads;
  int reason_off, reason_size, pages_off;
  pthread_t thread;
  int thread_started;
  pthread_mutex_t mu;            /* guards the buffers and the counts */
  pthread_cond_t cv;
  int mapped, active, quit;
  uint64_t by_reason[5];
  uint64_t samples, lost, full;
};

/* tlb_flush_reason (arch/x86/include/asm/mmu.h) -> our bucket index. */
static int bucket_of(int reason) {
  switch (reason) {
  case 3: return HPERF_TLB_LOCAL_MM - HPERF_TLB_REASON_FIRST;
  case 4: return HPERF_TLB_REMOTE_SEND_IPI - HPERF_TLB_REASON_FIRST;
  case 1: return HPERF_TLB_REMOTE_SHOOTDOWN - HPERF_TLB_REASON_FIRST;
  case 0: return HPERF_TLB_TASK_SWITCH - HPERF_TLB_REASON_FIRST;
  default: return HPERF_TLB_OTHER - HPERF_TLB_REASON_FIRST;
  }
}

/* With sample_type == PERF_SAMPLE_RAW the body is: u32 size, then the record. */
static void take_sample(struct hperf_sampler *s, const union perf_event *ev) {
  const unsigned char *body = (const unsigned char *)ev->sample.array;
  uint32_t size;
  int reason = -1;
  memcpy(&size, body, sizeof size);
  const unsigned char *raw = body + sizeof size;
  if (s->reason_size == 4 && (uint32_t)s->reason_off + 4 <= size)
    memcpy(&reason, raw + s->reason_off, 4);
  if (s->pages_off >= 0 && (uint32_t)s->pages_off + 8 <= size) {
    int64_t pages;
    memcpy(&pages, raw + s->pages_off, 8);
    if (pages == -1) s->full++;
  }
  s->by_reason[bucket_of(reason)]++;
  s->samples++;
}

/* Caller holds s->mu. */
static void drain(struct hperf_sampler *s, int keep) {
  struct perf_mmap *map;
  union perf_event *ev;
  if (!s->mapped) return;
  perf_evlist__for_each_mmap(s->evlist, map, false) {
    if (perf_mmap__read_init(map) < 0) continue;
    while ((ev = perf_mmap__read_event(map)) != NULL) {
      if (keep) {
        if (ev->header.type == PERF_RECORD_SAMPLE) take_sample(s, ev);
        else if (ev->header.type == PERF_RECORD_LOST) s->lost += ev->lost.lost;
        else if (ev->header.type == PERF_RECORD_LOST_SAMPLES) s->lost += ev->lost_samples.lost;
      }
      perf_mmap__consume(map);
    }
    perf_mmap__read_done(map);
  }
}

static void *drain_thread(void *arg) {
  struct hperf_sampler *s = arg;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (!s->quit && !s->active) pthread_cond_wait(&s->cv, &s->mu);
    if (s->quit) break;
    pthread_mutex_unlock(&s->mu);
    /* Wakes at the watermark (a quarter of a buffer) or every 20 ms. */
    perf_evlist__poll(s->evlist, 20);
    pthread_mutex_lock(&s->mu);
    drain(s, 1);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* Where reason and pages sit in the raw record, from the format file. */
static int raw_layout(struct hperf_sampler *s) {
  int off, sz;
  s->pages_off = -1;
  if (hperf_tracepoint_field("tlb", "tlb_flush", "reason", &s->reason_off, &s->reason_size) != 0)
    return -ENOENT;
  if (hperf_tracepoint_field("tlb", "tlb_flush", "pages", &off, &sz) == 0 && sz == 8)
    s->pages_off = off;
  return s->reason_size == 4 ? 0 : -EINVAL;
}

static int open_events(struct hperf_sampler *s, pid_t tid, long long id) {
  struct perf_event_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.size = sizeof attr;
  attr.type = PERF_TYPE_TRACEPOINT;
  attr.config = (uint64_t)id;
  attr.sample_period = 1;
  attr.sample_type = PERF_SAMPLE_RAW;
  attr.inherit = 1;
  attr.disabled = 1;
  attr.watermark = 1;
  attr.wakeup_watermark = (uint32_t)ring_pages() * 4096 / 4;
  struct perf_evsel *evsel = perf_evsel__new(&attr);
  if (!evsel) return -ENOMEM;
  s->cpus = perf_cpu_map__new_online_cpus();
  s->threads = perf_thread_map__new_array(1, &tid);
  s->evlist = perf_evlist__new();
  if (!s->cpus || !s->threads || !s->evlist) { perf_evsel__delete(evsel); return -ENOMEM; }
  perf_evlist__add(s->evlist, evsel);
  perf_evlist__set_maps(s->evlist, s->cpus, s->threads);
  int err = perf_evlist__open(s->evlist);
  if (err) return err < 0 ? err : -EINVAL;
  err = perf_evlist__mmap(s->evlist, ring_pages());
  if (err) return err < 0 ? err : -ENOMEM;
  s->mapped = 1;
  return 0;
}

int hperf_sampler_open(struct hperf_sampler **out, pid_t tid, hperf_value_t *state) {
  struct hperf_sampler *s = calloc(1, sizeof *s);
  *out = NULL;
  if (!s) return -ENOMEM;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  long long id = hperf_tracepoint_id("tlb", "tlb_flush");
  int err = id < 0 ? (int)id : raw_layout(s);
  /* The drain thread first: created before the events, it is not inherited. */
  if (!err) err = -pthread_create(&s->thread, NULL, drain_thread, s);
  if (!err) s->thread_started = 1;
  if (!err) err = open_events(s, tid, id);
  if (err) {
    hperf_state_from_errno(state, -err, id < 0 ? "tracefs tlb/tlb_flush" : "tlb:tlb_flush sampling");
    hperf_sampler_close(s);
    return err;
  }
  state->state = HPERF_COUNTED;
  *out = s;
  return 0;
}

void hperf_sampler_reset(struct hperf_sampler *s) {
  pthread_mutex_lock(&s->mu);
  drain(s, 0);
  memset(s->by_reason, 0, sizeof s->by_reason);
  s->samples = s->lost = s->full = 0;
  pthread_mutex_unlock(&s->mu);
}

void hperf_sampler_enable(struct hperf_sampler *s) {
  pthread_mutex_lock(&s->mu);
  perf_evlist__enable(s->evlist);
  s->active = 1;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

void hperf_sampler_disable(struct hperf_sampler *s) {
  pthread_mutex_lock(&s->mu);
  perf_evlist__disable(s->evlist);
  s->active = 0;
  drain(s, 1);
  pthread_mutex_unlock(&s->mu);
}

void hperf_sampler_counts(struct hperf_sampler *s, uint64_t by_reason[5],
                          uint64_t *samples, uint64_t *lost, uint64_t *full) {
  pthread_mutex_lock(&s->mu);
  memcpy(by_reason, s->by_reason, sizeof s->by_reason);
  *samples = s->samples;
  *lost = s->lost;
  *full = s->full;
  pthread_mutex_unlock(&s->mu);
}

void hperf_sampler_close(struct hperf_sampler *s) {
  if (!s) return;
  if (s->thread_started) {
    pthread_mutex_lock(&s->mu);
    s->quit = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
  }
  if (s->evlist) {
    struct perf_evsel *e;
    if (s->mapped) perf_evlist__munmap(s->evlist);
    perf_evlist__close(s->evlist);
    /* libperf's perf_evsel__delete only frees: drop the evsel's map references. */
    perf_evlist__for_each_evsel(s->evlist, e) {
      perf_cpu_map__put(perf_evsel__cpus(e));
      perf_thread_map__put(perf_evsel__threads(e));
    }
    perf_evlist__delete(s->evlist);  /* deletes its evsels, drops its own maps */
  }
  if (s->cpus) perf_cpu_map__put(s->cpus);
  if (s->threads) perf_thread_map__put(s->threads);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s);
}
