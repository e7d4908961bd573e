"""Messages of batch items (map, imap, map_async) and of Executor futures:
``shoal.progress``/``shoal.log`` in a task reach ``on_message(index, kind,
payload)`` or ``Future.messages()``."""

import collections
import threading

import pytest

import shoal
from shoal import _codec
from tasks import chatty, chatty_fail_on_3, chatty_in_two_halves, flood, gated_chatty, square

BACKENDS = ["process", "threads"]


def expected(i):
    return [("progress", 0.5), ("log", f"working on {i}"), ("progress", 1.0)]


def collector():
    """An on_message that files messages by item index, and the files."""
    got = collections.defaultdict(list)
    lock = threading.Lock()

    def on_message(index, kind, payload):
        with lock:
            got[index].append((kind, payload))

    return on_message, got


@pytest.mark.parametrize("backend", BACKENDS)
def test_map_and_starmap_items_messages_carry_their_index(backend):
    with shoal.Pool(2, backend=backend) as p:
        on_message, got = collector()
        assert p.map(chatty, range(6), on_message=on_message) == [0, 2, 4, 6, 8, 10]
        assert dict(got) == {i: expected(i) for i in range(6)}
        on_message, got = collector()
        assert p.starmap(chatty, [(7,), (8,)], on_message=on_message) == [14, 16]
        assert dict(got) == {0: expected(7), 1: expected(8)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_imap_delivers_messages_as_it_iterates(backend):
    with shoal.Pool(2, backend=backend) as p:
        on_message, got = collector()
        seen_before = []
        for i, value in enumerate(p.imap(chatty, iter(range(5)), on_message=on_message)):
            # An item's messages come before its result.
            seen_before.append(got[i] == expected(i))
            assert value == 2 * i
        assert all(seen_before), seen_before
        on_message, got = collector()
        assert sorted(p.imap_unordered(chatty, range(4), on_message=on_message)) == [0, 2, 4, 6]
        assert dict(got) == {i: expected(i) for i in range(4)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_map_async_messages_arrive_before_the_result(backend):
    with shoal.Pool(2, backend=backend) as p:
        on_message, got = collector()
        r = p.map_async(chatty, range(5), on_message=on_message)
        assert r.get(timeout=60) == [0, 2, 4, 6, 8]
        assert dict(got) == {i: expected(i) for i in range(5)}
        on_message, got = collector()
        r = p.starmap_async(chatty, [(1,)], on_message=on_message)
        assert r.get(timeout=60) == [2]
        assert dict(got) == {0: expected(1)}


def test_a_raising_message_callback_changes_nothing(capsys):
    def bad(index, kind, payload):
        raise RuntimeError("callback broke")

    with shoal.Pool(2, backend="threads") as p:
        assert p.map(chatty, range(3), on_message=bad) == [0, 2, 4]
        assert p.map_async(chatty, range(3), on_message=bad).get(timeout=60) == [0, 2, 4]
        assert list(p.imap(chatty, range(3), on_message=bad)) == [0, 2, 4]
        assert p.map(square, range(3)) == [0, 1, 4]
    assert "callback broke" in capsys.readouterr().err


def test_on_message_is_checked():
    with shoal.Pool(1, backend="threads") as p:
        with pytest.raises(TypeError, match="on_message must be callable"):
            p.map(square, range(3), on_message="print")
        with pytest.raises(TypeError, match="on_message must be callable"):
            p.imap(square, range(3), chunksize=5, on_message=1)
        with pytest.raises(TypeError, match="on_message must be callable"):
            p.map_async(square, range(3), on_message=object())
        with pytest.raises(TypeError, match="on_message must be callable"):
            p.starmap_async(square, [(1,)], on_message="x")
        with pytest.raises(ValueError, match="messages: needs .*results, not values"):
            p._core.batch(square, None, _codec.CALL, [1], values=True, messages=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_messages_of_chunks_of_many_items_name_each_item(backend):
    """A chunk of many items runs them one by one and each message names
    its own item, whatever the chunk size (explicit, uneven last chunk, or
    automatic)."""
    n = 23
    with shoal.Pool(2, backend=backend) as p:
        for chunksize in (7, n, None):
            on_message, got = collector()
            assert p.map(chatty, range(n), chunksize, on_message=on_message) == [2 * i for i in range(n)]
            assert dict(got) == {i: expected(i) for i in range(n)}, chunksize
        on_message, got = collector()
        assert list(p.imap(chatty, range(n), 5, on_message=on_message)) == [2 * i for i in range(n)]
        assert dict(got) == {i: expected(i) for i in range(n)}
        on_message, got = collector()
        assert sorted(p.imap_unordered(chatty, range(n), 4, on_message=on_message)) == [2 * i for i in range(n)]
        assert dict(got) == {i: expected(i) for i in range(n)}
        on_message, got = collector()
        assert p.map_async(chatty, range(n), 6, on_message=on_message).get(timeout=60) == [2 * i for i in range(n)]
        assert dict(got) == {i: expected(i) for i in range(n)}
        on_message, got = collector()
        pairs = [(i,) for i in range(n)]
        assert p.starmap(chatty, pairs, 8, on_message=on_message) == [2 * i for i in range(n)]
        assert dict(got) == {i: expected(i) for i in range(n)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_item_that_fails_in_a_chunk_keeps_the_others_messages_in_place(backend):
    with shoal.Pool(2, backend=backend) as p:
        on_message, got = collector()
        with pytest.raises(KeyError, match="three"):
            p.map(chatty_fail_on_3, range(8), 4, on_message=on_message)
        # Item 3 logged before it raised; every item's messages name it.
        assert dict(got) == {i: expected(i) if i != 3 else [("log", "working on 3")] for i in range(8)}
        on_message, got = collector()
        out = list(p.imap(chatty, range(8), 4, on_message=on_message))
        assert out == [2 * i for i in range(8)]
        assert dict(got) == {i: expected(i) for i in range(8)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_worker_forgets_the_running_item_after_its_chunk(backend):
    """After a chunk of a batch with on_message (here one that ends with a
    failing item), the same worker sends plain messages again: an
    apply_async task's messages are its own, not filed under an item."""
    with shoal.Pool(1, backend=backend) as p:
        on_message, got = collector()
        with pytest.raises(KeyError, match="three"):
            p.map(chatty_fail_on_3, range(4), 4, on_message=on_message)
        assert dict(got) == {0: expected(0), 1: expected(1), 2: expected(2), 3: [("log", "working on 3")]}
        r = p.apply_async(chatty, (9,))
        assert r.get(timeout=60) == 18
        assert r.messages() == expected(9)


def test_map_without_on_message_still_runs_in_c_loops():
    with shoal.Pool(2, backend="threads") as p:
        assert p.map(chatty, range(50), 10) == [2 * i for i in range(50)]
        assert list(p.imap(chatty, range(50), 10)) == [2 * i for i in range(50)]


@pytest.mark.parametrize("mode", [_codec.CALL, _codec.STAR, _codec.APPLY])
def test_run_items_with_item_messages_gives_the_same_results(mode):
    def f(*args, **kwargs):
        if args and args[0] == 2:
            raise ValueError("two")
        return (args, kwargs)

    items = {
        _codec.CALL: [0, 1, 2, 3],
        _codec.STAR: [(0,), (1, "a"), (2,), (3,)],
        _codec.APPLY: [((0,), {}), ((1,), {"k": 1}), ((2,), {}), ((3,), {})],
    }[mode]
    plain_failed, named_failed = [], []
    plain = _codec.run_items(f, mode, items, plain_failed)
    named = _codec.run_items(f, mode | _codec.ITEM_MESSAGES, items, named_failed)
    assert plain_failed == named_failed == [2]
    assert [type(r) for r in plain] == [type(r) for r in named]
    assert [r for r in plain if type(r) is not _codec.Failure] == [r for r in named if type(r) is not _codec.Failure]
    assert str(named[2].exc) == "two"


@pytest.mark.parametrize("backend", BACKENDS)
def test_executor_futures_keep_their_messages(backend):
    with shoal.Executor(2, backend=backend) as ex:
        futures = [ex.submit(chatty, i) for i in range(3)]
        assert [f.result(timeout=60) for f in futures] == [0, 2, 4]
        for i, f in enumerate(futures):
            assert isinstance(f, shoal.Future)
            assert f.messages() == expected(i)
            assert f.progress == 1.0


def test_executor_future_message_callbacks():
    gate = threading.Event()
    seen = []
    with shoal.Executor(1, backend="threads") as ex:
        f = ex.submit(gated_chatty, gate, 4)
        f.add_message_callback(lambda kind, payload: seen.append((kind, payload)))
        with pytest.raises(TypeError, match="fn must be callable"):
            f.add_message_callback(None)
        gate.set()
        assert f.result(timeout=60) == 8
    assert seen == expected(4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_message_callback_added_late_gets_the_messages_that_came(backend):
    with shoal.Executor(1, backend=backend) as ex:
        f = ex.submit(chatty, 3)
        assert f.result(timeout=60) == 6
        seen = []
        f.add_message_callback(lambda kind, payload: seen.append((kind, payload)))
        assert seen == expected(3)


def test_a_message_callback_added_mid_task_gets_each_message_once_in_order():
    """Whether the first message reached the future before the callback
    was added or not, the callback sees it exactly once, before the rest."""
    started, gate = threading.Event(), threading.Event()
    seen = []
    with shoal.Executor(1, backend="threads") as ex:
        f = ex.submit(chatty_in_two_halves, started, gate, 5)
        assert started.wait(30)
        f.add_message_callback(lambda kind, payload: seen.append((kind, payload)))
        gate.set()
        assert f.result(timeout=60) == 10
    assert seen == expected(5)
    assert f.messages() == expected(5)


def test_a_raising_future_message_callback_changes_nothing(capsys):
    def bad(kind, payload):
        raise RuntimeError("future callback broke")

    with shoal.Executor(1, backend="threads") as ex:
        f = ex.submit(chatty, 2)
        f.add_message_callback(bad)
        assert f.result(timeout=60) == 4
        assert f.messages() == expected(2)
        assert ex.submit(square, 3).result(timeout=60) == 9
    assert "future callback broke" in capsys.readouterr().err


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_burst_of_messages_never_blocks_the_task(backend):
    # More messages than the results' queue holds, sent by a task that
    # holds the interpreter lock (threads) while its consumer needs it.
    n = 100_000
    with shoal.Pool(1, backend=backend) as p:
        assert p.apply(flood, (n,)) == n
        seen = []
        assert p.map(flood, [n], on_message=lambda i, kind, text: seen.append(text)) == [n]
        assert len(seen) == n
