#!/usr/bin/env bash
# Runs the whole Check suite once per simulated older kernel: a seccomp filter
# (tests/bin/prog_seccomp_exec, spec as in tests/tu_seccomp.h) makes
# process_madvise and/or io_uring_setup fail. Every suite must pass, skipping
# what needs the missing call. Arguments: filter specs (default: all below).
# CK_RUN_SUITE / CK_RUN_CASE narrow each run as usual. Takes minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
runner=tests/bin/check_hakmem
exec_=tests/bin/prog_seccomp_exec
[ -x "$runner" ] && [ -x "$exec_" ] || { echo "build first: make all $runner $exec_" >&2; exit 2; }
specs=("$@")
[ ${#specs[@]} -gt 0 ] || specs=(pmadv=EINVAL pmadv=ENOSYS pmadv=EPERM pmadv=ENOMEM
                                 uring=ENOSYS uring=EPERM pmadv=ENOSYS,uring=ENOSYS pmadv_self=EBADF)
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-120}
export CK_VERBOSITY=${CK_VERBOSITY:-normal}
export HAK_TEST_NESTED=1   # torture_oldkernel does not recurse
status=0
summary=()
for spec in "${specs[@]}"; do
  log=$(mktemp)
  start=$(date +%s)
  "$exec_" "$spec" "$runner" >"$log" 2>&1
  rc=$?
  secs=$(($(date +%s) - start))
  line=$(grep -E '^[0-9]+%: Checks: ' "$log" | tail -n1)
  skips=$(grep -c '^SKIP:' "$log" || true)
  echo "== $spec: ${line:-no summary} ($skips skipped, ${secs}s)"
  grep -E ':[EF]:' "$log" | sed 's/^/   /'
  summary+=("$spec: ${line:-no summary}, $skips skipped, ${secs}s")
  [ "$rc" -eq 0 ] || status=1
  rm -f "$log"
done
echo
printf '%s\n' "${summary[@]}"
exit $status
