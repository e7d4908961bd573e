"""shoal.Pool as a drop-in for multiprocessing.Pool, on both backends."""

import functools
import itertools
import os
import multiprocessing
import threading
import time

import pytest

import shoal
from tasks import (
    NeedsTwoArgs,
    Small,
    add,
    exit_on,
    fail_on_3,
    identity,
    kill_self_on,
    make_lock,
    nested_sum,
    odd_one_out,
    raise_unpicklable,
    report,
    sleep_then,
    square,
    touch,
    whoami,
)


def test_map_starmap_imap(pool):
    assert pool.map(square, range(1000)) == [x * x for x in range(1000)]
    assert pool.map(square, []) == []
    assert pool.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
    assert list(pool.imap(square, range(50))) == [x * x for x in range(50)]
    assert sorted(pool.imap_unordered(square, range(50))) == [x * x for x in range(50)]
    assert sorted(pool.map_unordered(square, range(50))) == [x * x for x in range(50)]
    assert pool.map(square, range(10), chunksize=3) == [x * x for x in range(10)]


def test_lambdas_and_closures(pool):
    k = 7
    assert pool.map(lambda x: x + k, [1, 2]) == [8, 9]
    assert pool.apply(lambda a, b=0: a * b, (6,), {"b": 7}) == 42


def test_terminate_right_after_apply_async_ends_every_call(capfd):
    # Sent or not yet sent to a worker when the pool stops, each call ends
    # with CancelledError: none waits forever, no thread dies loudly.
    for _ in range(5):
        p = shoal.Pool(1)
        calls = [p.apply_async(sleep_then, (30, i)) for i in range(3)]
        p.terminate()
        p.join()
        for call in calls:
            with pytest.raises(shoal.CancelledError):
                call.get(timeout=60)
    assert "Traceback" not in capfd.readouterr().err


def test_apply_and_async_results_with_callbacks(pool):
    assert pool.apply(divmod, (7, 2)) == (3, 1)
    got, errors, done = [], [], threading.Event()
    results = [pool.apply_async(square, (i,), callback=got.append) for i in range(20)]
    assert [r.get(timeout=30) for r in results] == [i * i for i in range(20)]
    assert sorted(got) == [i * i for i in range(20)]
    assert all(r.ready() and r.successful() for r in results)
    bad = pool.apply_async(fail_on_3, (3,), error_callback=lambda e: (errors.append(e), done.set()))
    with pytest.raises(KeyError):
        bad.get(timeout=30)
    assert done.wait(30) and isinstance(errors[0], KeyError)
    assert not bad.successful()
    m = pool.map_async(square, range(10), callback=got.append)
    assert m.get(timeout=30) == [x * x for x in range(10)]
    s = pool.starmap_async(add, [(1, 1)])
    assert s.get(timeout=30) == [2]


def test_a_pools_callbacks_never_overlap(pool):
    # As multiprocessing, which runs them on one thread: the first
    # callback waits a while for another to start beside it; none can.
    inside, overlapped, first = [0], [], threading.Event()
    lock = threading.Lock()

    def callback(_):
        with lock:
            inside[0] += 1
            if inside[0] > 1:
                overlapped.append(True)
        if not first.is_set():
            first.set()
            threading.Event().wait(0.5)
        with lock:
            inside[0] -= 1

    results = [pool.map_async(square, [i], callback=callback) for i in range(4)]
    results += [pool.apply_async(square, (i,), callback=callback) for i in range(4)]
    for r in results:
        r.get(timeout=60)
    assert not overlapped


def test_a_raising_callback_does_not_keep_get_waiting(pool, capfd):
    def raising(_):
        raise RuntimeError("callback broke")

    assert pool.apply_async(square, (3,), callback=raising).get(timeout=60) == 9
    assert pool.map_async(square, [2], callback=raising).get(timeout=60) == [4]
    assert "callback broke" in capfd.readouterr().err


def test_get_timeout_and_not_ready():
    with shoal.Pool(1, backend="threads") as p:
        r = p.apply_async(sleep_then, (60, "late"))
        with pytest.raises(ValueError):
            r.successful()
        with pytest.raises(multiprocessing.TimeoutError):
            r.get(timeout=0.01)
        p.terminate()
        with pytest.raises(shoal.CancelledError):
            r.get(timeout=30)


def test_exceptions_keep_their_type_and_remote_traceback(pool):
    with pytest.raises(KeyError) as info:
        pool.map(fail_on_3, range(10))
    if pool.backend == "process":
        assert isinstance(info.value.__cause__, shoal.RemoteTraceback)
        assert "fail_on_3" in str(info.value.__cause__)
    # imap raises at the failing position and goes on.
    it = pool.imap(fail_on_3, range(5))
    assert [next(it), next(it), next(it)] == [0, 1, 2]
    with pytest.raises(KeyError):
        next(it)
    assert next(it) == 4
    # The pool keeps working.
    assert pool.map(square, [3]) == [9]


