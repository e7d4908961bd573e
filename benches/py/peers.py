#!/usr/bin/env python3
"""The DESIGN.md workloads W1-W6 from Python, on the pools a Python user
would pick (multiprocessing.Pool, concurrent.futures.ProcessPoolExecutor,
loky, mpire) and on shoal's Python package when it is importable, timed in
the same `cargo xtask bench` run.

Rows are `py-<workload>/<implementation>`. Implementations:
  multiprocessing       multiprocessing.Pool, "fork" start method
  concurrent-futures    concurrent.futures.ProcessPoolExecutor, default context
  loky                  loky.get_reusable_executor (loky's fork+exec start)
  mpire                 mpire.WorkerPool(keep_alive=True); mpire's default
                        keep_alive=False would fork new workers inside every
                        timed map, while every other pool here is started
                        before its workload is timed
  shoal-py-process      shoal.Pool(processes=N, backend="process")
  shoal-py-threads      shoal.Pool(processes=N, backend="threads")
A row named after the pool uses its default settings; `<pool>-best` is the
same pool at the best chunksize of a small list, where the workload asks for
one (W1, W6). The shoal rows use default settings only (automatic
chunking) and only the multiprocessing.Pool-compatible API:
`Pool(processes=, backend=)` as a context manager, `map(f, list)`,
`map(f, list, chunksize=4)` (W2-chunk4), `imap(f, generator)`,
`imap_unordered(f, generator)`, `apply_async(f, args).get()`, `close()`,
`join()`.

Workloads (the same work as the process suite's `P-*` groups):
  py-W1        map(x*x) over 100k items on 2 workers, default settings and the
               best chunksize of [1000, 5000, 12500, 25000, 50000].
               concurrent.futures and loky default to chunksize 1 (one future
               per item, ~5k items/s), so their default row maps fewer items
               and its ratios are per item.
  py-W2        the 19 sleeps of w2_jobs.json on 8 workers, default settings;
  py-W2-chunk4 the same with chunksize 4.
  py-W3        1000 Monte Carlo pi tasks of 1e5 samples (numpy) on 2 workers,
               default settings; `python-serial` is the same loop in one
               process, `multiprocessing-malloc` multiprocessing with glibc's
               trim and mmap thresholds raised (DESIGN.md: glibc and numpy).
  py-W4        create a pool of 2, run one trivial task, shut it down
               (multiprocessing also with spawn and forkserver); the row is
               the steady cycle, the first cycle is in its detail.
  py-W5        200 distinct 1 MiB bytes objects, map(len), default settings
               (pickle memoizes a repeated object, so [payload] * 200 would
               send one copy).
  py-W6        imap(x+1) over a generator: default settings (peers whose
               default chunksize is 1 or 4 on fewer items, ratios per item;
               shoal on 10^6) and at the best chunksize of [100, 1000, 10000]
               (picked on 10^5 items, timed on 10^6);
               `multiprocessing-unordered` is imap_unordered as a user calls
               it (chunksize 1, on the fewer items of the default rows),
               `multiprocessing-unordered-best` is imap_unordered at its best
               chunksize on 10^6 items, `shoal-py-*-unordered` shoal's
               imap_unordered with default settings. concurrent.futures and
               loky have no lazy map: Executor.map submits every chunk before
               it returns.
  py-W1, py-W6 (interleaved)
               shoal's map beside multiprocessing's map at its best chunksize
               (5 maps of each per round), shoal's imap beside
               multiprocessing's imap_unordered at its best chunksize (one
               run of each): both pools in one interpreter, 7 rounds (15
               without --quick), in the `interleaved` list of the output with
               the median and quartiles of the rounds' time ratios. This
               machine's speed moves by up to 2x within seconds; a round's
               two sides see the same speed.

Each (workload, implementation) runs in a fresh interpreter (this script
with --group and --peer), so that none inherits another's allocator state
or leftover workers. Each pool is started (and its workers warmed with a few
trivial tasks) before the workload is timed, except in W4, whose subject is
starting one. A row is the median of a few repetitions.

W6 memory: a fresh interpreter (this script with --w6-probe) runs one imap
over a generator of 10^5, 10^6 and 10^7 items, pool start included, and
reports the peak RSS of the parent alone (VmHWM of /proc/self/status, like
the Rust w6-memory probe), the largest peak RSS of one worker process
(getrusage(RUSAGE_CHILDREN) after the pool was joined; none for threads),
the items pulled from the generator before the first result and the time.
Peers run at their best W6 chunksize (backend `<pool>-best`), shoal with
default settings.

--quick shortens: 11 repetitions instead of 21 (W1), 3 instead of 7 (W5,
W6), 2 instead of 5 for the slow workloads (W2, W3), 7 W4 cycles instead of 10 (a cycle takes
milliseconds, and three made a noisy median), at most ~2 s
of repetitions per row instead of ~30 s, 5k instead of 20k items for the
one-future-per-item default rows of concurrent.futures and loky (W1, W6),
20k instead of 100k for the other default-chunksize W6 rows, one search run
per W6 chunksize instead of three, and it leaves out the 10^7-item memory
probe of an implementation whose 10^6 probe took over 0.5 s (10^7 would take
over 5 s). The whole script then takes two to three minutes on 2 cores.

What cannot run (loky or mpire not installed, shoal not importable, a row
that raises or overruns its time limit) is left out with a note; nothing is
faked.

Prints one JSON document on stdout:
  {"schema": 2, "python": ..., "numpy": ..., "versions": {"numpy", "loky",
   "mpire", "shoal"}, "measurements": [{"group", "implementation",
   "median_ns", "mean_ns", "samples", "throughput": {"Elements": n} |
   {"Bytes": n} | null, "detail"}], "memory": [{"backend", "items",
   "peak_rss_kib", "worker_peak_rss_kib", "pulled_before_first", "seconds",
   "chunksize"}], "notes": [...]}
Progress goes to stderr.
"""

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
import traceback
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from work import W3_SAMPLES, inc, length, pi_task, sleep, square  # noqa: E402

