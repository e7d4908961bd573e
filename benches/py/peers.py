#!/usr/bin/env python3
"""The DESIGN.md workloads on Python's multiprocessing.Pool, the peer of
shoal's process backend: the same work as the `P-*` groups of
`benches/benches/process.rs`, timed in the same `cargo xtask bench` run.

Standard library and numpy (W3) only. Every pool uses the "fork" start
method (Linux's default before Python 3.14) unless the row says otherwise.
Each group runs in a fresh interpreter (this script with --group), so none
inherits another's allocator state. Each pool is built before its workload
is timed (except W4, whose subject is building one); each row is the median
of a few repetitions after one untimed warm-up run.

Rows (group / implementation):
  P-W1        multiprocessing        map(x*x) over 100k items, default chunksize
                                     (ceil(n / (4 * workers)) = 12500)
  P-W1        multiprocessing-best   the same at the best of a few chunksizes
  P-W2        multiprocessing        19 sleeps of w2_jobs.json on 8 processes
                                     (default chunksize: 1)
  P-W2-chunk4 multiprocessing        the same, chunksize 4
  P-W3        multiprocessing        1000 Monte Carlo pi tasks of 1e5 samples
                                     with numpy (default chunksize 125)
  P-W3        multiprocessing-malloc the same with glibc's trim and mmap
                                     thresholds raised (DESIGN.md: glibc and numpy)
  P-W3        python-serial          the same in a loop in one process
  P-W4        multiprocessing        Pool(2) with fork, one apply, close, join
  P-W4        multiprocessing-spawn, multiprocessing-forkserver: other start methods
  P-W5        multiprocessing        200 distinct 1 MiB bytes objects, map(len)
                                     (pickle memoizes a repeated object, so
                                     [payload] * 200 would send one copy)
  P-W6        multiprocessing        imap(x+1) over a generator, default
                                     chunksize 1 (10^5 items: 10^6 takes ~35 s)
  P-W6        multiprocessing-best   imap over a generator of 10^6 items at the
                                     best of a few chunksizes

W6 memory: a fresh interpreter (this script with --w6-probe) runs imap over
a generator of 10^5, 10^6 and 10^7 items at the best W6 chunksize and
reports the peak RSS of the parent alone (VmHWM of /proc/self/status, like
the Rust w6-memory probe) and, separately, the largest peak RSS of one
worker (getrusage(RUSAGE_CHILDREN).ru_maxrss after the pool was joined).

Prints one JSON document on stdout:
  {"schema": 1, "python": ..., "numpy": ..., "measurements": [{"group",
   "implementation", "median_ns", "mean_ns", "samples", "throughput":
   {"Elements": n} | {"Bytes": n} | null, "detail"}], "memory": [{"backend",
   "items", "peak_rss_kib", "worker_peak_rss_kib", "pulled_before_first",
   "seconds"}], "notes": [...]}
Progress goes to stderr.
"""

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

# numpy is imported where W3 needs it, not here: spawn and forkserver
# workers import this module again, and W4 should time the pool, not numpy.
HAVE_NUMPY = importlib.util.find_spec("numpy") is not None

HERE = os.path.dirname(os.path.abspath(__file__))
W2_JOBS = os.path.join(HERE, "..", "..", "..", "shared", "workloads", "w2_jobs.json")

W1_ITEMS = 100_000
W1_CHUNKSIZES = [1_000, 5_000, 12_500, 25_000, 50_000]
W2_WORKERS = 8
W3_TASKS = 1000
W3_SAMPLES = 100_000
W5_TASKS = 200
W5_BYTES = 1 << 20
W6_ITEMS = 1_000_000
W6_DEFAULT_ITEMS = 100_000
W6_DEFAULT_ITEMS_QUICK = 20_000
W6_CHUNKSIZES = [100, 1_000, 10_000]
MEMORY_ITEMS = [100_000, 1_000_000, 10_000_000]


# ----------------------------------------------------------------- work ----

def square(x):
    return x * x


def sleep(seconds):
    time.sleep(seconds)


def pi_task(i):
    import numpy as np

    xy = np.random.default_rng(i).random((2, W3_SAMPLES))
    return int(np.count_nonzero(xy[0] * xy[0] + xy[1] * xy[1] < 1.0))


def length(payload):
    return len(payload)


def inc(x):
    return x + 1


def generator(n):
    """A generator of 0..n whose length the pool cannot know."""
    for i in range(n):
        yield i


# --------------------------------------------------------------- timing ----

def log(message):
    print(f"peers: {message}", file=sys.stderr, flush=True)


