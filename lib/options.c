/* Options: the table of HAKMEM_* settings (internal.h's HAK_OPTIONS), their
 * parsing, and their current values. Read from the environment at start,
 * settable at run time; this file only stores them: the owner of each
 * option reacts to a change (control.c tells it). A malformed value is
 * reported and the default kept; a number out of range is clamped and said so. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>

#include "internal.h"

typedef enum { MODE, ADVICE, POLICY, COUNT, NUM, SIZE, MS, STATS, PATH, BOOL } kind_t;

typedef struct {
  const char *name;  /* without the HAKMEM_ prefix */
  kind_t kind;
  long long def, min, max;
} desc_t;

static const desc_t descs[HAK_OPT_COUNT] = {
#define HAK_OPT_DESC_(name, kind, def, lo, hi) {#name, kind, def, lo, hi},
    HAK_OPTIONS(HAK_OPT_DESC_)
#undef HAK_OPT_DESC_
};

_Atomic long long _hak_opt_v[HAK_OPT_COUNT] = {
#define HAK_OPT_DEF_(name, kind, def, lo, hi) [HAK_OPT_##name] = def,
    HAK_OPTIONS(HAK_OPT_DEF_)
#undef HAK_OPT_DEF_
};

static pthread_mutex_t path_lock = PTHREAD_MUTEX_INITIALIZER;
static char stats_file[256];
static bool in_env[HAK_OPT_COUNT];

_Static_assert(MADV_DONTNEED == 4, "HAK_OPTIONS's ADVICE default");

int _hak_option_find(const char *name) {
  if (!name) return -1;
  if (strncmp(name, "HAKMEM_", 7) == 0) name += 7;
  for (int i = 0; i < HAK_OPT_COUNT; i++)
    if (strcasecmp(descs[i].name, name) == 0) return i;
  return -1;
}

/* ---- parsing ---------------------------------------------------------------*/

/* "64", "64k", "4M", "1G" (binary units, optional trailing B/iB). */
static bool parse_size(const char *s, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || v < 0) return false;
  long long mul = 1;
  switch (*end) {
  case 'k': case 'K': mul = 1LL << 10; end++; break;
  case 'm': case 'M': mul = 1LL << 20; end++; break;
  case 'g': case 'G': mul = 1LL << 30; end++; break;
  default: break;
  }
  if (mul > 1 && (*end == 'i' || *end == 'I')) end++;
  if (mul > 1 && (*end == 'b' || *end == 'B')) end++;
  if (*end != '\0' || v > LLONG_MAX / mul) return false;
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

static bool parse_word(kind_t kind, const char *s, long long *out) {
  switch (kind) {
  case MODE:
    for (int m = 0; m < HAK_FLUSH_MODE_COUNT; m++)
      if (strcasecmp(s, hak_flush_mode_name((hak_flush_mode_t)m)) == 0) { *out = m; return true; }
    return false;
  case ADVICE:
    if (!strcasecmp(s, "dontneed")) *out = MADV_DONTNEED;
    else if (!strcasecmp(s, "free")) *out = MADV_FREE;
    else return false;
    return true;
  case POLICY:
    if (!strcasecmp(s, "fixed") || !strcmp(s, "0")) *out = 0;
    else if (!strcasecmp(s, "adaptive") || !strcmp(s, "1")) *out = 1;
    else return false;
    return true;
  case STATS:
    if (!strcmp(s, "0") || !strcasecmp(s, "off") || !strcasecmp(s, "no")) *out = 0;
    else if (!strcmp(s, "1") || !strcasecmp(s, "on") || !strcasecmp(s, "yes") || !strcasecmp(s, "table")) *out = 1;
    else if (!strcasecmp(s, "json")) *out = 2;
    else return false;
    return true;
  case SIZE:
    return parse_size(s, out);
  default:
    return parse_int(s, out);
  }
}

bool _hak_option_parse(int id, const char *value) {
  const desc_t *d = &descs[id];
  if (d->kind == PATH) {
    if (strlen(value) >= sizeof stats_file) return false;
    pthread_mutex_lock(&path_lock);
    strcpy(stats_file, value);
    pthread_mutex_unlock(&path_lock);
    atomic_store(&_hak_opt_v[id], value[0] != '\0');
    return true;
  }
  long long v;
  if (!parse_word(d->kind, value, &v)) return false;
  if (v < d->min || v > d->max) {
    long long c = v < d->min ? d->min : d->max;
    _hak_warn("HAKMEM_%s=%s is out of range [%lld, %lld]; using %lld\n", d->name, value, d->min,
              d->max, c);
    v = c;
  }
  atomic_store(&_hak_opt_v[id], v);
  return true;
}

void _hak_option_store(int id, long long value) { atomic_store(&_hak_opt_v[id], value); }

bool _hak_option_from_env(int id) { return in_env[id]; }

void _hak_option_stats_file(char *buf, size_t n) {
  pthread_mutex_lock(&path_lock);
  strncpy(buf, stats_file, n - 1);
  buf[n - 1] = '\0';
  pthread_mutex_unlock(&path_lock);
}

void _hak_options_init(void) {
  char env[64];
  for (int i = 0; i < HAK_OPT_COUNT; i++) {
    strcpy(env, "HAKMEM_");
    strcat(env, descs[i].name);
    const char *value = getenv(env);
    if (!value) continue;
    in_env[i] = _hak_option_parse(i, value);  /* a malformed value is as good as none */
    if (!in_env[i]) _hak_warn("%s=\"%s\" is not valid; using the default\n", env, value);
  }
}

const char *hak_flush_mode_name(hak_flush_mode_t mode) {
  static const char *const names[HAK_FLUSH_MODE_COUNT] = {"auto", "vector", "loop", "uring", "off"};
  return (unsigned)mode < HAK_FLUSH_MODE_COUNT ? names[mode] : "?";
}
