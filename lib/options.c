/* Options: read once from the environment at start, settable at run time.
 * A malformed value is reported once on stderr and the default is kept. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>

#include "internal.h"

#define KiB 1024LL
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)

HAK_INTERNAL hak_options_t hak_opt = {
  .flush_mode = HAK_FLUSH_AUTO,
  .advice = MADV_DONTNEED,
  .batch_max = 256,
  /* 64 MiB: by count the batch fills at 256 ranges long before this for
   * small pages, and for 2 MiB blocks it means one flush per 32 blocks
   * instead of one per 2 (4 MiB would flush every second block and the
   * batch would hardly batch). Measured in README "Choosing the defaults". */
  .batch_bytes = 64 * MiB,
  .purge_delay_ms = 10,
  .cache_bytes = 256 * MiB,
  .stats = 0,
  .stats_file = "",
  .verbose = 0,
  .purge_thread = 1,
};

typedef enum { OPT_MODE, OPT_ADVICE, OPT_COUNT, OPT_SIZE, OPT_MS, OPT_STATS, OPT_PATH, OPT_BOOL } opt_kind;

typedef struct {
  const char *name;  /* without the HAKMEM_ prefix */
  opt_kind kind;
  long long min, max;
} opt_desc;

static const opt_desc descs[] = {
  {"FLUSH", OPT_MODE, 0, 0},
  {"ADVICE", OPT_ADVICE, 0, 0},
  {"BATCH_MAX", OPT_COUNT, 1, HAK_BATCH_LIMIT},
  {"BATCH_BYTES", OPT_SIZE, 4096, 1LL << 46},
  {"PURGE_DELAY_MS", OPT_MS, -1, 3600 * 1000},
  {"CACHE_BYTES", OPT_SIZE, 0, 1LL << 46},
  {"STATS", OPT_STATS, 0, 0},
  {"STATS_FILE", OPT_PATH, 0, 0},
  {"VERBOSE", OPT_BOOL, 0, 1},
  {"PURGE_THREAD", OPT_BOOL, 0, 1},
};
#define NDESCS (sizeof(descs) / sizeof(descs[0]))

static const char *strip_prefix(const char *name) {
  return strncmp(name, "HAKMEM_", 7) == 0 ? name + 7 : name;
}

static const opt_desc *find_desc(const char *name) {
  name = strip_prefix(name);
  for (size_t i = 0; i < NDESCS; i++)
    if (strcasecmp(descs[i].name, name) == 0) return &descs[i];
  return NULL;
}

/* "64", "64k", "4M", "1G" (binary units, optional trailing B/iB). */
static bool parse_size(const char *s, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || v < 0) return false;
  long long mul = 1;
  switch (*end) {
  case 'k': case 'K': mul = KiB; end++; break;
  case 'm': case 'M': mul = MiB; end++; break;
  case 'g': case 'G': mul = GiB; end++; break;
  default: break;
  }
  if (mul > 1 && (*end == 'i' || *end == 'I')) end++;
  if (mul > 1 && (*end == 'b' || *end == 'B')) end++;
  if (*end != '\0') return false;
  if (v > LLONG_MAX / mul) return false;
  *out = v * mul;
  return true;
}

static bool parse_int(const char *s, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end != '\0') return false;
  *out = v;
  return true;
}

static int parse_mode(const char *s) {
  for (int m = 0; m < HAK_FLUSH_MODE_COUNT; m++)
    if (strcasecmp(s, hak_flush_mode_name((hak_flush_mode_t)m)) == 0) return m;
  return -1;
}

static int parse_stats(const char *s) {
  if (!strcmp(s, "0") || !strcasecmp(s, "off") || !strcasecmp(s, "no")) return 0;
  if (!strcmp(s, "1") || !strcasecmp(s, "on") || !strcasecmp(s, "yes") ||
      !strcasecmp(s, "table")) return 1;
  if (!strcasecmp(s, "json")) return 2;
  return -1;
}

