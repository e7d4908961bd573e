"""shoal.Executor as a concurrent.futures.Executor, with asyncio."""

import asyncio
import concurrent.futures
import os
import threading

import pytest

import shoal
from tasks import fail_on_3, init_state, read_state, sleep_then, square, touch


@pytest.fixture(scope="module", params=["process", "threads"])
def executor(request):
    ex = shoal.Executor(2, backend=request.param)
    yield ex
    ex.shutdown(wait=True)


def test_submit_and_map(executor):
    futures = [executor.submit(square, i) for i in range(20)]
    assert [f.result(timeout=30) for f in futures] == [i * i for i in range(20)]
    assert list(executor.map(square, range(100))) == [x * x for x in range(100)]
    assert list(executor.map(pow, [2, 3], [3, 2])) == [8, 9]
    assert list(executor.map(square, range(5), timeout=30)) == [0, 1, 4, 9, 16]
    done, _ = concurrent.futures.wait([executor.submit(square, 2)], timeout=30)
    assert len(done) == 1


def test_exceptions(executor):
    f = executor.submit(fail_on_3, 3)
    assert isinstance(f.exception(timeout=30), KeyError)
    with pytest.raises(KeyError):
        list(executor.map(fail_on_3, range(5)))


def test_asyncio_run_in_executor(executor):
    async def main():
        loop = asyncio.get_running_loop()
        return await asyncio.gather(*(loop.run_in_executor(executor, square, i) for i in range(5)))

    assert asyncio.run(main()) == [0, 1, 4, 9, 16]


def test_shutdown_and_cancel_futures():
    ex = shoal.Executor(1, backend="threads")
    first = ex.submit(sleep_then, 0.2, "first")
    rest = [ex.submit(sleep_then, 0.2, i) for i in range(5)]
    ex.shutdown(wait=True, cancel_futures=True)
    assert first.done()
    assert all(f.done() for f in rest)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square, 1)
    with shoal.Executor(1, backend="threads") as ex2:
        assert ex2.submit(square, 5).result(timeout=30) == 25


def test_process_pool_executor_arguments_keep_their_places():
    # ProcessPoolExecutor(max_workers, mp_context, initializer, initargs).
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with shoal.Executor(1, context, init_state, ("ready",), max_tasks_per_child=5) as ex:
        assert ex.submit(read_state).result(timeout=60) == "ready"
    with shoal.Executor(1, None, init_state, ("spawned",), start_method="spawn") as ex:
        assert ex.submit(read_state).result(timeout=60) == "spawned"


@pytest.mark.parametrize("backend", ["process", "threads"])
def test_a_map_runs_whether_or_not_its_results_are_taken(tmp_path, backend):
    # concurrent.futures' map submits every call at once: `with executor:
    # executor.map(f, items)` runs them all, and the results wait.
    with shoal.Executor(2, backend=backend) as ex:
        ex.map(touch, [str(tmp_path)] * 4, range(4))
        kept = ex.map(square, range(4))
    assert sorted(os.listdir(tmp_path)) == ["0", "1", "2", "3"]
    assert list(kept) == [0, 1, 4, 9]


def _one_call_running_ten_waiting(tmp_path):
    """An executor of one thread running a call until `gate` is set, and
    ten calls waiting behind it (each touches its file in `tmp_path`)."""
    started, gate = threading.Event(), threading.Event()

    def first():
        started.set()
        gate.wait()
        return "first"

    ex = shoal.Executor(1, backend="threads")
    running = ex.submit(first)
    waiting = [ex.submit(touch, str(tmp_path), i) for i in range(10)]
    started.wait()
    return ex, gate, running, waiting


def test_cancel_keeps_a_waiting_call_from_running(tmp_path):
    ex, gate, running, waiting = _one_call_running_ten_waiting(tmp_path)
    # As concurrent.futures: a running call cannot be cancelled.
    assert running.running() and not running.cancel()
    assert not waiting[-1].running()
    assert all(f.cancel() for f in waiting[-3:])
    assert all(f.cancelled() for f in waiting[-3:])
    gate.set()
    ex.shutdown(wait=True)
    assert running.result() == "first"
    assert [f.result() for f in waiting[:-3]] == list(range(7))
    assert sorted(os.listdir(tmp_path), key=int) == [str(i) for i in range(7)]


def test_shutdown_cancel_futures_cancels_only_the_waiting_calls(tmp_path):
    ex, gate, running, waiting = _one_call_running_ten_waiting(tmp_path)
    # The first call ends once the last waiting one is cancelled.
    waiting[-1].add_done_callback(lambda _: gate.set())
    ex.shutdown(wait=True, cancel_futures=True)
    assert running.result() == "first" and not running.cancelled()
    ran = [f for f in waiting if not f.cancelled()]
    assert len(ran) < 10 and all(f.done() for f in waiting)
    assert sorted(os.listdir(tmp_path), key=int) == [str(f.result()) for f in ran]


@pytest.mark.parametrize("shutdown", ["", "ex.shutdown(wait=False)"])
def test_calls_run_before_the_interpreter_exits(tmp_path, shutdown):
    # concurrent.futures waits for its executors' work at exit.
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import shoal
        from tasks import sleep_then, touch
        ex = shoal.Executor(1)
        ex.submit(sleep_then, 0.2, None)
        for i in range(3):
            ex.submit(touch, {str(tmp_path)!r}, i)
        {shutdown}
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=os.path.dirname(__file__), check=True, timeout=120)
    assert sorted(os.listdir(tmp_path)) == ["0", "1", "2"]