def test_imap_iterated_every_way_sees_each_result_once(pool):
    # `for` and `next(it)` take ready values through the type's iterator
    # slot; `it.next(timeout)` and `it.__next__()` through the method;
    # failures through the slow path. All read the same place.
    n = 50_000
    items = [*range(4, n), 3, *range(n, 2 * n)]
    it = pool.imap(fail_on_3, iter(items))
    got = []
    for x in it:
        got.append(x)
        if len(got) == 1000:
            break
    got.append(next(it))
    got.append(it.next(timeout=30))
    got.append(it.__next__())
    for x in it:
        got.append(x)
        if len(got) == 30_000:
            break
    with pytest.raises(KeyError):
        for x in it:
            got.append(x)
    got.extend(it)
    assert got == [x for x in items if x != 3]


def test_unpicklable_exception_becomes_remote_error(process_pool):
    with pytest.raises(shoal.RemoteError, match="NeedsTwoArgs"):
        process_pool.apply(raise_unpicklable, (0,))


def test_unpicklable_initargs_are_named():
    with pytest.raises(shoal.SerializationError, match="initializer, initargs"):
        shoal.Pool(1, initializer=print, initargs=(threading.Lock(),))


def test_unpicklable_argument_result_and_function(process_pool):
    with pytest.raises(shoal.SerializationError, match="item 1"):
        process_pool.map(square, [1, threading.Lock(), 3], chunksize=3)
    with pytest.raises(shoal.SerializationError, match="cannot pickle the result"):
        process_pool.map(make_lock, [0])
    lock = threading.Lock()
    with pytest.raises(shoal.SerializationError, match="function"):
        process_pool.map(lambda x: lock, [0])
    assert process_pool.map(square, [2]) == [4]


def test_input_errors_are_raised(pool):
    def broken():
        yield 1
        raise RuntimeError("input broke")

    with pytest.raises(RuntimeError, match="input broke"):
        pool.map(square, broken())


def test_imap_is_lazy_over_an_endless_generator(pool):
    pulled = itertools.count()

    def endless():
        for x in itertools.count():
            next(pulled)
            yield x

    first = list(itertools.islice(pool.imap(square, endless()), 10))
    assert first == [x * x for x in range(10)]
    # Bounded by about 9 lazy chunks of at most 16384 items: the pump's
    # queue (2), the one the pump holds, those in flight (2 per worker),
    # the one being read and a pulled block.
    assert next(pulled) < 200_000


def test_imap_hands_over_the_items_of_a_slow_input_soon(pool):
    # Items that take 5 ms each to make: the first result must not wait
    # for a chunk's (or a pull's) worth of them, up to 16384.
    made = [0]

    def slow():
        for i in range(2000):
            time.sleep(0.005)
            made[0] += 1
            yield i

    it = pool.imap(square, slow())
    assert next(it) == 0
    assert made[0] < 1000, made[0]
    it.cancel()


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("backend", ["process", "threads"])
def test_join_runs_every_task_of_an_imap_not_yet_iterated(tmp_path, backend, ordered):
    # As multiprocessing: an imap's tasks start with it, and join waits for
    # them (past the bound a consumer would keep); the results wait for
    # the iterator.
    p = shoal.Pool(2, backend=backend)
    n = 40_000
    it = (p.imap if ordered else p.imap_unordered)(square, range(n))
    files = p.imap(functools.partial(touch, str(tmp_path)), (i for i in range(5)))
    p.close()
    p.join()
    assert sorted(os.listdir(tmp_path)) == [str(i) for i in range(5)]
    got = list(it)
    assert (got if ordered else sorted(got)) == [x * x for x in range(n)]
    assert list(files) == list(range(5))


@pytest.mark.parametrize("ordered", [True, False])
def test_imap_over_a_generator_in_chunks_that_span_its_blocks(pool, ordered):
    # The input is pulled 16384 items at a time (the core's lazy chunk
    # cap); chunks of 3000 cut across.
    n = 40_000
    imap = pool.imap if ordered else pool.imap_unordered
    got = list(imap(square, (x for x in range(n)), chunksize=3000))
    assert (got if ordered else sorted(got)) == [x * x for x in range(n)]
    got = list(imap(square, (x for x in range(n))))
    assert (got if ordered else sorted(got)) == [x * x for x in range(n)]
    # A big int in every chunk: the chunks are pickled, not packed.
    items = [x if x % 1000 else 2**70 + x for x in range(n)]
    got = list(imap(square, iter(items), chunksize=3000))
    expected = [x * x for x in items]
    assert got == expected if ordered else sorted(got) == sorted(expected)