/* Apply one option; false when the value is malformed or out of range. */
static bool apply(const opt_desc *d, const char *value) {
  long long v = 0;
  switch (d->kind) {
  case OPT_MODE: {
    int m = parse_mode(value);
    if (m < 0) return false;
    hak_opt.flush_mode = m;
    return true;
  }
  case OPT_ADVICE:
    if (!strcasecmp(value, "dontneed")) hak_opt.advice = MADV_DONTNEED;
    else if (!strcasecmp(value, "free")) hak_opt.advice = MADV_FREE;
    else return false;
    return true;
  case OPT_STATS: {
    int s = parse_stats(value);
    if (s < 0) return false;
    hak_opt.stats = s;
    return true;
  }
  case OPT_PATH:
    if (strlen(value) >= sizeof(hak_opt.stats_file)) return false;
    strcpy(hak_opt.stats_file, value);
    return true;
  case OPT_SIZE:
    if (!parse_size(value, &v)) return false;
    break;
  case OPT_COUNT: case OPT_MS: case OPT_BOOL:
    if (!parse_int(value, &v)) return false;
    break;
  }
  if (v < d->min || v > d->max) {
    /* A number out of range is clamped, and said so: the intent is clear. */
    long long c = v < d->min ? d->min : d->max;
    hak_warn("HAKMEM_%s=%s is out of range [%lld, %lld]; using %lld\n", d->name, value, d->min, d->max, c);
    v = c;
  }
  if (!strcmp(d->name, "BATCH_MAX")) hak_opt.batch_max = (long)v;
  else if (!strcmp(d->name, "BATCH_BYTES")) hak_opt.batch_bytes = v;
  else if (!strcmp(d->name, "PURGE_DELAY_MS")) hak_opt.purge_delay_ms = (long)v;
  else if (!strcmp(d->name, "CACHE_BYTES")) hak_opt.cache_bytes = v;
  else if (!strcmp(d->name, "VERBOSE")) hak_opt.verbose = (int)v;
  else if (!strcmp(d->name, "PURGE_THREAD")) hak_opt.purge_thread = (int)v;
  return true;
}

void hak_options_init(void) {
  char env[64];
  for (size_t i = 0; i < NDESCS; i++) {
    strcpy(env, "HAKMEM_");
    strcat(env, descs[i].name);
    const char *value = getenv(env);
    if (!value) continue;
    if (!apply(&descs[i], value))
      hak_warn("%s=\"%s\" is not valid; using the default\n", env, value);
  }
}

int hak_option_set(const char *name, const char *value) {
  hak_ensure_init();
  const opt_desc *d = name && value ? find_desc(name) : NULL;
  if (!d) { errno = EINVAL; return -1; }
  int old_mode = hak_opt.flush_mode, old_advice = hak_opt.advice;
  if (d->kind == OPT_MODE || d->kind == OPT_ADVICE) {
    /* Ranges queued under the old release path are flushed under it. */
    hak_batch_flush(HAK_FLUSH_WHY_EXPLICIT);
  }
  if (!apply(d, value)) { errno = EINVAL; return -1; }
  if (d->kind == OPT_MODE || (d->kind == OPT_ADVICE && old_advice != hak_opt.advice) ||
      old_mode != hak_opt.flush_mode)
    hak_batch_set_mode(hak_opt.flush_mode);
  else
    hak_batch_poll();  /* a smaller limit may already be reached */
  return 0;
}

long long hak_option_get(const char *name) {
  hak_ensure_init();
  const opt_desc *d = name ? find_desc(name) : NULL;
  if (!d) { errno = EINVAL; return -1; }
  const char *n = d->name;
  if (!strcmp(n, "FLUSH")) return hak_opt.flush_mode;
  if (!strcmp(n, "ADVICE")) return hak_opt.advice;
  if (!strcmp(n, "BATCH_MAX")) return hak_opt.batch_max;
  if (!strcmp(n, "BATCH_BYTES")) return hak_opt.batch_bytes;
  if (!strcmp(n, "PURGE_DELAY_MS")) return hak_opt.purge_delay_ms;
  if (!strcmp(n, "CACHE_BYTES")) return hak_opt.cache_bytes;
  if (!strcmp(n, "STATS")) return hak_opt.stats;
  if (!strcmp(n, "VERBOSE")) return hak_opt.verbose;
  if (!strcmp(n, "PURGE_THREAD")) return hak_opt.purge_thread;
  errno = EINVAL;
  return -1;
}

const char *hak_flush_mode_name(hak_flush_mode_t mode) {
  static const char *const names[HAK_FLUSH_MODE_COUNT] = {"auto", "vector", "loop", "uring", "off"};
  return (unsigned)mode < HAK_FLUSH_MODE_COUNT ? names[mode] : "?";
}