W2_JOBS = os.path.join(HERE, "..", "..", "..", "shared", "workloads", "w2_jobs.json")

W1_ITEMS = 100_000
W1_CHUNKSIZES = [1_000, 5_000, 12_500, 25_000, 50_000]
# Maps of each side per interleaved W1 round (a map takes milliseconds).
W1_MAPS_PER_ROUND = 5
# Items of the default (chunksize 1, one future per item) W1 and W6 rows of
# concurrent.futures and loky: (full, quick).
EAGER_ITEMS = (20_000, 5_000)
W2_WORKERS = 8
W3_TASKS = 1000
W5_TASKS = 200
W5_BYTES = 1 << 20
W6_ITEMS = 1_000_000
# Items of the other default-chunksize W6 rows: (full, quick).
W6_DEFAULT_ITEMS = (100_000, 20_000)
W6_CHUNKSIZES = [100, 1_000, 10_000]
W6_SEARCH_ITEMS = 100_000
MEMORY_ITEMS = [100_000, 1_000_000, 10_000_000]
# With --quick, the largest memory probe runs only when the one before it
# took at most this long.
QUICK_PROBE_SECONDS = 0.5

PEERS = ["multiprocessing", "concurrent-futures", "loky", "mpire"]
SHOAL = ["shoal-py-process", "shoal-py-threads"]
IMPLEMENTATIONS = PEERS + SHOAL

# glibc settings that keep numpy's temporaries in the heap (DESIGN.md,
# "glibc and numpy in worker processes"), for the W3 row that uses them.
TUNED_MALLOC = {"MALLOC_TRIM_THRESHOLD_": str(128 << 20), "MALLOC_MMAP_THRESHOLD_": str(128 << 20)}


def generator(n):
    """A generator of 0..n whose length the pool cannot know."""
    for i in range(n):
        yield i


# --------------------------------------------------------------- timing ----

def log(message):
    print(f"peers: {message}", file=sys.stderr, flush=True)


class Config:
    def __init__(self, quick):
        self.quick = quick
        self.reps = 3 if quick else 7
        # Repetitions of the W1 rows (a call takes milliseconds; each row
        # still stops at `budget`): three made a noisy median, and the best
        # of five chunksizes picked from three samples each favoured a
        # lucky one.
        self.fast_reps = 11 if quick else 21
        self.slow_reps = 2 if quick else 5
        self.cycles = 7 if quick else 10
        # Seconds of repetitions after which a row stops repeating.
        self.budget = 2.0 if quick else 30.0
        self.search_reps = 1 if quick else 3
        self.interleaved_rounds = 7 if quick else 15

    def items(self, pair):
        """The quick or full value of a (full, quick) pair."""
        return pair[1] if self.quick else pair[0]


