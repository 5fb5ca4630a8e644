/* Frees a pointer hakmem must refuse (argv[1]: double, stack, mmap, mmap2m, interior); prints it first. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "hakmem.h"

/* The pointer goes to stdout before the bad free, so the test can look for it
 * in the message on stderr. */
static void announce(const void *p) {
  printf("ptr=%p\n", p);
  fflush(stdout);
}

int main(int argc, char **argv) {
  const char *what = argc > 1 ? argv[1] : "double";
  if (strcmp(what, "double") == 0) {
    void *p = hak_malloc(4 << 20);
    if (!p) return 2;
    memset(p, 1, 4096);
    announce(p);
    hak_free(p);
    hak_free(p);
  } else if (strcmp(what, "stack") == 0) {
    char buf[64];
    memset(buf, 0, sizeof buf);
    announce(buf + 16);
    hak_free(buf + 16);
  } else if (strcmp(what, "mmap") == 0) {
    void *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 2;
    announce(m);
    hak_free(m);
  } else if (strcmp(what, "interior") == 0) {
    char *p = hak_malloc(4 << 20);  /* a page inside a live large block */
    if (!p) return 2;
    p[0] = 1;
    announce(p + 4096);
    hak_free(p + 4096);
  } else if (strcmp(what, "mmap2m") == 0) {
    /* A 2 MiB-aligned address looks most like a large hakmem block. */
    char *m = mmap(NULL, 8 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 2;
    char *a = (char *)(((unsigned long)m + (2 << 20) - 1) & ~((2UL << 20) - 1));
    memset(a, 0, 4096);
    announce(a);
    hak_free(a);
  } else {
    return 2;
  }
  puts("survived");
  return 0;
}
