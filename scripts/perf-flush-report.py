# perf script -s scripts/perf-flush-report.py [-- --calls] [--json BENCH.json]
#
# Reads a perf.data recorded from bench/vm with its USDT probes
# (sdt_hakmem:scenario_begin/end, micro_begin/end, flush_begin/end) and
# tlb:tlb_flush, and prints TLB flushes by reason per flush mode and per flush
# call. With --json FILE (what bench/vm --json wrote for the same run) it also
# checks its per-mode totals against bench/vm's own --perf counts.
# scripts/perf-record-vm.sh does the whole workflow.
#
# Attribution: a tlb:tlb_flush belongs to a scenario (or micro-benchmark)
# window when it happens, in the recorded process, between the window's begin
# and end probes. It belongs to a flush call when it happens on the thread
# between that call's flush_begin and flush_end, or on another thread of the
# process (io_uring's io-wq worker, a CPU receiving the shootdown) while a
# flush call is open in the process (then to the most recent one).
from __future__ import print_function

import json
import sys

MODES = {0: "floor", 1: "vector", 2: "loop", 3: "uring", 4: "off"}
REASONS = [(3, "local_mm_shootdown"), (4, "remote_send_ipi"), (1, "remote_shootdown"),
           (0, "task_switch"), (None, "other")]
REASON_KEYS = [k for _, k in REASONS]

args = sys.argv[1:]
show_calls = "--calls" in args
bench_json = args[args.index("--json") + 1] if "--json" in args and args.index("--json") + 1 < len(args) else None

windows = {}          # pid -> open window dict
open_calls = {}       # tid -> open flush call
last_call = {}        # pid -> most recent open flush call
totals = {}           # (kind, mode) -> {"windows", reason counts, "total", "calls": [...]}
outside = {"total": 0}


def reason_key(reason):
    for num, key in REASONS:
        if num == reason:
            return key
    return "other"


def mode_name(m):
    return MODES.get(m, "mode%d" % m)


def mode_order(key):
    """loop first (the baseline), then vector, uring, the floor."""
    order = {2: 0, 1: 1, 3: 2, 0: 3}
    return (order.get(key[1], 9), key[1])


def sample_ids(d):
    s = d.get("sample", {})
    return s.get("pid", 0), s.get("tid", 0)


def new_bucket():
    b = {"windows": 0, "total": 0, "calls": [], "ranges": 0}
    for k in REASON_KEYS:
        b[k] = 0
    return b


def bucket(kind, mode):
    return totals.setdefault((kind, mode), new_bucket())


def begin_window(kind, pid, mode):
    windows[pid] = {"kind": kind, "mode": mode}
    bucket(kind, mode)["windows"] += 1


def end_window(pid):
    windows.pop(pid, None)


def trace_begin():
    pass


def sdt_hakmem__scenario_begin(event_name, context, common_cpu, common_secs, common_nsecs,
                               common_pid, common_comm, common_callchain, __probe_ip,
                               arg1, arg2, perf_sample_dict):
    begin_window("scenario", sample_ids(perf_sample_dict)[0], arg1)


def sdt_hakmem__scenario_end(event_name, context, common_cpu, common_secs, common_nsecs,
                             common_pid, common_comm, common_callchain, __probe_ip,
                             arg1, arg2, perf_sample_dict):
    end_window(sample_ids(perf_sample_dict)[0])


def sdt_hakmem__micro_begin(event_name, context, common_cpu, common_secs, common_nsecs,
                            common_pid, common_comm, common_callchain, __probe_ip,
                            arg1, perf_sample_dict):
    begin_window("micro", sample_ids(perf_sample_dict)[0], arg1)


def sdt_hakmem__micro_end(event_name, context, common_cpu, common_secs, common_nsecs,
                          common_pid, common_comm, common_callchain, __probe_ip,
                          arg1, perf_sample_dict):
    end_window(sample_ids(perf_sample_dict)[0])


def sdt_hakmem__flush_begin(event_name, context, common_cpu, common_secs, common_nsecs,
                            common_pid, common_comm, common_callchain, __probe_ip,
                            arg1, arg2, arg3, perf_sample_dict):
    pid, tid = sample_ids(perf_sample_dict)
    call = {"mode": arg3, "ranges": arg1, "bytes": arg2, "total": 0, "tid": tid, "pid": pid,
            "t": common_secs + common_nsecs / 1e9, "window": windows.get(pid)}
    for k in REASON_KEYS:
        call[k] = 0
    open_calls[tid] = call
    last_call[pid] = call


def sdt_hakmem__flush_end(event_name, context, common_cpu, common_secs, common_nsecs,
                          common_pid, common_comm, common_callchain, __probe_ip,
                          arg1, arg2, arg3, arg4, perf_sample_dict):
    pid, tid = sample_ids(perf_sample_dict)
    call = open_calls.pop(tid, None)
    if call is None:
        return
    if last_call.get(pid) is call:
        others = [c for c in open_calls.values() if c["pid"] == pid]
        last_call[pid] = others[-1] if others else None
    call["syscalls"] = arg4
    call["us"] = (common_secs + common_nsecs / 1e9 - call["t"]) * 1e6
    w = call["window"]
    if w is not None:
        b = bucket(w["kind"], w["mode"])
        b["calls"].append(call)
        b["ranges"] += arg1