def test_imap_runs_the_items_before_an_input_error(pool):
    def broken():
        yield from range(5000)
        raise RuntimeError("input broke")

    it = pool.imap(square, broken())
    assert [next(it) for _ in range(5000)] == [x * x for x in range(5000)]
    with pytest.raises(RuntimeError, match="input broke"):
        next(it)
    with pytest.raises(RuntimeError, match="input broke"):
        list(pool.imap_unordered(square, broken()))


def test_imap_with_a_lost_chunk_goes_on_after_it():
    with shoal.Pool(2) as p:
        it = p.imap(functools.partial(kill_self_on, bad=5), iter(range(10)), chunksize=1)
        assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
        with pytest.raises(shoal.WorkerLostError):
            next(it)
        assert list(it) == [6, 7, 8, 9]


def test_worker_id_and_messages(pool):
    ids = set(pool.map(whoami, range(200)))
    assert ids and all(isinstance(i, int) for i in ids)
    assert shoal.worker_id() is None
    assert pool.map(report, [1, 2]) == [1, 2]
    with pytest.raises(ValueError):
        shoal.progress(2.0)


def test_nested_pools(process_pool):
    assert process_pool.map(nested_sum, [10, 20]) == [285, 2470]


def test_close_join_and_closed_pool():
    p = shoal.Pool(2, backend="threads")
    r = p.apply_async(sleep_then, (0.01, "done"))
    p.close()
    with pytest.raises(ValueError):
        p.map(square, [1])
    p.join()
    assert r.get(timeout=0) == "done"
    p2 = shoal.Pool(1, backend="threads")
    with pytest.raises(ValueError, match="still running"):
        p2.join()
    p2.terminate()


def test_gil_is_released_while_waiting():
    """A task that needs another Python thread of the caller to progress."""
    started, released = threading.Event(), threading.Event()

    def waits(_):
        started.set()
        return released.wait(30)

    helper = threading.Thread(target=lambda: started.wait(30) and released.set())
    helper.start()
    with shoal.Pool(1, backend="threads") as p:
        assert p.map(waits, [0]) == [True]
    helper.join()


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"processes": 0}, "processes"),
        ({"processes": -1}, "processes"),
        ({"maxtasksperchild": 0}, "maxtasksperchild"),
        ({"backend": "gpu"}, "backend"),
        ({"task_timeout": -1}, "task_timeout"),
        ({"start_method": "teleport"}, "start_method"),
    ],
)
def test_invalid_options_name_the_option(kwargs, option):
    with pytest.raises(ValueError, match=option):
        shoal.Pool(**kwargs)


def test_invalid_batch_options(pool):
    with pytest.raises(ValueError, match="chunksize"):
        pool.map(square, [1], chunksize=0)
    with pytest.raises(TypeError, match="initializer"):
        shoal.Pool(1, initializer=5)
    with pytest.raises(TypeError, match="callable"):
        pool.map(5, [1])


@pytest.mark.parametrize("how", ["map", "imap", "join"])
def test_ctrl_c_interrupts_a_waiting_caller(how):
    """Ctrl-C (SIGINT) raises KeyboardInterrupt in a caller waiting for results."""
    import os
    import signal

    started, release = threading.Event(), threading.Event()

    def slow(_):
        started.set()
        release.wait(60)
        return 1

    def interrupt():
        started.wait(60)
        os.kill(os.getpid(), signal.SIGINT)

    helper = threading.Thread(target=interrupt)
    p = shoal.Pool(1, backend="threads")
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            if how == "map":
                p.map(slow, [0])
            elif how == "imap":
                next(p.imap(slow, [0]))
            else:
                p.apply_async(slow, (0,))
                p.close()
                p.join()
    finally:
        release.set()
        helper.join()
        p.terminate()


def test_ctrl_c_in_map_cancels_the_rest_of_its_batch():
    # The items not yet sent when Ctrl-C interrupts `map` never run, and
    # the next call does not wait behind them.
    import os
    import signal

    started, release, ran = threading.Event(), threading.Event(), []

    def slow(x):
        ran.append(x)
        started.set()
        release.wait(60)
        return x

    def interrupt():
        started.wait(60)
        os.kill(os.getpid(), signal.SIGINT)

    helper = threading.Thread(target=interrupt)
    with shoal.Pool(1, backend="threads") as p:
        helper.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                p.map(slow, range(20), chunksize=1)
        finally:
            release.set()
            helper.join()
        assert p.map(square, range(3)) == [0, 1, 4]
        assert len(ran) < 20, ran


