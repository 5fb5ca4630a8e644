/* tracefs: find it (or mount it when root) and read tracepoint ids and
 * field offsets from it, so that hperf never hard-codes what the running
 * kernel describes itself. */
#include "hperf.h"

#include <errno.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static char tracefs_dir[256];

static int has_events(const char *dir) {
  char path[300];
  struct stat st;
  snprintf(path, sizeof path, "%s/events", dir);
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A tracefs already mounted somewhere (it may be under debugfs too). */
static int find_mounted(void) {
  FILE *f = setmntent("/proc/mounts", "r");
  struct mntent *m;
  int found = 0;
  if (!f) return 0;
  while (!found && (m = getmntent(f)) != NULL) {
    if (strcmp(m->mnt_type, "tracefs") == 0 && has_events(m->mnt_dir)) {
      snprintf(tracefs_dir, sizeof tracefs_dir, "%s", m->mnt_dir);
      found = 1;
    }
  }
  endmntent(f);
  return found;
}

const char *hperf_tracefs(void) {
  static const char *const usual = "/sys/kernel/tracing";
  if (tracefs_dir[0]) return tracefs_dir;
  if (find_mounted()) return tracefs_dir;
  if (geteuid() != 0) { errno = EACCES; return NULL; }
  /* Root and nothing mounted: mount it where the kernel documents it. */
  if (mount("nodev", usual, "tracefs", 0, NULL) != 0 && errno != EBUSY) return NULL;
  if (!has_events(usual)) { errno = ENOENT; return NULL; }
  snprintf(tracefs_dir, sizeof tracefs_dir, "%s", usual);
  return tracefs_dir;
}

static FILE *open_event_file(const char *sys, const char *name, const char *file) {
  char path[512];
  const char *dir = hperf_tracefs();
  if (!dir) return NULL;
  snprintf(path, sizeof path, "%s/events/%s/%s/%s", dir, sys, name, file);
  return fopen(path, "r");
}

long long hperf_tracepoint_id(const char *sys, const char *name) {
  FILE *f = open_event_file(sys, name, "id");
  long long id = -1;
  if (!f) return -errno;
  if (fscanf(f, "%lld", &id) != 1) id = -EINVAL;
  fclose(f);
  return id;
}

/* Lines look like "\tfield:int reason;\toffset:8;\tsize:4;\tsigned:1;". */
int hperf_tracepoint_field(const char *sys, const char *event, const char *field,
                           int *offset, int *size) {
  FILE *f = open_event_file(sys, event, "format");
  char line[512];
  int rc = -ENOENT;
  if (!f) return -errno;
  while (rc != 0 && fgets(line, sizeof line, f)) {
    char *decl = strstr(line, "field:");
    char *semi = decl ? strchr(decl, ';') : NULL;
    char *off = strstr(line, "offset:");
    char *sz = strstr(line, "size:");
    if (!decl || !semi || !off || !sz) continue;
    /* The field name is the last word of the declaration, before the ';'. */
    char *p = semi;
    while (p > decl && p[-1] != ' ' && p[-1] != ':') p--;
    if ((size_t)(semi - p) != strlen(field) || strncmp(p, field, semi - p) != 0) continue;
    *offset = atoi(off + 7);
    *size = atoi(sz + 5);
    rc = 0;
  }
  fclose(f);
  return rc;
}
