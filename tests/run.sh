#!/usr/bin/env bash
# Runs the Check runner from the repository root, then prints one closing line:
# "N passed, N failed, N skipped". Tests that skip print a line starting "SKIP:".
set -uo pipefail
cd "$(dirname "$0")/.."
runner=${1:-tests/bin/check_hakmem}
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-120}
export CK_VERBOSITY=${CK_VERBOSITY:-normal}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$runner" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
summary=$(grep -E '^[0-9]+%: Checks: ' "$log" | tail -n1)
checks=$(sed -nE 's/.*Checks: ([0-9]+), Failures: ([0-9]+), Errors: ([0-9]+).*/\1 \2 \3/p' <<<"$summary")
read -r n f e <<<"${checks:-0 0 0}"
skipped=$(grep -c '^SKIP:' "$log" || true)
echo
grep '^SKIP:' "$log" | sort | uniq || true
failed=$((f + e))
echo "$((n - failed)) passed, $failed failed, $skipped skipped"
[ "$n" -gt 0 ] || { echo "no test ran" >&2; exit 1; }
exit $rc
