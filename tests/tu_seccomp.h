/* Seccomp filters that make release syscalls fail as an older kernel or a sandbox would (tests and prog_seccomp_exec). */
#ifndef HAK_TU_SECCOMP_H
#define HAK_TU_SECCOMP_H

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#define TU_PIDFD_SELF (-10000)  /* process_madvise's "this thread" sentinel (6.15+) */

/* One rule: syscall nr returns err; with arg k > 0, only when the low 32
 * bits of its argument k-1 equal value (pmadv_self: process_madvise's
 * first argument, an int, is PIDFD_SELF, as on 6.13/6.14 where a real pidfd
 * works). */
typedef struct tu_sc_rule_s {
  int nr;
  int arg;
  uint32_t value;
  int err;
} tu_sc_rule_t;

#define TU_SC_MAX_RULES 8

static inline int tu_sc_errno(const char *name) {
  static const struct { const char *name; int err; } names[] = {
      {"EINVAL", EINVAL}, {"ENOSYS", ENOSYS}, {"EPERM", EPERM}, {"ENOMEM", ENOMEM},
      {"EBADF", EBADF},   {"EACCES", EACCES}, {"EOPNOTSUPP", EOPNOTSUPP}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(name, names[i].name) == 0) return names[i].err;
  return -1;
}

/* "pmadv=EINVAL,uring=ENOSYS,pmadv_self=EBADF" (or "none") into rules.
 * pmadv: process_madvise; pmadv_self: process_madvise(PIDFD_SELF, ...) only;
 * uring: io_uring_setup; uring_enter: io_uring_enter; pidfd_open.
 * Returns the number of rules, or -1 for a malformed spec. */
static inline int tu_sc_parse(const char *spec, tu_sc_rule_t *rules, int max) {
  if (strcmp(spec, "none") == 0) return 0;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", spec);
  int n = 0;
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(tok, '=');
    if (!eq || n == max) return -1;
    *eq = '\0';
    tu_sc_rule_t r = {.err = tu_sc_errno(eq + 1)};
    if (r.err < 0) return -1;
    if (strcmp(tok, "pmadv") == 0) r.nr = SYS_process_madvise;
    else if (strcmp(tok, "pmadv_self") == 0) {
      r.nr = SYS_process_madvise;
      r.arg = 1;
      r.value = (uint32_t)TU_PIDFD_SELF;
    }
    else if (strcmp(tok, "uring") == 0) r.nr = SYS_io_uring_setup;
    else if (strcmp(tok, "uring_enter") == 0) r.nr = SYS_io_uring_enter;
    else if (strcmp(tok, "pidfd_open") == 0) r.nr = SYS_pidfd_open;
    else return -1;
    rules[n++] = r;
  }
  return n;
}

/* Installs the rules for this thread and its future children (exec keeps
 * them). 0, or -1 with errno. */
static inline int tu_sc_install(const tu_sc_rule_t *rules, int n) {
  struct sock_filter f[4 + 5 * TU_SC_MAX_RULES];
  int k = 0;
  if (n > TU_SC_MAX_RULES) { errno = EINVAL; return -1; }
  f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
  f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  for (int i = 0; i < n; i++) {
    unsigned ret = SECCOMP_RET_ERRNO | ((unsigned)rules[i].err & SECCOMP_RET_DATA);
    f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)rules[i].nr, 0,
                                          rules[i].arg > 0 ? 3 : 1);
    if (rules[i].arg > 0) {  /* the low 32 bits of the argument (little endian) */
      f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                            offsetof(struct seccomp_data, args[rules[i].arg - 1]));
      f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, rules[i].value, 0, 1);
    }
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, ret);
  }
  f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  struct sock_fprog prog = {(unsigned short)k, f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}

static inline int tu_sc_install_spec(const char *spec) {
  tu_sc_rule_t rules[TU_SC_MAX_RULES];
  int n = tu_sc_parse(spec, rules, TU_SC_MAX_RULES);
  if (n < 0) { errno = EINVAL; return -1; }
  return tu_sc_install(rules, n);
}

#endif
