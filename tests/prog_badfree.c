/* Frees a pointer hakmem must refuse (argv[1]: double, stack, mmap, mmap2m, interior, double32, double100k, interior64, released, tagged48, tagged64, high47); prints it first. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "hakmem.h"

/* The pointer goes to stdout before the bad free, so the test can look for it
 * in the message on stderr. */
static void announce(const void *p) {
  printf("ptr=%p\n", p);
  fflush(stdout);
}

/* p, q, free(p), free(q), free(p): the block freed twice is not the last one freed. */
static void double_free_not_last(size_t n) {
  void *p = hak_malloc(n), *q = hak_malloc(n);
  if (!p || !q) exit(2);
  memset(p, 1, n);
  memset(q, 2, n);
  announce(p);
  hak_free(p);
  hak_free(q);
  hak_free(p);
}

/* A thread that has never allocated frees what it is given. */
static void *free_in_new_thread(void *p) {
  hak_free(p);
  return NULL;
}

/* A pointer into a small page that emptied and went back to its segment
 * (the segment stays mapped: other pages are in use), freed by a thread
 * that never allocated. */
static void free_into_released_page(void) {
  puts("released page:");  /* stdout's buffer is allocated now, not after the search */
  fflush(stdout);
  void *keep = hak_malloc(48);  /* another class keeps the segment */
  enum { N = 5 * 64 };          /* five 64 KiB pages of 1 KiB blocks */
  static void *v[N];
  for (int i = 0; i < N; i++) {
    v[i] = hak_malloc(1024);
    if (!v[i]) exit(2);
    memset(v[i], 3, 1024);
  }
  for (int i = 0; i < N; i++) hak_free(v[i]);
  void *gone = NULL;
  for (int i = 0; i < N && !gone; i++)
    if (hak_usable_size(v[i]) == 0) gone = v[i];  /* its page is no longer in use */
  if (!gone || !keep) {
    puts("no released page");
    exit(2);
  }
  announce(gone);
  pthread_t t;
  if (pthread_create(&t, NULL, free_in_new_thread, gone) != 0) exit(2);
  pthread_join(t, NULL);
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
  } else if (strcmp(what, "double32") == 0) {
    double_free_not_last(32);
  } else if (strcmp(what, "double100k") == 0) {
    double_free_not_last(100000);
  } else if (strcmp(what, "interior64") == 0) {
    char *p = hak_malloc(64);  /* a live small block, freed at p + 16 */
    if (!p) return 2;
    memset(p, 4, 64);
    announce(p + 16);
    hak_free(p + 16);
  } else if (strcmp(what, "released") == 0) {
    free_into_released_page();
  } else if (strncmp(what, "tagged", 6) == 0 || strcmp(what, "high47") == 0) {
    /* A live block's address with high bits set (a tag left on, or a wild
     * value): no user-space address, but its low 47 bits name the block. */
    size_t n = what[0] == 'h' ? 48 : (size_t)atoi(what + 6);
    char *p = hak_malloc(n);
    if (!p) return 2;
    memset(p, 5, n);
    uintptr_t bad = what[0] == 'h' ? (uintptr_t)p + (1ul << 47) : (uintptr_t)p | (1ul << 63);
    announce((void *)bad);
    hak_free((void *)bad);
  } else {
    return 2;
  }
  puts("survived");
  return 0;
}
