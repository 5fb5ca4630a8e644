#!/usr/bin/env python3
"""Peak RSS and wall time of real programs (sqlite3, git) under each allocator.

Each run is one child process started with LD_PRELOAD (none for glibc); the
runner waits for it with wait4(2) and reads ru_maxrss (the peak RSS of the
largest process of the run: the child, or its largest descendant for git clone,
which runs upload-pack, pack-objects and index-pack). ru_maxrss counts every
resident page, file-backed ones too (git maps its pack files), so the runner
also samples /proc/PID/status of the run's process tree every --sample-ms and
keeps the largest RssAnon of one process: the part an allocator is responsible
for. Rounds are interleaved (round r runs every scenario under every allocator,
the allocator order rotated by r) and the report gives medians.

    bench/realprogs.py                       # 3 rounds, every scenario, every allocator
    bench/realprogs.py --runs 5 --scenarios sqlite-mem,git-clone
    bench/realprogs.py --allocators glibc,hakmem,hakmem:HAKMEM_POLICY=fixed
    bench/realprogs.py --repo /path/to/repo.git --rows 1500000 --csv out.csv

An allocator is a name (glibc, hakmem, mimalloc, jemalloc, tcmalloc), with
optionally @PATH (another build of that library, e.g. hakmem@/tmp/old.so) and
:VAR=VALUE settings (comma-free), as in bench/compare. Inputs (the CSV
for sqlite-import, the generated SQL) are written once into --workdir.
See bench/README.md.
"""
import argparse
import csv
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LIBDIR = "/usr/lib/x86_64-linux-gnu"
PRELOAD = {
    "glibc": None,
    "hakmem": os.path.join(ROOT, "lib", "libhakmem.so"),
    "mimalloc": os.path.join(LIBDIR, "libmimalloc.so.2"),
    "jemalloc": os.path.join(LIBDIR, "libjemalloc.so.2"),
    "tcmalloc": os.path.join(LIBDIR, "libtcmalloc_minimal.so.4"),
}


def write_inputs(wd, rows):
    """The CSV for sqlite-import and the SQL scripts, written once per row count."""
    os.makedirs(wd, exist_ok=True)
    csvp = os.path.join(wd, "rows-%d.csv" % rows)
    if not os.path.exists(csvp):
        r = random.Random(1)
        tmp = csvp + ".tmp"
        with open(tmp, "w") as f:
            for i in range(1, rows + 1):
                f.write('%d,name-%08d-%x,%.3f,%d,"%s"\n' % (
                    i, r.randrange(10 ** 8), r.getrandbits(32), r.random() * 1000,
                    i % 977, "x" * r.randrange(10, 60)))
        os.rename(tmp, csvp)
    mem = os.path.join(wd, "sqlite-mem-%d.sql" % rows)
    with open(mem, "w") as f:
        f.write(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, val REAL, grp INTEGER);\n"
            "WITH RECURSIVE c(x) AS (VALUES(1) UNION ALL SELECT x+1 FROM c WHERE x<%d)\n"
            "INSERT INTO t SELECT x, printf('name-%%08d-%%s', x, hex(randomblob(8))), "
            "x*1.5, x%%1000 FROM c;\n"
            "CREATE INDEX t_name ON t(name);\n"
            "CREATE INDEX t_grp ON t(grp, val);\n"
            "SELECT count(*) FROM t;\n" % rows)
    imp = os.path.join(wd, "sqlite-import-%d.sql" % rows)
    with open(imp, "w") as f:
        f.write(
            "PRAGMA journal_mode=WAL;\n"
            "PRAGMA cache_size=-131072;\n"
            "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, val REAL, grp INTEGER, note TEXT);\n"
            ".import --csv %s t\n"
            "CREATE INDEX t_name ON t(name);\n"
            "CREATE INDEX t_grp ON t(grp, val);\n"
            "SELECT count(*) FROM t;\n" % csvp)
    return mem, imp


def scenarios(args):
    """name -> (argv, stdin path or None, clean-up before the run)."""
    wd = args.workdir
    mem, imp = write_inputs(wd, args.rows)
    db = os.path.join(wd, "import.db")
    clone = os.path.join(wd, "clone.git")

    def rm_db():
        for suf in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(db + suf):
                os.unlink(db + suf)

    def rm_clone():
        shutil.rmtree(clone, ignore_errors=True)

    return {
        # 1.5 M rows generated in SQL into an in-memory database, two indexes
        "sqlite-mem": (["sqlite3", ":memory:"], mem, None),
        # 1.5 M rows of CSV imported into a file database (WAL, 128 MiB page cache), two indexes
        "sqlite-import": (["sqlite3", db], imp, rm_db),
        # git fsck of the whole repository (every object read and checked)
        # (the stored snapshot of redis misses a few blobs: fsck then exits with 2,
        # the same under every allocator, which the runner accepts)
        "git-fsck": (["git", "-C", args.repo, "-c", "fsck.zeroPaddedFilemode=ignore",
                      "fsck", "--no-progress"], None, None),
        # git clone --no-local --bare: pack-objects on one side, index-pack on the other
        "git-clone": (["git", "clone", "-q", "--no-local", "--bare", args.repo, clone],
                      None, rm_clone),
    }