def timed(run, reps, warmup=1, budget=None):
    """Nanoseconds of up to `reps` calls of `run` after `warmup` calls; stops
    early (after at least one) once the calls took `budget` seconds."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        run()
        times.append(time.perf_counter_ns() - t0)
        if budget is not None and sum(times) > budget * 1e9:
            break
    return times


class Results:
    def __init__(self):
        self.measurements = []
        self.memory = []
        self.notes = []
        # Comparisons timed in alternating rounds (see `w6_interleaved`).
        self.interleaved = []

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

    def attempt(self, label, run):
        """Runs one row; an exception becomes a note, not a failed group."""
        try:
            return run()
        except Exception as e:  # noqa: BLE001 - any failure of a pool is reported
            where = traceback.extract_tb(e.__traceback__)[-1]
            self.notes.append(f"{label} failed: {type(e).__name__}: {e} "
                              f"({os.path.basename(where.filename)}:{where.lineno})")
            log(f"{label} failed: {type(e).__name__}: {e}")
            return None


def best_chunksize(run, chunksizes, reps, budget=None):
    """The chunksize of `chunksizes` whose `run(chunksize)` has the lowest
    median over `reps` runs, and those runs' times."""
    per = None if budget is None else budget / len(chunksizes)
    times = {c: timed(lambda: run(c), reps, warmup=0, budget=per) for c in chunksizes}
    best = min(times, key=lambda c: statistics.median(times[c]))
    return best, times[best]


# ---------------------------------------------------------------- pools ----

class Pool:
    """One implementation: how to start it, map, imap and run a W4 cycle."""

    name = ""
    # Whether the -best rows (explicit chunksizes) run.
    chunked = True
    # Whether the default map/imap is one future per item (fewer items).
    eager_default = False
    # Whether the default imap chunk is small (fewer items in the W6 default row).
    small_imap_default = True

    def unavailable(self):
        """Why this implementation cannot run here, or None."""
        return None

    def pool(self, workers):
        """A context manager giving a started pool of `workers`."""
        raise NotImplementedError

    def map(self, pool, fn, items, chunksize=None):
        raise NotImplementedError

    def imap(self, pool, fn, iterable, chunksize=None):
        raise NotImplementedError

    def cycle(self):
        """W4: start a pool of 2, one trivial task, shut it down."""
        raise NotImplementedError

    def map_default(self, n, workers):
        """How the default map chunks `n` items on `workers`."""
        raise NotImplementedError

    def imap_default(self):
        raise NotImplementedError

    def w4_detail(self):
        return ""


class Multiprocessing(Pool):
    name = "multiprocessing"

    def __init__(self, method="fork"):
        self.ctx = mp.get_context(method)

    def pool(self, workers):
        return self.ctx.Pool(workers)

    def map(self, pool, fn, items, chunksize=None):
        return pool.map(fn, items, chunksize)

    def imap(self, pool, fn, iterable, chunksize=None):
        return pool.imap(fn, iterable, chunksize or 1)

    def imap_unordered(self, pool, fn, iterable, chunksize=None):
        return pool.imap_unordered(fn, iterable, chunksize or 1)

    def cycle(self):
        pool = self.ctx.Pool(2)
        pool.apply(square, (3,))
        pool.close()
        pool.join()

    def default_chunksize(self, n, workers):
        chunksize, extra = divmod(n, workers * 4)
        return chunksize + bool(extra)

    def map_default(self, n, workers):
        return (f"chunksize {self.default_chunksize(n, workers)} "
                "(default: ceil(n / (4 * workers)))")

    def imap_default(self):
        return "imap chunksize 1 (default)"


class ConcurrentFutures(Pool):
    name = "concurrent-futures"
    eager_default = True

    def pool(self, workers):
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(max_workers=workers)

    def map(self, pool, fn, items, chunksize=None):
        return list(pool.map(fn, items, chunksize=chunksize or 1))

    def imap(self, pool, fn, iterable, chunksize=None):
        return pool.map(fn, iterable, chunksize=chunksize or 1)

    def cycle(self):
        from concurrent.futures import ProcessPoolExecutor

        executor = ProcessPoolExecutor(max_workers=2)
        executor.submit(square, 3).result()
        executor.shutdown(wait=True)

    def map_default(self, n, workers):
        return "chunksize 1 (default)"

    def imap_default(self):
        return "map chunksize 1 (default), all chunks submitted up front"

    def w4_detail(self):
        return f"{mp.get_start_method()} (default context)"


class Loky(ConcurrentFutures):
    name = "loky"

    def unavailable(self):
        if importlib.util.find_spec("loky") is None:
            return "loky is not installed"
        return None

    @contextlib.contextmanager
    def pool(self, workers):
        import loky

        executor = loky.get_reusable_executor(max_workers=workers)
        try:
            yield executor
        finally:
            executor.shutdown(wait=True)

    def cycle(self):
        import loky

        executor = loky.ProcessPoolExecutor(max_workers=2)
        executor.submit(square, 3).result()
        executor.shutdown(wait=True)

    def w4_detail(self):
        return "loky.ProcessPoolExecutor, loky start method (fork + exec)"


