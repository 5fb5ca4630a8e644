#!/usr/bin/env python3
"""Where a program's resident memory sits at its peak: /proc/PID/smaps sampled.

    bench/peaksmaps.py [--pid-of NAME] [--every MS] [--out FILE] -- CMD ARGS...

Runs CMD (the environment as given: set LD_PRELOAD yourself), reads
/proc/PID/smaps_rollup every --every ms (default 10) and, whenever the
anonymous RSS is the highest seen so far, keeps a copy of the whole
/proc/PID/smaps. At the end it prints that peak's anonymous mappings grouped
by size (and which carry the THP hint, `hg` in VmFlags), their Rss,
AnonHugePages and the largest ones, and writes the raw smaps to --out.
--pid-of TEXT follows the descendants whose command line contains TEXT instead
of CMD itself (git clone: index-pack, pack-objects). See bench/README.md.
"""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from realprogs import process_tree  # noqa: E402


def children_of(root):
    """[(pid, command line)] of root's descendants."""
    out = []
    for pid in process_tree(root)[1:]:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                out.append((pid, f.read().replace(b"\0", b" ").decode(errors="replace")))
        except OSError:
            pass
    return out


def anon_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Anonymous:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def parse(smaps):
    """[(start, end, name, {field: kib}, flags)] for every mapping."""
    maps, cur = [], None
    for line in smaps.splitlines():
        parts = line.split()
        if not parts:
            continue
        if "-" in parts[0] and not parts[0].endswith(":"):
            a, b = parts[0].split("-")
            cur = [int(a, 16), int(b, 16), parts[5] if len(parts) > 5 else "", {}, ""]
            maps.append(cur)
        elif parts[0] == "VmFlags:":
            cur[4] = " ".join(parts[1:])
        elif parts[0].endswith(":") and len(parts) >= 2 and parts[1].isdigit():
            cur[3][parts[0][:-1]] = int(parts[1])
    return maps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--every", type=float, default=10)
    ap.add_argument("--pid-of")
    ap.add_argument("--out", default="/tmp/peak-smaps.txt")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        sys.exit("no command")
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    best, best_smaps = -1, ""
    while p.poll() is None:
        pids = [p.pid]
        if a.pid_of:
            pids = [c for c, comm in children_of(p.pid) if a.pid_of in comm]
        for pid in pids:
            k = anon_kib(pid)
            if k > best:
                try:
                    with open("/proc/%d/smaps" % pid) as f:
                        s = f.read()
                except OSError:
                    continue
                best, best_smaps = k, s
        time.sleep(a.every / 1000)
    with open(a.out, "w") as f:
        f.write(best_smaps)
    maps = parse(best_smaps)
    anon = [m for m in maps if m[2] in ("", "[heap]") or m[2].startswith("[anon")]
    tot = lambda ms, k: sum(m[3].get(k, 0) for m in ms) / 1024
    print("peak anonymous RSS %.1f MiB (exit %d); raw smaps in %s" % (best / 1024, p.returncode, a.out))
    print("all mappings: Rss %.1f MiB, Anonymous %.1f, AnonHugePages %.1f, file-backed Rss %.1f" % (
        tot(maps, "Rss"), tot(maps, "Anonymous"), tot(maps, "AnonHugePages"),
        tot([m for m in maps if m not in anon], "Rss")))
    groups = {}
    for m in anon:
        size = (m[1] - m[0]) >> 20
        key = ("[heap]" if m[2] == "[heap]" else
               "< 1 MiB" if size < 1 else "1-3 MiB" if size < 4 else
               "4 MiB" if size == 4 else "5-63 MiB" if size < 64 else ">= 64 MiB")
        key += " hg" if " hg" in " " + m[4] else ""
        g = groups.setdefault(key, [0, 0, 0, 0])
        g[0] += 1
        g[1] += (m[1] - m[0]) >> 10
        g[2] += m[3].get("Rss", 0)
        g[3] += m[3].get("AnonHugePages", 0)
    print("\n| anonymous mappings | count | size (MiB) | Rss (MiB) | AnonHugePages (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for k in sorted(groups):
        g = groups[k]
        print("| %s | %d | %.1f | %.1f | %.1f |" % (k, g[0], g[1] / 1024, g[2] / 1024, g[3] / 1024))
    print("\nlargest anonymous mappings by Rss:")
    for m in sorted(anon, key=lambda m: -m[3].get("Rss", 0))[:8]:
        print("  %x-%x %8.1f MiB size %8.1f MiB rss %8.1f MiB thp  %s" % (
            m[0], m[1], (m[1] - m[0]) / 2 ** 20, m[3].get("Rss", 0) / 1024,
            m[3].get("AnonHugePages", 0) / 1024, m[4]))


if __name__ == "__main__":
    main()