def timed(run, reps, warmup=1):
    """Nanoseconds of each of `reps` calls of `run`, after `warmup` calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        run()
        times.append(time.perf_counter_ns() - t0)
    return times


class Results:
    def __init__(self):
        self.measurements = []
        self.memory = []
        self.notes = []

    def add(self, group, implementation, times, throughput=None, detail=None):
        row = {
            "group": group,
            "implementation": implementation,
            "median_ns": statistics.median(times),
            "mean_ns": statistics.fmean(times),
            "samples": len(times),
            "throughput": throughput,
            "detail": detail,
        }
        self.measurements.append(row)
        log(f"{group}/{implementation}: {row['median_ns'] / 1e6:.3f} ms"
            + (f" ({detail})" if detail else ""))


def best_chunksize(run, chunksizes, reps):
    """The chunksize of `chunksizes` whose `run(chunksize)` has the lowest
    median over `reps` runs, and those runs' times."""
    times = {c: timed(lambda: run(c), reps, warmup=0) for c in chunksizes}
    best = min(times, key=lambda c: statistics.median(times[c]))
    return best, times[best]


# ------------------------------------------------------------ workloads ----

def w1(ctx, results, reps):
    items = list(range(W1_ITEMS))
    with ctx.Pool(2) as pool:
        times = timed(lambda: pool.map(square, items), reps)
        results.add("P-W1", "multiprocessing", times, {"Elements": W1_ITEMS},
                    f"chunksize {-(-W1_ITEMS // 8)} (default)")
        best, times = best_chunksize(lambda c: pool.map(square, items, chunksize=c),
                                     W1_CHUNKSIZES, reps)
        results.add("P-W1", "multiprocessing-best", times, {"Elements": W1_ITEMS},
                    f"chunksize {best}, best of {W1_CHUNKSIZES}")


def w2(ctx, results, reps):
    try:
        with open(W2_JOBS) as f:
            jobs = json.load(f)["jobs"]
    except (OSError, ValueError, KeyError) as e:
        results.notes.append(f"P-W2 skipped: cannot read {W2_JOBS}: {e}")
        return
    with ctx.Pool(W2_WORKERS) as pool:
        for group, chunksize in [("P-W2", None), ("P-W2-chunk4", 4)]:
            times = timed(lambda: pool.map(sleep, jobs, chunksize=chunksize), reps)
            detail = "chunksize 1 (default)" if chunksize is None else f"chunksize {chunksize}"
            results.add(group, "multiprocessing", times, None, detail)