class Mpire(Pool):
    name = "mpire"

    def unavailable(self):
        if importlib.util.find_spec("mpire") is None:
            return "mpire is not installed"
        return None

    def pool(self, workers):
        from mpire import WorkerPool

        return WorkerPool(n_jobs=workers, keep_alive=True)

    def map(self, pool, fn, items, chunksize=None):
        return pool.map(fn, items, chunk_size=chunksize)

    def imap(self, pool, fn, iterable, chunksize=None):
        # Without a chunk size and a length mpire warns and uses 4.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Failed to obtain length of iterable")
            yield from pool.imap(fn, iterable, chunk_size=chunksize)

    def cycle(self):
        from mpire import WorkerPool

        pool = WorkerPool(n_jobs=2)
        pool.apply(square, (3,))
        pool.stop_and_join()
        pool.terminate()

    def map_default(self, n, workers):
        return (f"chunk_size {n / (64 * workers):.3g} (default: n / (64 * n_jobs)), "
                "keep_alive=True")

    def imap_default(self):
        return "imap chunk_size 4 (default without len), keep_alive=True"

    def w4_detail(self):
        return "WorkerPool defaults (fork), apply, stop_and_join"


class Shoal(Pool):
    """shoal's Python package, through its multiprocessing.Pool-compatible API."""

    chunked = False
    small_imap_default = False

    def __init__(self, backend):
        self.backend = backend
        self.name = f"shoal-py-{backend}"

    def unavailable(self):
        return shoal_unavailable()

    def pool(self, workers):
        import shoal

        return shoal.Pool(processes=workers, backend=self.backend)

    def map(self, pool, fn, items, chunksize=None):
        if chunksize is None:
            return pool.map(fn, items)
        return pool.map(fn, items, chunksize=chunksize)

    def imap(self, pool, fn, iterable, chunksize=None):
        assert chunksize is None
        return pool.imap(fn, iterable)

    def imap_unordered(self, pool, fn, iterable, chunksize=None):
        assert chunksize is None
        return pool.imap_unordered(fn, iterable)

    def cycle(self):
        import shoal

        pool = shoal.Pool(processes=2, backend=self.backend)
        assert pool.apply_async(square, (3,)).get() == 9
        pool.close()
        pool.join()

    def map_default(self, n, workers):
        return "default settings (automatic chunking)"

    def imap_default(self):
        return "imap, default settings"

    def w4_detail(self):
        return f"Pool(processes=2, backend={self.backend!r}), apply_async().get(), close, join"


def implementation(name):
    return {
        "multiprocessing": Multiprocessing,
        "concurrent-futures": ConcurrentFutures,
        "loky": Loky,
        "mpire": Mpire,
        "shoal-py-process": lambda: Shoal("process"),
        "shoal-py-threads": lambda: Shoal("threads"),
    }[name]()


_SHOAL_PROBE = []


def shoal_unavailable():
    """Why `import shoal` fails in this interpreter, or None. Probed in a
    fresh interpreter, so that the package's threads (if any) never live in
    this one."""
    if not _SHOAL_PROBE:
        if importlib.util.find_spec("shoal") is None:
            _SHOAL_PROBE.append(f"`import shoal` fails in {sys.executable}: "
                                "no module named 'shoal' (not installed in this venv)")
        else:
            out = subprocess.run([sys.executable, "-c", "import shoal; shoal.Pool"],
                                 capture_output=True, text=True, timeout=120)
            lines = out.stderr.strip().splitlines()
            _SHOAL_PROBE.append(None if out.returncode == 0 else
                                f"`import shoal; shoal.Pool` fails in {sys.executable}: "
                                f"{lines[-1] if lines else out.returncode}")
    return _SHOAL_PROBE[0]


def warm(pool_impl, pool, workers):
    """Starts every worker of a lazily started pool before timing."""
    pool_impl.map(pool, square, list(range(4 * workers)), 1 if pool_impl.chunked else None)


# ------------------------------------------------------------ workloads ----

def w1(p, results, cfg):
    items = list(range(W1_ITEMS))
    n = cfg.items(EAGER_ITEMS) if p.eager_default else W1_ITEMS
    with p.pool(2) as pool:
        warm(p, pool, 2)
        few = items[:n]
        times = timed(lambda: p.map(pool, square, few), cfg.fast_reps,
                      warmup=0 if p.eager_default else 1, budget=cfg.budget)
        per_item = "" if n == W1_ITEMS else f", {n} items: ratios are per item"
        results.add("py-W1", p.name, times, {"Elements": n}, p.map_default(n, 2) + per_item)
        if p.chunked:
            best, times = best_chunksize(lambda c: p.map(pool, square, items, c), W1_CHUNKSIZES,
                                         cfg.fast_reps, cfg.budget)
            results.add("py-W1", f"{p.name}-best", times, {"Elements": W1_ITEMS},
                        f"chunksize {best}, best of {W1_CHUNKSIZES}")