@pytest.mark.parametrize("backend", ["process", "threads"])
def test_a_pool_dropped_without_close_is_collected(backend):
    # Its single calls' delivery thread holds no reference to it: once the
    # caller drops it, it goes, with its workers.
    import gc
    import weakref

    p = shoal.Pool(2, backend=backend)
    assert p.apply(square, (3,)) == 9
    assert p.apply_async(square, (4,)).get(timeout=60) == 16
    gone = weakref.ref(p)
    del p
    gc.collect()
    assert gone() is None


def test_large_items_get_small_automatic_chunks():
    from shoal._pool import CHUNK_BYTES, _large_item_chunksize

    assert _large_item_chunksize([bytes(CHUNK_BYTES)] * 3) == 1
    assert _large_item_chunksize([bytes(CHUNK_BYTES // 4)] * 3) in (3, 4)
    assert _large_item_chunksize(list(range(100))) is None
    assert _large_item_chunksize(iter([bytes(CHUNK_BYTES)])) is None
    assert _large_item_chunksize([]) is None


def test_chunking_keys_name_the_function():
    from shoal._pool import _chunking_key

    class Callable:
        def __call__(self, x):
            return x

    assert _chunking_key(square) == "tasks.square"
    assert _chunking_key(functools.partial(add, 1)) == "tasks.add"
    assert _chunking_key(Callable()).endswith("Callable")
    assert _chunking_key(lambda x: x).endswith("<lambda>")


@pytest.mark.parametrize(
    "items",
    [
        list(range(-50, 50)),
        [-(2**63), 2**63 - 1] * 8,
        [0.5, -0.0, float("inf"), float("-inf"), 1e308, 5e-324] * 4,
        [2**64, 1, 2, 3, 4, 5, 6, 7, 8],  # too big for 64 bits
        [True, False] * 8,  # bools stay bools
        [1, 2, 3, 4, 5, 6, 7, 8.0],  # a mix
        [Small(i) for i in range(10)],
        list(range(5)),  # too short to pack
    ],
)
def test_plain_numbers_keep_their_value_and_type(process_pool, items):
    # Lists of 64-bit ints or floats travel packed (src/packed.rs), both as
    # arguments and as results; everything else as pickles.
    out = process_pool.map(identity, items)
    assert out == items
    assert [type(x) for x in out] == [type(x) for x in items]
    doubled = process_pool.map(identity, [x for x in items for _ in (0, 1)], chunksize=3)
    assert [type(x) for x in doubled] == [type(x) for x in items for _ in (0, 1)]
    # imap keeps packed results as bytes until each is taken.
    lazy = list(process_pool.imap(identity, iter(items)))
    assert lazy == items and [type(x) for x in lazy] == [type(x) for x in items]


def test_results_that_stop_packing_midway_keep_their_order_and_type(process_pool):
    # The worker runs a packed chunk in a Rust loop (src/worker.rs) until a
    # result does not pack or a call raises, then hands the rest to Python.
    items = list(range(40))
    expected = [odd_one_out(x) for x in items]
    for chunksize in (40, 10, 8):
        out = process_pool.map(odd_one_out, items, chunksize=chunksize)
        assert out == expected and [type(x) for x in out] == [type(x) for x in expected]
    it = process_pool.imap(fail_on_3, iter(range(20)), chunksize=20)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(KeyError):
        next(it)
    assert list(it) == list(range(4, 20))


def test_a_task_that_exits_midway_through_a_packed_chunk_loses_its_worker(process_pool):
    with pytest.raises(shoal.WorkerLostError):
        process_pool.map(functools.partial(exit_on, bad=5), range(20), chunksize=20)
    assert process_pool.map(square, range(20)) == [x * x for x in range(20)]


def test_nan_payloads_and_negative_zero_survive_packing(process_pool):
    import math
    import struct

    nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_0000_1234))[0]
    for out in (
        process_pool.map(identity, [nan, -0.0] * 8),
        list(process_pool.imap(identity, iter([nan, -0.0] * 8))),
    ):
        assert struct.pack("<d", out[0]) == struct.pack("<d", nan)
        assert math.copysign(1.0, out[1]) == -1.0


def test_packed_buffers_are_checked():
    from shoal import _shoal

    assert _shoal.unpack(_shoal.pack(list(range(10)))) == list(range(10))
    assert _shoal.pack([1, 2]) is None
    assert _shoal.pack(["a"] * 10) is None
    with pytest.raises(ValueError, match="8-byte"):
        _shoal.unpack(b"q123")
    with pytest.raises(ValueError, match="tag"):
        _shoal.unpack(b"x" + bytes(8))
    with pytest.raises(ValueError, match="empty"):
        _shoal.unpack(b"")
