"""Messages of batch items (map, imap, map_async) and of Executor futures:
``shoal.progress``/``shoal.log`` in a task reach ``on_message(index, kind,
payload)`` or ``Future.messages()``."""

import collections
import threading

import pytest

import shoal
from tasks import chatty, gated_chatty, square

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
        with pytest.raises(ValueError, match="on_message.*chunksize must be None or 1"):
            p.imap(square, range(3), chunksize=5, on_message=print)
        with pytest.raises(ValueError, match="on_message.*chunksize"):
            p.map_async(square, range(3), chunksize=2, on_message=print)
        # chunksize 1 is what messages need: accepted.
        assert p.map(square, range(3), chunksize=1, on_message=print) == [0, 1, 4]


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