def w2(p, results, cfg):
    try:
        with open(W2_JOBS) as f:
            jobs = json.load(f)["jobs"]
    except (OSError, ValueError, KeyError) as e:
        results.notes.append(f"py-W2 skipped: cannot read {W2_JOBS}: {e}")
        return
    with p.pool(W2_WORKERS) as pool:
        warm(p, pool, W2_WORKERS)
        for group, chunksize in [("py-W2", None), ("py-W2-chunk4", 4)]:
            def run():
                p.map(pool, sleep, jobs, chunksize)

            detail = (p.map_default(len(jobs), W2_WORKERS) if chunksize is None
                      else f"chunksize {chunksize}")
            results.attempt(f"{group}/{p.name}", lambda: results.add(
                group, p.name, timed(run, cfg.slow_reps, warmup=0), None,
                f"{W2_WORKERS} workers, {detail}"))


def w3(p, results, cfg, malloc_tuned):
    if importlib.util.find_spec("numpy") is None:
        results.notes.append("py-W3 (numpy) skipped: numpy is not installed")
        return
    tasks = list(range(W3_TASKS))
    if malloc_tuned:
        name = f"{p.name}-malloc"
        detail = "numpy, glibc's MALLOC_TRIM_THRESHOLD_ and MALLOC_MMAP_THRESHOLD_ at 128 MiB"
    else:
        name = p.name
        detail = f"numpy, {p.map_default(W3_TASKS, 2)}"
    with p.pool(2) as pool:
        warm(p, pool, 2)
        # Every worker imports numpy before the clock starts.
        p.map(pool, pi_task, list(range(8)), 1 if p.chunked else None)
        times = timed(lambda: p.map(pool, pi_task, tasks), cfg.slow_reps, warmup=0)
        results.add("py-W3", name, times, {"Elements": W3_TASKS}, detail)


def w3_serial(results, cfg):
    if importlib.util.find_spec("numpy") is None:
        results.notes.append("py-W3 (numpy) skipped: numpy is not installed")
        return
    pi_task(0)
    times = timed(lambda: [pi_task(i) for i in range(W3_TASKS)], cfg.slow_reps, warmup=0)
    results.add("py-W3", "python-serial", times, {"Elements": W3_TASKS},
                f"numpy, one process, {W3_SAMPLES} samples per task")


def w4(p, results, cfg):
    variants = [(p, p.name, p.w4_detail())]
    if isinstance(p, Multiprocessing):
        variants = []
        for method in ["fork", "spawn", "forkserver"]:
            try:
                variants.append((Multiprocessing(method),
                                 "multiprocessing" + ("" if method == "fork" else f"-{method}"),
                                 method))
            except ValueError as e:
                results.notes.append(f"py-W4/multiprocessing-{method} skipped: {e}")
    for impl, name, detail in variants:
        def run(impl=impl, name=name, detail=detail):
            times = timed(impl.cycle, cfg.cycles + 1, warmup=0)
            first, steady = times[0], times[1:]
            results.add("py-W4", name, steady, None,
                        f"{detail}; first cycle {first / 1e6:.1f} ms".lstrip("; "))
        results.attempt(f"py-W4/{name}", run)


def w5(p, results, cfg):
    # Distinct objects with distinct contents: pickle memoizes by identity.
    payloads = [bytes([i % 256]) * W5_BYTES for i in range(W5_TASKS)]
    with p.pool(2) as pool:
        warm(p, pool, 2)

        def run():
            total = sum(p.map(pool, length, payloads))
            assert total == W5_TASKS * W5_BYTES, total

        times = timed(run, cfg.reps, budget=cfg.budget)
        results.add("py-W5", p.name, times, {"Bytes": W5_TASKS * W5_BYTES},
                    p.map_default(W5_TASKS, 2))


