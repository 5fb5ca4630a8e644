#!/usr/bin/env bash
# The perf script workflow for bench/vm, in one command:
#   1. perf probe: add the USDT probes of bench/vm (its scenario probes and the
#      library's flush probes, linked in statically) as sdt_hakmem:* events;
#   2. perf record: bench/vm --perf --json with those probes and tlb:tlb_flush;
#   3. perf script -s scripts/perf-flush-report.py: TLB flushes by reason per
#      flush mode and per flush call, checked against bench/vm's own counts.
# usage: sudo scripts/perf-record-vm.sh [-o DIR] [--calls] [-- BENCH/VM OPTIONS]
#   -o DIR    where perf.data, vm.json, vm.txt and report.txt go (default bench/out/perf)
#   --calls   also list every flush call
# Example: sudo scripts/perf-record-vm.sh -- --quick --flush=all
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
out="$top/bench/out/perf"
report_args=()
while [ $# -gt 0 ]; do
	case "$1" in
	-o) out=$2; shift 2 ;;
	--calls) report_args+=(--calls); shift ;;
	--) shift; break ;;
	-h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) break ;;
	esac
done

say() { printf 'perf-record-vm: %s\n' "$*" >&2; }
[ "$(id -u)" -eq 0 ] || { say "needs root (perf probe, tracepoints): sudo $0 $*"; exit 77; }
command -v perf >/dev/null || { say "perf not found (Debian package linux-perf)"; exit 77; }
bench="$top/bench/vm"
[ -x "$bench" ] || { say "$bench not built: run make"; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)

# perf probe reads and writes tracefs.
if [ ! -d /sys/kernel/tracing/events ]; then
	mount -t tracefs nodev /sys/kernel/tracing
fi

# Probes are tied to file offsets: drop stale ones (an older build) first.
cleanup() { perf probe -q -d 'sdt_hakmem:*' >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
say "perf probe -x bench/vm 'sdt_hakmem:*'"
perf probe -q -x "$bench" 'sdt_hakmem:*'

events=(-e sdt_hakmem:scenario_begin -e sdt_hakmem:scenario_end
        -e sdt_hakmem:micro_begin -e sdt_hakmem:micro_end
        -e sdt_hakmem:flush_begin -e sdt_hakmem:flush_end -e tlb:tlb_flush)
say "perf record ${events[*]} -- bench/vm --perf --json $out/vm.json $*"
# A large buffer: every tlb:tlb_flush is recorded, none may be lost.
perf record -q -m 16M -o "$out/perf.data" "${events[@]}" -- \
	"$bench" --perf --json "$out/vm.json" "$@" > "$out/vm.txt" 2> "$out/record.log" ||
	{ say "perf record failed:"; cat "$out/record.log" >&2; exit 1; }
cat "$out/vm.txt"
if grep -qi 'lost' "$out/record.log"; then
	say "perf record lost events:"; grep -i lost "$out/record.log" >&2
fi

say "perf script -s scripts/perf-flush-report.py"
echo
perf script -i "$out/perf.data" -s "$top/scripts/perf-flush-report.py" -- \
	--json "$out/vm.json" "${report_args[@]}" 2> "$out/script.log" | tee "$out/report.txt"
grep -q '^  AGREE' "$out/report.txt"
