/* hperf: the perf-events module of hakmem, on libperf.
 *
 * Opens a fixed set of events for the calling thread and every thread it
 * creates afterwards (attr.inherit), starts and stops them, and reads them
 * into a struct. Every event carries a state: counted, not supported, or not
 * permitted, with the reason in words. An event that is not counted has no
 * value: print it as "not supported" and write it as null, never as 0.
 *
 * Inherited counts of a thread reach the counter when the thread exits:
 * join the threads you created before hperf_stop().
 *
 *   hperf_t *h = hperf_open();
 *   hperf_start(h);  ... work, threads created and joined ...  hperf_stop(h);
 *   hperf_counts_t c; hperf_read(h, &c);
 *   hperf_close(h);
 */
#ifndef HPERF_H
#define HPERF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The events, in the order tables show them. */
typedef enum hperf_event_e {
  HPERF_TLB_FLUSH = 0,          /* tlb:tlb_flush, every reason (a counter) */
  /* tlb:tlb_flush split by its reason field, from PERF_SAMPLE_RAW samples */
  HPERF_TLB_LOCAL_MM,           /* reason 3: local MM shootdown */
  HPERF_TLB_REMOTE_SEND_IPI,    /* reason 4: this CPU sent a shootdown IPI */
  HPERF_TLB_REMOTE_SHOOTDOWN,   /* reason 1: this CPU received a shootdown */
  HPERF_TLB_TASK_SWITCH,        /* reason 0: flush on task switch */
  HPERF_TLB_OTHER,              /* reasons 2, 5 and anything newer */
  HPERF_DTLB_LOAD_MISSES,       /* dTLB-load-misses (hardware cache event) */
  HPERF_DTLB_STORE_MISSES,      /* dTLB-store-misses */
  HPERF_PAGE_FAULTS,            /* page-faults */
  HPERF_MINOR_FAULTS,           /* minor-faults */
  HPERF_MAJOR_FAULTS,           /* major-faults */
  HPERF_CONTEXT_SWITCHES,       /* context-switches */
  HPERF_CPU_MIGRATIONS,         /* cpu-migrations */
  HPERF_TASK_CLOCK,             /* task-clock, in ns */
  HPERF_SYS_MADVISE,            /* syscalls:sys_enter_madvise */
  HPERF_SYS_PROCESS_MADVISE,    /* syscalls:sys_enter_process_madvise */
  HPERF_SYS_IO_URING_ENTER,     /* syscalls:sys_enter_io_uring_enter */
  HPERF_EVENT_COUNT
} hperf_event_t;

#define HPERF_TLB_REASON_FIRST HPERF_TLB_LOCAL_MM
#define HPERF_TLB_REASON_LAST  HPERF_TLB_OTHER

typedef enum hperf_state_e {
  HPERF_COUNTED = 0,
  HPERF_NOT_SUPPORTED,          /* no such event here (no PMU, no tracepoint) */
  HPERF_NOT_PERMITTED           /* exists, but this process may not count it */
} hperf_state_t;

typedef struct hperf_value_s {
  hperf_state_t state;
  uint64_t value;               /* meaningful only when state == HPERF_COUNTED */
  char why[96];                 /* why not counted, or a note ("user space only") */
} hperf_value_t;

typedef struct hperf_counts_s {
  hperf_value_t ev[HPERF_EVENT_COUNT];
  uint64_t tlb_samples;         /* tlb:tlb_flush samples read from the ring buffers */
  uint64_t tlb_lost;            /* samples the kernel dropped (PERF_RECORD_LOST, or
                                   the tlb:tlb_flush counter minus the samples) */
  uint64_t tlb_pages_full;      /* samples with pages == -1 (full flush) */
} hperf_counts_t;

typedef struct hperf_s hperf_t;

/* Open every event for the calling thread and the threads it creates from now
 * on. Mounts tracefs when it is missing and we are root. Never fails for an
 * event that cannot be counted (its state says why); NULL only on ENOMEM. */
hperf_t *hperf_open(void);
/* Zero the counts and start counting. 0, or -errno. */
int hperf_start(hperf_t *h);
/* Stop counting and drain the sample buffers. 0, or -errno. */
int hperf_stop(hperf_t *h);
/* The counts between the last start and stop. */
void hperf_read(hperf_t *h, hperf_counts_t *out);
void hperf_close(hperf_t *h);

/* perf's name of an event ("tlb:tlb_flush", "dTLB-load-misses", ...). */
const char *hperf_event_name(hperf_event_t ev);
/* Short name for keys: "tlb_flush", "local_mm_shootdown", "dtlb_load_misses". */
const char *hperf_event_key(hperf_event_t ev);
/* "counted", "not supported", "not permitted". */
const char *hperf_state_name(hperf_state_t st);
/* The state of an event after hperf_open (before any count). */
const hperf_value_t *hperf_event_state(hperf_t *h, hperf_event_t ev);
/* One line saying what cannot be counted and why ("" when everything is). */
const char *hperf_missing(hperf_t *h);

/* Write v as a JSON value: the number, or null when it is not counted. */
void hperf_json_value(FILE *f, const hperf_value_t *v);

/* tracefs: its mount point ("/sys/kernel/tracing"), mounting it when root and
 * it is not mounted. NULL with errno when it cannot be found or mounted. */
const char *hperf_tracefs(void);
/* Id of tracepoint "sys/name" (for attr.config), or -errno. */
long long hperf_tracepoint_id(const char *sys, const char *name);
/* Offset of field "name" in the raw record of a tracepoint, or -errno. */
int hperf_tracepoint_field(const char *sys, const char *event, const char *field,
                           int *offset, int *size);

#ifdef __cplusplus
}
#endif
#endif /* HPERF_H */