def w6(p, results, cfg):
    """Returns the best chunksize (None for shoal), for the memory probe."""
    if p.eager_default:
        n = cfg.items(EAGER_ITEMS)
    elif p.small_imap_default:
        n = cfg.items(W6_DEFAULT_ITEMS)
    else:
        n = W6_ITEMS

    def total(results_iter, items):
        got = sum(results_iter)
        assert got == items * (items + 1) // 2, got

    with p.pool(2) as pool:
        warm(p, pool, 2)
        times = timed(lambda: total(p.imap(pool, inc, generator(n)), n), cfg.reps,
                      warmup=0, budget=cfg.budget)
        per_item = "" if n == W6_ITEMS else f", {n} items: ratios are per item"
        results.add("py-W6", p.name, times, {"Elements": n}, p.imap_default() + per_item)
        if isinstance(p, Multiprocessing):
            results.attempt("py-W6/multiprocessing-unordered", lambda: results.add(
                "py-W6", "multiprocessing-unordered",
                timed(lambda: total(p.imap_unordered(pool, inc, generator(n)), n),
                      cfg.reps, warmup=0, budget=cfg.budget),
                {"Elements": n}, "imap_unordered chunksize 1 (default)" + per_item))
        if isinstance(p, Shoal):
            results.attempt(f"py-W6/{p.name}-unordered", lambda: results.add(
                "py-W6", f"{p.name}-unordered",
                timed(lambda: total(p.imap_unordered(pool, inc, generator(W6_ITEMS)), W6_ITEMS),
                      cfg.reps, warmup=0, budget=cfg.budget),
                {"Elements": W6_ITEMS}, "imap_unordered, default settings"))
        if not p.chunked:
            return None

        def search(imap):
            best, _ = best_chunksize(
                lambda c: total(imap(pool, inc, generator(W6_SEARCH_ITEMS), c), W6_SEARCH_ITEMS),
                W6_CHUNKSIZES, cfg.search_reps)
            times = timed(lambda: total(imap(pool, inc, generator(W6_ITEMS), best), W6_ITEMS),
                          cfg.reps, warmup=0, budget=cfg.budget)
            return best, times

        best, times = search(p.imap)
        results.add("py-W6", f"{p.name}-best", times, {"Elements": W6_ITEMS},
                    f"{p.imap_default().split(' ')[0]} chunksize {best}, best of {W6_CHUNKSIZES}")
        if isinstance(p, Multiprocessing):
            def unordered():
                c, times = search(p.imap_unordered)
                results.add("py-W6", "multiprocessing-unordered-best", times,
                            {"Elements": W6_ITEMS},
                            f"imap_unordered chunksize {c}, best of {W6_CHUNKSIZES}")
            results.attempt("py-W6/multiprocessing-unordered-best", unordered)
    return best


def interleaved(results, cfg, group, name, reference, search, setup):
    """A target's comparison in alternating rounds: shoal (pool `name`) and
    `multiprocessing` at its best chunksize, both pools in this process, one
    run of each per round (the order switching every round). This
    machine's speed moves by up to 2x within seconds, and a ratio of two
    medians measured one after the other moved with it (py-W6: 0.41x-0.61x
    in one hour, py-W1 1.25x-1.86x); the ratio of a round's two times does
    not, as the core's interleaved targets (`ab`) found.

    `search(peer, pool)` returns the peer's best chunksize and what was
    searched; `setup(peer, peer_pool, subject, pool, chunksize)` returns
    `(run_subject, runs_peer, detail)`: each round times every run of
    `runs_peer` too and compares with the fastest (a search's pick is
    noisy: py-W1's default chunksize once beat the chunksize the search
    chose, and the sequential rows then compared with it instead)."""
    peer, subject = Multiprocessing(), implementation(name)
    # The peer's pool first: it forks before shoal's threads exist.
    with peer.pool(2) as peer_pool:
        warm(peer, peer_pool, 2)
        best, searched = search(peer, peer_pool)
        with subject.pool(2) as pool:
            warm(subject, pool, 2)
            run_subject, runs_peer, detail = setup(peer, peer_pool, subject, pool, best)
            run_subject()  # the chunker's first batch of this function
            ratios = []
            for r in range(cfg.interleaved_rounds):
                runs = [run_subject, *runs_peer]
                times = {}
                for run in runs if r % 2 == 0 else runs[::-1]:
                    t0 = time.perf_counter_ns()
                    run()
                    times[run] = time.perf_counter_ns() - t0
                ratios.append(times[run_subject] / min(times[run] for run in runs_peer))
    q1, median, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    results.interleaved.append({
        "interleaved": group, "subject": name, "reference": reference,
        "ratio": median, "q1": q1, "q3": q3, "rounds": len(ratios),
        "detail": f"{detail}, best of {searched}",
    })
    log(f"{group} interleaved {name} / {reference}: {median:.3f}x "
        f"(q1 {q1:.3f}, q3 {q3:.3f}, {len(ratios)} rounds, {detail})")