def process_tree(root):
    """root and its descendants now, root first (peaksmaps.py uses it too)."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
            ppid = int(s[s.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def tree_anon(root):
    """Largest RssAnon (KiB) of one process in root's tree, now."""
    best = 0
    for p in process_tree(root):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        best = max(best, int(line.split()[1]))
                        break
        except OSError:
            pass
    return best


def run_one(argv, stdin, env, sample_ms):
    fin = open(stdin) if stdin else subprocess.DEVNULL
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=fin, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env)
    peak_anon = [0]
    done = threading.Event()

    def sampler():
        while not done.wait(sample_ms / 1000.0):
            peak_anon[0] = max(peak_anon[0], tree_anon(p.pid))

    th = None
    if sample_ms > 0:
        th = threading.Thread(target=sampler, daemon=True)
        th.start()
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    done.set()
    if th:
        th.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    if stdin:
        fin.close()
    # wait4's ru_maxrss is the larger of the child's own peak and that of every
    # descendant it waited for (Linux reports both together): for git clone,
    # the largest of its processes.
    return wall, ru.ru_maxrss, peak_anon[0], p.returncode, err


def alloc_env(spec):
    name, *sets = spec.split(":")
    name, _, path = name.partition("@")
    if name not in PRELOAD:
        sys.exit("unknown allocator %s" % name)
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    lib = path or PRELOAD[name]
    if lib:
        if not os.path.exists(lib):
            sys.exit("%s: %s not found (make?)" % (name, lib))
        env["LD_PRELOAD"] = lib
    for s in sets:
        k, v = s.split("=", 1)
        env[k] = v
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--allocators", default="glibc,hakmem,mimalloc,jemalloc,tcmalloc")
    ap.add_argument("--scenarios", default="sqlite-mem,sqlite-import,git-fsck,git-clone")
    ap.add_argument("--rows", type=int, default=1500000)
    ap.add_argument("--repo", default="/work/.mirror/redis+redis/repo",
                    help="a git directory (bare or not) for git-fsck and git-clone")
    ap.add_argument("--workdir", default="/tmp/hakmem-realprogs")
    ap.add_argument("--sample-ms", type=float, default=20,
                    help="RssAnon sampling period; 0: off")
    ap.add_argument("--csv", help="also write every run to this CSV file")
    args = ap.parse_args()

    allocs = args.allocators.split(",")
    envs = {a: alloc_env(a) for a in allocs}
    sc_all = scenarios(args)
    scs = args.scenarios.split(",")
    for s in scs:
        if s not in sc_all:
            sys.exit("unknown scenario %s (have %s)" % (s, ",".join(sc_all)))
    if any(s.startswith("git") for s in scs) and not os.path.isdir(args.repo):
        sys.exit("--repo %s: not a directory" % args.repo)

    res = {}  # (scenario, allocator) -> list of (wall, maxrss KiB, anon KiB)
    rows = []
    for r in range(args.runs):
        for s in scs:
            argv, stdin, clean = sc_all[s]
            order = allocs[r % len(allocs):] + allocs[:r % len(allocs)]
            for a in order:
                if clean:
                    clean()
                wall, maxrss, anon, rc, err = run_one(argv, stdin, envs[a], args.sample_ms)
                if rc != 0 and not (s == "git-fsck" and rc == 2):
                    sys.stderr.write(err.decode(errors="replace"))
                    sys.exit("%s under %s failed (exit %d)" % (s, a, rc))
                res.setdefault((s, a), []).append((wall, maxrss, anon))
                rows.append((r, s, a, "%.3f" % wall, maxrss, anon))
                print("round %d %-13s %-28s %7.2f s  peak %8.1f MiB  anon %8.1f MiB" % (
                    r + 1, s, a, wall, maxrss / 1024, anon / 1024), flush=True)
            if clean:
                clean()
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["round", "scenario", "allocator", "wall_s", "maxrss_kib", "peak_anon_kib"])
            w.writerows(rows)

    print("\nmedians of %d runs; peak = ru_maxrss, anon = largest sampled RssAnon "
          "(every %g ms)" % (args.runs, args.sample_ms))
    for s in scs:
        print("\n| %s | peak RSS (MiB) | x lowest | peak anon (MiB) | x lowest | wall (s) | x fastest |" % s)
        print("|---|---:|---:|---:|---:|---:|---:|")
        med = {a: [statistics.median(x[i] for x in res[(s, a)]) for i in range(3)] for a in allocs}
        lo_rss = min(m[1] for m in med.values())
        lo_anon = min(m[2] for m in med.values()) or 1
        lo_wall = min(m[0] for m in med.values())
        for a in allocs:
            w, m, an = med[a]
            print("| %s | %.1f | %.2f | %.1f | %.2f | %.2f | %.2f |" % (
                a, m / 1024, m / lo_rss, an / 1024, an / lo_anon, w, w / lo_wall))


if __name__ == "__main__":
    main()