def w3(ctx, results, reps, malloc_tuned):
    if not HAVE_NUMPY:
        results.notes.append("P-W3 (numpy) skipped: numpy is not installed")
        return
    if malloc_tuned:
        implementation = "multiprocessing-malloc"
        detail = "numpy, glibc's MALLOC_TRIM_THRESHOLD_ and MALLOC_MMAP_THRESHOLD_ at 128 MiB"
    else:
        implementation = "multiprocessing"
        detail = "numpy, chunksize 125 (default)"
    with ctx.Pool(2) as pool:
        times = timed(lambda: pool.map(pi_task, range(W3_TASKS)), reps)
        results.add("P-W3", implementation, times, {"Elements": W3_TASKS}, detail)
    if not malloc_tuned:
        times = timed(lambda: [pi_task(i) for i in range(W3_TASKS)], max(1, reps // 2))
        results.add("P-W3", "python-serial", times, {"Elements": W3_TASKS},
                    "numpy, one process")


def w4(results, reps):
    for method, implementation in [("fork", "multiprocessing"),
                                   ("spawn", "multiprocessing-spawn"),
                                   ("forkserver", "multiprocessing-forkserver")]:
        try:
            ctx = mp.get_context(method)
        except ValueError as e:
            results.notes.append(f"P-W4/{implementation} skipped: {e}")
            continue

        def cycle():
            pool = ctx.Pool(2)
            pool.apply(square, (3,))
            pool.close()
            pool.join()

        times = timed(cycle, reps + 1, warmup=0)
        first, steady = times[0], times[1:]
        results.add("P-W4", implementation, steady, None,
                    f"{method}; first cycle {first / 1e6:.1f} ms")


def w5(ctx, results, reps):
    # Distinct objects with distinct contents: pickle memoizes by identity.
    payloads = [bytes([i % 256]) * W5_BYTES for i in range(W5_TASKS)]
    with ctx.Pool(2) as pool:
        def run():
            total = sum(pool.map(length, payloads))
            assert total == W5_TASKS * W5_BYTES, total
        times = timed(run, reps)
        results.add("P-W5", "multiprocessing", times, {"Bytes": W5_TASKS * W5_BYTES},
                    "chunksize 25 (default)")


def w6(ctx, results, reps, quick):
    n_default = W6_DEFAULT_ITEMS_QUICK if quick else W6_DEFAULT_ITEMS
    with ctx.Pool(2) as pool:
        times = timed(lambda: sum(pool.imap(inc, generator(n_default))), max(1, reps // 2),
                      warmup=0)
        results.add("P-W6", "multiprocessing", times, {"Elements": n_default},
                    f"imap chunksize 1 (default), {n_default} items: ratios are per item")
        best, times = best_chunksize(
            lambda c: sum(pool.imap(inc, generator(W6_ITEMS), chunksize=c)), W6_CHUNKSIZES,
            reps)
        results.add("P-W6", "multiprocessing-best", times, {"Elements": W6_ITEMS},
                    f"imap chunksize {best}, best of {W6_CHUNKSIZES}")
    return best


# ------------------------------------------------------------ W6 memory ----

def vm_hwm_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def w6_probe(items, chunksize):
    """One W6 memory run in this (fresh) interpreter; prints one JSON line."""
    pulled = [0]

    def counted(n):
        for i in range(n):
            pulled[0] += 1
            yield i

    ctx = mp.get_context("fork")
    t0 = time.perf_counter()
    pool = ctx.Pool(2)
    results = pool.imap(inc, counted(items), chunksize=chunksize)
    first = next(results)
    pulled_before_first = pulled[0]
    total = first + sum(results)
    seconds = time.perf_counter() - t0
    pool.close()
    pool.join()
    assert total == items * (items + 1) // 2, total
    print(json.dumps({
        "backend": "multiprocessing-best",
        "items": items,
        "peak_rss_kib": vm_hwm_kib(),
        "worker_peak_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "pulled_before_first": pulled_before_first,
        "seconds": seconds,
        "chunksize": chunksize,
    }))


def w6_memory(results, chunksize):
    for items in MEMORY_ITEMS:
        cmd = [sys.executable, os.path.abspath(__file__), "--w6-probe", str(items),
               "--chunksize", str(chunksize)]
        try:
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
            probe = json.loads(out.stdout.strip().splitlines()[-1])
        except (subprocess.SubprocessError, ValueError, IndexError) as e:
            results.notes.append(f"W6 memory probe of multiprocessing at {items} items failed: {e}")
            continue
        results.memory.append(probe)
        log(f"W6 memory multiprocessing-best {items}: {probe['peak_rss_kib']} KiB")


# ----------------------------------------------------------------- main ----

def numpy_version():
    if not HAVE_NUMPY:
        return None
    import numpy

    return numpy.__version__


GROUPS = ["W1", "W2", "W3", "W4", "W5", "W6", "memory"]

# glibc settings that keep numpy's temporaries in the heap (DESIGN.md,
# "glibc and numpy in worker processes"), for the W3 row that uses them.
TUNED_MALLOC = {"MALLOC_TRIM_THRESHOLD_": str(128 << 20), "MALLOC_MMAP_THRESHOLD_": str(128 << 20)}


def run_group(group, quick, malloc_tuned, results):
    """Runs one group in this interpreter."""
    reps = 3 if quick else 7
    slow_reps = 3 if quick else 5
    ctx = mp.get_context("fork")
    if group == "W1":
        w1(ctx, results, reps)
    elif group == "W2":
        w2(ctx, results, slow_reps)
    elif group == "W3":
        w3(ctx, results, slow_reps, malloc_tuned)
    elif group == "W4":
        w4(results, 3 if quick else 10)
    elif group == "W5":
        w5(ctx, results, reps)
    elif group == "W6":
        return w6(ctx, results, reps, quick)
    return None


def in_child(group, quick, malloc_tuned=False):
    """Runs one group in a fresh interpreter, so that no group inherits the
    allocator state of another (glibc's dynamic mmap threshold rises after
    big frees: W3 runs ~2x faster after W1 in the same process), and returns
    its results document."""
    cmd = [sys.executable, os.path.abspath(__file__), "--group", group]
    if quick:
        cmd.append("--quick")
    env = dict(os.environ)
    if malloc_tuned:
        cmd.append("--malloc-tuned")
        env.update(TUNED_MALLOC)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env,
                         timeout=1800)
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--only", default=",".join(GROUPS),
                        help=f"comma-separated subset of {','.join(GROUPS)}")
    parser.add_argument("--group", choices=GROUPS[:-1], help=argparse.SUPPRESS)
    parser.add_argument("--malloc-tuned", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--w6-probe", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--chunksize", type=int, default=1000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.w6_probe is not None:
        w6_probe(args.w6_probe, args.chunksize)
        return
    if args.group is not None:
        results = Results()
        chunksize = run_group(args.group, args.quick, args.malloc_tuned, results)
        json.dump({"measurements": results.measurements, "notes": results.notes,
                   "chunksize": chunksize}, sys.stdout)
        return
    only = [g for g in GROUPS if g in set(args.only.split(","))]
    unknown = set(args.only.split(",")) - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups: {', '.join(sorted(unknown))}")

    results = Results()
    chunksize = 1000
    runs = [(g, False) for g in only if g != "memory"]
    if "W3" in only and HAVE_NUMPY:
        runs.insert(runs.index(("W3", False)) + 1, ("W3", True))
    for group, tuned in runs:
        try:
            doc = in_child(group, args.quick, tuned)
        except (subprocess.SubprocessError, OSError, ValueError) as e:
            results.notes.append(f"{group} failed: {e}")
            continue
        results.measurements.extend(doc["measurements"])
        results.notes.extend(doc["notes"])
        if group == "W6" and doc.get("chunksize"):
            chunksize = doc["chunksize"]
    if "memory" in only:
        w6_memory(results, chunksize)

    json.dump({
        "schema": 1,
        "python": platform.python_version(),
        "numpy": numpy_version(),
        "start_method": "fork",
        "measurements": results.measurements,
        "memory": results.memory,
        "notes": results.notes,
    }, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