def w1_interleaved(name, results, cfg):
    """py-W1: shoal's `map` against `multiprocessing`'s at its best
    chunksize (the fastest peer in every run so far), a few maps of each
    per round; the peer runs at the searched chunksize and at its default
    (one of those searched), and each round takes the faster."""
    items = list(range(W1_ITEMS))

    def search(peer, peer_pool):
        best, _ = best_chunksize(lambda c: peer.map(peer_pool, square, items, c),
                                 W1_CHUNKSIZES, cfg.fast_reps, cfg.budget)
        return best, W1_CHUNKSIZES

    def setup(peer, peer_pool, subject, pool, best):
        def maps(p, p_pool, chunksize=None):
            def run():
                for _ in range(W1_MAPS_PER_ROUND):
                    p.map(p_pool, square, items, chunksize)
            return run

        runs_peer = [maps(peer, peer_pool, best)]
        detail = f"chunksize {best}"
        if best != peer.default_chunksize(len(items), 2):
            runs_peer.append(maps(peer, peer_pool))
            detail += " or the default, the faster in each round"
        return maps(subject, pool), runs_peer, detail

    interleaved(results, cfg, "py-W1", name, "multiprocessing-best", search, setup)


def w6_interleaved(name, results, cfg):
    """py-W6: shoal's `imap` against `multiprocessing`'s `imap_unordered` at
    its best chunksize, one run of each per round."""
    def total(results_iter):
        got = sum(results_iter)
        assert got == W6_ITEMS * (W6_ITEMS + 1) // 2, got

    def search(peer, peer_pool):
        best, _ = best_chunksize(
            lambda c: sum(peer.imap_unordered(peer_pool, inc, generator(W6_SEARCH_ITEMS), c)),
            W6_CHUNKSIZES, cfg.search_reps)
        return best, W6_CHUNKSIZES

    def setup(peer, peer_pool, subject, pool, best):
        return (lambda: total(subject.imap(pool, inc, generator(W6_ITEMS))),
                [lambda: total(peer.imap_unordered(peer_pool, inc, generator(W6_ITEMS), best))],
                f"chunksize {best}")

    interleaved(results, cfg, "py-W6", name, "multiprocessing-unordered-best", search, setup)


# ------------------------------------------------------------ W6 memory ----

def vm_hwm_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def w6_probe(name, items, chunksize):
    """One W6 memory run in this (fresh) interpreter; prints one JSON line."""
    pulled = [0]

    def counted(n):
        for i in range(n):
            pulled[0] += 1
            yield i

    p = implementation(name)
    t0 = time.perf_counter()
    with p.pool(2) as pool:
        results = p.imap(pool, inc, counted(items), chunksize)
        first = next(results)
        pulled_before_first = pulled[0]
        total = first + sum(results)
        seconds = time.perf_counter() - t0
        if hasattr(pool, "close") and hasattr(pool, "join"):
            pool.close()
            pool.join()
    assert total == items * (items + 1) // 2, total
    worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({
        "backend": name if chunksize is None else f"{name}-best",
        "items": items,
        "peak_rss_kib": vm_hwm_kib(),
        "worker_peak_rss_kib": worker_peak or None,
        "pulled_before_first": pulled_before_first,
        "seconds": seconds,
        "chunksize": chunksize,
    }))


def w6_memory(results, name, chunksize, cfg):
    for items in MEMORY_ITEMS:
        cmd = [sys.executable, os.path.abspath(__file__), "--w6-probe", str(items),
               "--peer", name]
        if chunksize is not None:
            cmd += ["--chunksize", str(chunksize)]
        label = name if chunksize is None else f"{name}-best"
        try:
            out = run_child(cmd, dict(os.environ), 120 if cfg.quick else 900)
            probe = json.loads(out.strip().splitlines()[-1])
        except (subprocess.SubprocessError, OSError, ValueError, IndexError) as e:
            results.notes.append(f"W6 memory probe of {label} at {items} items failed: {e}")
            return
        results.memory.append(probe)
        log(f"W6 memory {label} {items}: {probe['peak_rss_kib']} KiB in {probe['seconds']:.2f} s")
        if cfg.quick and items * 10 == MEMORY_ITEMS[-1] and probe["seconds"] > QUICK_PROBE_SECONDS:
            results.notes.append(
                f"W6 memory of {label}: --quick left out {MEMORY_ITEMS[-1]} items "
                f"({items} took {probe['seconds']:.1f} s)")
            return


# ----------------------------------------------------------------- main ----

def versions():
    found = {}
    for package in ["numpy", "loky", "mpire", "shoal"]:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


GROUPS = ["W1", "W2", "W3", "W4", "W5", "W6", "memory"]
# The targets also timed in alternating rounds (hidden groups, run after
# their workload's rows for each shoal backend).
INTERLEAVED = {"W1-interleaved": w1_interleaved, "W6-interleaved": w6_interleaved}


