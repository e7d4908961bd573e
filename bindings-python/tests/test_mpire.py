"""Beyond multiprocessing, with mpire's names: worker id, shared objects,
worker state with worker_init/worker_exit, lifespan, progress bars,
insights, suspend/resume and GUI events."""

import multiprocessing
import os
import threading

import pytest

import shoal
from shoal import _pool
from tasks import (
    all_three,
    broken_init,
    count_in_state,
    init_count,
    mark_exit,
    square,
    with_id,
    with_shared,
)


@pytest.mark.parametrize("backend", ["process", "threads"])
def test_worker_id_shared_objects_and_state(backend):
    with shoal.Pool(2, backend=backend, pass_worker_id=True) as p:
        out = p.map(with_id, range(20))
        assert [x for _, x in out] == list(range(20))
        assert all(isinstance(w, int) for w, _ in out)
    with shoal.Pool(2, backend=backend, shared_objects={"base": 100}) as p:
        assert p.map(with_shared, [1, 2]) == [101, 102]
        assert p.apply(with_shared, (5,)) == 105
    with shoal.Pool(1, backend=backend, use_worker_state=True, worker_init=init_count) as p:
        # One worker: its state counts every item, from worker_init's 100.
        assert p.map(count_in_state, range(5), chunksize=1) == [101, 102, 103, 104, 105]
    with shoal.Pool(
        1, backend=backend, pass_worker_id=True, shared_objects="s", use_worker_state=True
    ) as p:
        assert p.map(all_three, [7]) == [(True, "s", True, 7)]


def test_worker_exit_on_threads_sees_the_state():
    seen = []
    p = shoal.Pool(
        2,
        backend="threads",
        use_worker_state=True,
        worker_init=lambda state: state.update(n=0),
        worker_exit=lambda state: seen.append(state["n"]),
    )
    p.map(count_in_state, range(10))
    p.close()
    p.join()
    assert len(seen) == 2 and sum(seen) >= 10


def test_worker_exit_runs_in_worker_processes(tmp_path):
    p = shoal.Pool(2, shared_objects=str(tmp_path), worker_exit=mark_exit)
    pids = set(p.map(lambda _shared, _x: os.getpid(), range(50)))
    p.close()
    p.join()
    assert {f.name for f in tmp_path.iterdir()} >= {str(x) for x in pids}


def test_terminate_ends_a_worker_stuck_in_its_exit_hook(tmp_path):
    # worker_exit never returns: terminate (the with block's end) kills
    # the worker after its grace instead of waiting for ever.
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import threading
        import shoal
        def stuck(*_):
            threading.Event().wait()
        with shoal.Pool(1, worker_exit=stuck) as p:
            assert p.map(abs, [-1, -2]) == [1, 2]
        print("ended", flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=os.path.dirname(__file__), capture_output=True,
        text=True, timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout == "ended\n", proc.stderr


@pytest.mark.parametrize("backend", ["process", "threads"])
def test_a_failing_initializer_breaks_the_pool_with_its_message(backend):
    with shoal.Pool(1, initializer=broken_init, backend=backend) as p:
        with pytest.raises(shoal.BrokenPoolError, match="initializer is broken"):
            p.apply(square, (1,))


def test_worker_lifespan_is_maxtasksperchild():
    with pytest.raises(ValueError, match="worker_lifespan"):
        shoal.Pool(1, maxtasksperchild=2, worker_lifespan=2)
    with pytest.raises(ValueError, match="worker_lifespan"):
        shoal.Pool(1, worker_lifespan=0)
    with shoal.Pool(1, backend="threads", worker_lifespan=1, pass_worker_id=True) as p:
        ids = [p.apply(with_id, (i,))[0] for i in range(3)]
    assert len(set(ids)) == 3


@pytest.mark.parametrize("use_tqdm", [True, False])
def test_progress_bars(use_tqdm, monkeypatch, capsys):
    if use_tqdm:
        pytest.importorskip("tqdm")
    else:
        monkeypatch.setattr(_pool, "_tqdm", lambda total: None)
    with shoal.Pool(2, backend="threads") as p:
        assert p.map(square, range(100), progress_bar=True) == [x * x for x in range(100)]
        assert list(p.imap(square, range(10), progress_bar=True)) == [x * x for x in range(10)]
        with pytest.raises(TypeError, match="progress_bar"):
            p.map(square, [1], progress_bar="yes")


def test_a_bar_left_by_break_is_closed():
    pytest.importorskip("tqdm")
    import gc

    with shoal.Pool(1, backend="threads") as p:
        it = p.imap(square, range(100), progress_bar=True)
        next(it)
        bar = it._bar
        del it
        gc.collect()
        # tqdm keeps its open bars in `_instances` (closing removes one).
        assert bar not in type(bar)._instances


def test_insights_table():
    with shoal.Pool(2, backend="threads") as p:
        p.map(square, range(100))
        table = p.insights()
    assert "worker" in table.lower()


def test_suspend_holds_tasks_until_resume():
    with shoal.Pool(1, backend="threads") as p:
        p.suspend()
        r = p.apply_async(square, (3,))
        with pytest.raises(multiprocessing.TimeoutError):
            r.get(timeout=0.2)
        p.resume()
        assert r.get(timeout=30) == 9


def test_map_async_with_events_does_not_wait_for_its_input():
    gate = threading.Event()

    def held_back():
        if not gate.wait(60):
            raise AssertionError("map_async waited for its input")
        yield from range(3)

    got = []
    with shoal.Pool(1, backend="threads") as p:
        r = p.map_async(square, held_back(), on_result=lambda item, value: got.append(value))
        gate.set()  # reached only if map_async returned first
        assert r.get(timeout=60) == [0, 1, 4]
    assert sorted(got) == [0, 1, 4]


def test_a_raising_event_callback_changes_nothing(capfd):
    def broken(*_):
        raise RuntimeError("the GUI broke")

    with shoal.Pool(1, backend="threads") as p:
        r = p.map_async(square, range(3), on_result=broken, on_progress=broken)
        assert r.get(timeout=60) == [0, 1, 4]
    assert "the GUI broke" in capfd.readouterr().err


def test_gui_events_never_block_the_caller():
    results, fractions, finished = [], [], threading.Event()
    with shoal.Pool(2, backend="threads") as p:
        r = p.map_async(
            square,
            range(20),
            on_result=lambda arg, res: results.append((arg, res)),
            on_progress=fractions.append,
            callback=lambda _: finished.set(),
        )
        assert r.get(timeout=30) == [x * x for x in range(20)]
        assert finished.wait(30)
    assert sorted(results) == [(x, x * x) for x in range(20)]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) == 20


def test_tasks_added_while_a_batch_runs():
    with shoal.Pool(2, backend="threads") as p:
        m = p.map_async(square, range(1000))
        singles = [p.apply_async(square, (i,)) for i in range(10)]
        assert [s.get(timeout=30) for s in singles] == [i * i for i in range(10)]
        assert m.get(timeout=30)[-1] == 999 * 999


@pytest.mark.parametrize("backend", ["process", "threads"])
def test_task_messages_reach_the_async_result(backend):
    from tasks import chatty

    seen = []
    with shoal.Pool(2, backend=backend) as p:
        rs = [p.apply_async(chatty, (i,), on_message=lambda k, v: seen.append((k, v))) for i in range(3)]
        assert [r.get(timeout=30) for r in rs] == [0, 2, 4]
        for i, r in enumerate(rs):
            assert r.messages() == [("progress", 0.5), ("log", f"working on {i}"), ("progress", 1.0)]
            assert r.progress == 1.0
    assert len(seen) == 9
