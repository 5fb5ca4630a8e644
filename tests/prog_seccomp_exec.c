/* Installs the seccomp filter argv[1] (tu_seccomp.h spec, e.g. "pmadv=EINVAL,uring=ENOSYS") then execs argv[2..]. */
#include <stdio.h>
#include <unistd.h>

#include "tu_seccomp.h"

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s SPEC PROGRAM [ARG...]\n"
                    "  SPEC: none, or rule=ERRNO[,...] with rule pmadv, pmadv_self, uring,\n"
                    "        uring_enter, pidfd_open and ERRNO EINVAL, ENOSYS, EPERM, ENOMEM, EBADF\n",
            argv[0]);
    return 2;
  }
  if (tu_sc_install_spec(argv[1]) != 0) {
    perror("seccomp filter");
    return 125;
  }
  execvp(argv[2], argv + 2);
  perror(argv[2]);
  return 127;
}