def run_group(group, name, cfg, malloc_tuned, results):
    """Runs one workload of one implementation in this interpreter; returns
    the best W6 chunksize when the group is W6."""
    if name == "python-serial":
        w3_serial(results, cfg)
        return None
    if group in INTERLEAVED:
        return results.attempt(f"py-{group}/{name}",
                               lambda: INTERLEAVED[group](name, results, cfg))
    p = implementation(name)
    workloads = {
        "W1": lambda: w1(p, results, cfg),
        "W2": lambda: w2(p, results, cfg),
        "W3": lambda: w3(p, results, cfg, malloc_tuned),
        "W4": lambda: w4(p, results, cfg),
        "W5": lambda: w5(p, results, cfg),
        "W6": lambda: w6(p, results, cfg),
    }
    return results.attempt(f"py-{group}/{name}", workloads[group])


def run_child(cmd, env, timeout):
    """Runs `cmd` in its own process group and returns its stdout; on a
    timeout, kills the group (the child and its workers)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    # Workers a pool left behind must not outlive their row.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return out


def in_child(group, name, cfg, malloc_tuned=False):
    """Runs one workload of one implementation in a fresh interpreter, so
    that none inherits the allocator state of another (glibc's dynamic mmap
    threshold rises after big frees: W3 runs ~2x faster after W1 in the same
    process) or its workers, and returns its results document."""
    cmd = [sys.executable, os.path.abspath(__file__), "--group", group, "--peer", name]
    if cfg.quick:
        cmd.append("--quick")
    env = dict(os.environ)
    if malloc_tuned:
        cmd.append("--malloc-tuned")
        env.update(TUNED_MALLOC)
    return json.loads(run_child(cmd, env, 300 if cfg.quick else 1800))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions and items (see the module docstring)")
    parser.add_argument("--only", default=",".join(GROUPS),
                        help=f"comma-separated subset of {','.join(GROUPS)}")
    parser.add_argument("--peers", default=",".join(IMPLEMENTATIONS),
                        help=f"comma-separated subset of {','.join(IMPLEMENTATIONS)}")
    parser.add_argument("--group", choices=GROUPS[:-1] + list(INTERLEAVED),
                        help=argparse.SUPPRESS)
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--malloc-tuned", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--w6-probe", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--chunksize", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cfg = Config(args.quick)
    if args.w6_probe is not None:
        w6_probe(args.peer, args.w6_probe, args.chunksize)
        return
    if args.group is not None:
        results = Results()
        chunksize = run_group(args.group, args.peer, cfg, args.malloc_tuned, results)
        json.dump({"measurements": results.measurements, "notes": results.notes,
                   "interleaved": results.interleaved, "chunksize": chunksize}, sys.stdout)
        return
    only = [g for g in GROUPS if g in set(args.only.split(","))]
    unknown = set(args.only.split(",")) - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups: {', '.join(sorted(unknown))}")
    names = [n for n in IMPLEMENTATIONS if n in set(args.peers.split(","))]
    unknown = set(args.peers.split(",")) - set(IMPLEMENTATIONS)
    if unknown:
        parser.error(f"unknown implementations: {', '.join(sorted(unknown))}")

    results = Results()
    available = []
    for name in names:
        why = implementation(name).unavailable()
        if why is None:
            available.append(name)
        else:
            results.notes.append(f"{name} rows left out: {why}")
            log(f"{name} left out: {why}")

    runs = []
    for group in only:
        if group == "memory":
            continue
        for name in available:
            runs.append((group, name, False))
            if f"{group}-interleaved" in INTERLEAVED and name in SHOAL \
                    and "multiprocessing" in available:
                runs.append((f"{group}-interleaved", name, False))
            if group == "W3" and name == "multiprocessing":
                runs.append((group, name, True))
                runs.append((group, "python-serial", False))
    chunksizes = {}
    for group, name, tuned in runs:
        try:
            doc = in_child(group, name, cfg, tuned)
        except (subprocess.SubprocessError, OSError, ValueError) as e:
            results.notes.append(f"py-{group}/{name} failed: {e}")
            continue
        results.measurements.extend(doc["measurements"])
        results.notes.extend(doc["notes"])
        results.interleaved.extend(doc.get("interleaved", []))
        if group == "W6" and doc["measurements"]:
            chunksizes[name] = doc.get("chunksize")
    if "memory" in only:
        for name in available:
            if name not in chunksizes and "W6" in only:
                continue  # its W6 failed; the note says why
            chunksize = chunksizes.get(name, None if name in SHOAL else 1000)
            w6_memory(results, name, chunksize, cfg)

    found = versions()
    json.dump({
        "schema": 2,
        "python": platform.python_version(),
        "numpy": found["numpy"],
        "versions": found,
        "start_method": "fork",
        "measurements": results.measurements,
        "memory": results.memory,
        "interleaved": results.interleaved,
        "notes": results.notes,
    }, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