def tlb__tlb_flush(event_name, context, common_cpu, common_secs, common_nsecs,
                   common_pid, common_comm, common_callchain, reason, pages,
                   perf_sample_dict):
    pid, tid = sample_ids(perf_sample_dict)
    key = reason_key(reason)
    w = windows.get(pid)
    if w is None:
        outside["total"] += 1
    else:
        b = bucket(w["kind"], w["mode"])
        b["total"] += 1
        b[key] += 1
    call = open_calls.get(tid) or last_call.get(pid)
    if call is not None:
        call["total"] += 1
        call[key] += 1


def trace_unhandled(event_name, context, event_fields_dict, perf_sample_dict):
    pass


def row(cols, widths):
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))


def print_modes(kind, title):
    keys = sorted((k for k in totals if k[0] == kind), key=mode_order)
    if not keys:
        return
    print(title)
    widths = [8, 7, 10] + [12] * 5 + [11, 14]
    print(row(["mode", "windows", "tlb_flush", "local_mm", "ipi_send", "remote_recv",
               "task_switch", "other", "flush_calls", "tlb/flush_call"], widths))
    for key in keys:
        b = totals[key]
        n = len(b["calls"])
        per = "%.1f" % (b["total"] / float(n)) if n else "-"
        print(row([mode_name(key[1]), b["windows"], b["total"]] + [b[k] for k in REASON_KEYS] +
                  [n, per], widths))
    print()


def print_calls():
    keys = sorted((k for k in totals if k[0] == "scenario" and totals[k]["calls"]), key=mode_order)
    if not keys:
        return
    print("Per flush call (sdt_hakmem:flush_begin..flush_end inside the scenarios): mean [min..max]")
    widths = [8, 6, 11, 18, 18, 18, 14, 12]
    print(row(["mode", "calls", "ranges", "tlb_flush", "local_mm", "ipi_send", "remote_recv",
               "us"], widths))
    for key in keys:
        calls = totals[key]["calls"]

        def stat(field):
            v = [c[field] for c in calls]
            return "%.1f [%s..%s]" % (sum(v) / float(len(v)), min(v), max(v))
        print(row([mode_name(key[1]), len(calls), "%.1f" % (sum(c["ranges"] for c in calls) / float(len(calls))),
                   stat("total"), stat("local_mm_shootdown"), stat("remote_send_ipi"),
                   "%.1f" % (sum(c["remote_shootdown"] for c in calls) / float(len(calls))),
                   "%.0f" % (sum(c["us"] for c in calls) / float(len(calls)))], widths))
    print()
    if show_calls:
        print("Every flush call:")
        widths = [8, 8, 7, 9, 9, 9, 9, 11]
        print(row(["mode", "tid", "ranges", "syscalls", "tlb", "local_mm", "ipi_send", "us"], widths))
        for key in keys:
            for c in totals[key]["calls"]:
                print(row([mode_name(c["mode"]), c["tid"], c["ranges"], c.get("syscalls", "-"),
                           c["total"], c["local_mm_shootdown"], c["remote_send_ipi"],
                           "%.0f" % c["us"]], widths))
        print()


def compare_with_bench(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (IOError, ValueError) as e:
        print("cannot read %s: %s" % (path, e))
        return
    bench = {}
    for r in data.get("runs", []):
        v = r.get("events", {}).get("tlb:tlb_flush")
        if v is not None:
            bench[r["flush"]] = bench.get(r["flush"], 0) + v
    if not bench:
        print("bench/vm counted no tlb:tlb_flush (was it run with --perf, as root?)")
        return
    print("Agreement with bench/vm --perf (%s), tlb:tlb_flush per mode, all repetitions:" % path)
    worst = 0.0
    for mode, b in sorted(bench.items()):
        p = sum(t["total"] for k, t in totals.items() if k[0] == "scenario" and mode_name(k[1]) == mode)
        diff = abs(p - b) / float(max(b, 1)) * 100
        worst = max(worst, diff)
        print("  %-7s perf script %9d   bench/vm %9d   %.2f%% apart" % (mode, p, b, diff))
    print("  %s: largest difference %.2f%% (limit 2%%)" % ("AGREE" if worst <= 2.0 else "DISAGREE", worst))


def trace_end():
    if not totals:
        print("no sdt_hakmem:scenario_begin/micro_begin probe in this perf.data:")
        print("  perf probe -x ./bench/vm 'sdt_hakmem:*' and record them with -e 'sdt_hakmem:*'")
        return
    print_modes("scenario", "TLB flushes by reason per flush mode (bench/vm scenario windows)")
    print_calls()
    print_modes("micro", "TLB flushes by reason in the flush micro-benchmark (all rounds)")
    print("tlb:tlb_flush outside the windows (start-up, warm-up): %d" % outside["total"])
    if bench_json:
        print()
        compare_with_bench(bench_json)
