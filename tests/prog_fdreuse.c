/* Closes every fd >= 3 as daemons do, then opens argv[2] with the number of the library's fd (stats report copy of stderr, io_uring ring, pidfd): "stats" writes and exits; "fork" forks, child and parent write, the parent reads back. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hakmem.h"

/* The fd whose /proc/self/fd link reads name, or -1. */
static int find_fd(const char *name) {
  for (int fd = 3; fd < 1024; fd++) {
    char path[64], link[128];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n <= 0) continue;
    link[n] = '\0';
    if (strcmp(link, name) == 0) return fd;
  }
  return -1;
}

/* A close-on-exec copy of stderr at 3 or above: the library's own copy for
 * the exit report (inherited copies have no FD_CLOEXEC), or -1. */
static int find_stderr_copy(void) {
  struct stat e, s;
  if (fstat(2, &e) != 0) return -1;
  for (int fd = 3; fd < 1024; fd++) {
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0 || !(fl & FD_CLOEXEC) || fstat(fd, &s) != 0) continue;
    if (s.st_dev == e.st_dev && s.st_ino == e.st_ino) return fd;
  }
  return -1;
}

static void close_from_3(void) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 3u, ~0u, 0u) == 0) return;
#endif
  long max = sysconf(_SC_OPEN_MAX);
  for (long fd = 3; fd < (max > 0 ? max : 1024); fd++) close((int)fd);
}

static void churn(void) {  /* allocator work that flushes through the backend */
  for (int i = 0; i < 4; i++) {
    void *p = malloc(1 << 20);
    if (!p) exit(2);
    memset(p, i, 1 << 20);
    __asm__ volatile("" : : "r"(p) : "memory");  /* keep the memset and the block */
    free(p);
  }
  hak_flush();
}

static int write_str(int fd, const char *s) {
  return write(fd, s, strlen(s)) == (ssize_t)strlen(s) ? 0 : -1;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  const char *mode = argv[1], *path = argv[2];
  churn();  /* the backend is set up and in use */
  int bfd;
  if (strcmp(mode, "stats") == 0) {
    bfd = find_stderr_copy();
  } else {
    bfd = find_fd("anon_inode:[io_uring]");
    if (bfd < 0) bfd = find_fd("anon_inode:[pidfd]");
  }
  if (strcmp(mode, "fork") == 0 && bfd < 0) {
    puts("no backend fd");
    return 77;
  }
  close_from_3();
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return 2;
  if (bfd >= 0 && fd != bfd) {  /* the program's file takes the backend's old number */
    if (dup2(fd, bfd) != bfd) return 2;
    close(fd);
    fd = bfd;
  }
  printf("file_fd=%d library_fd=%d\n", fd, bfd);
  fflush(stdout);

  if (strcmp(mode, "stats") == 0) {
    write_str(fd, "program data\n");
    return 0;  /* the exit report goes wherever the library decided */
  }
  if (strcmp(mode, "fork") != 0) return 2;
  if (write_str(fd, "before\n") != 0) return 2;
  churn();
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return 2;
  if (pid == 0) {
    if (write_str(fd, "child\n") != 0) {
      fprintf(stderr, "child: write to the program's fd %d: %m\n", fd);
      _exit(3);
    }
    churn();
    exit(0);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    printf("child status 0x%x\n", st);
    return 4;
  }
  if (write_str(fd, "parent\n") != 0) {
    printf("parent: write: %m\n");
    return 5;
  }
  churn();
  char buf[256];
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  buf[n > 0 ? n : 0] = '\0';
  printf("content=[%s]\n", buf);
  return strcmp(buf, "before\nchild\nparent\n") == 0 ? 0 : 6;
}
