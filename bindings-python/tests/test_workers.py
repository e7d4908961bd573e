"""Worker life: initializer, maxtasksperchild, crashes, timeouts."""

import functools
import threading

import pytest

import shoal
from tasks import exit_on, kill_self_on, pid, read_state, init_state, sleep_then, square


@pytest.mark.parametrize("backend", ["process", "threads"])
def test_initializer_runs_in_every_worker(backend):
    with shoal.Pool(2, initializer=init_state, initargs=("ready",), backend=backend) as p:
        assert set(p.map(read_state, range(20))) == {"ready"}


def test_maxtasksperchild_replaces_workers():
    with shoal.Pool(1, maxtasksperchild=1) as p:
        pids = [p.apply(pid) for _ in range(3)]
    assert len(set(pids)) == 3


def test_a_killed_worker_fails_only_its_tasks():
    with shoal.Pool(2) as p:
        results = [p.apply_async(kill_self_on, (i, 3)) for i in range(8)]
        outcomes = []
        for r in results:
            try:
                outcomes.append(r.get(timeout=60))
            except shoal.WorkerLostError as e:
                outcomes.append("lost")
                assert "SIGKILL" in str(e) or "signal" in str(e)
        assert outcomes[3] == "lost"
        assert [o for i, o in enumerate(outcomes) if i != 3] == [0, 1, 2, 4, 5, 6, 7]
        # A replacement worker took over.
        assert p.map(square, range(10)) == [x * x for x in range(10)]


@pytest.mark.parametrize(
    "how", ["imap", "imap_unordered", "lazy-imap", "lazy-imap_unordered", "map_async"]
)
def test_a_lost_chunk_fails_only_the_item_that_killed_its_worker(how):
    # Chunks of 20: the chunk holding item 5 is lost with its worker; its
    # items run again one by one, and only item 5 fails.
    kill_on_5 = functools.partial(kill_self_on, bad=5)
    with shoal.Pool(2) as p:
        outcomes = {}
        if how == "map_async":
            def record(item, value):
                outcomes[item] = "lost" if isinstance(value, shoal.WorkerLostError) else value

            with pytest.raises(shoal.WorkerLostError):
                p.map_async(kill_on_5, range(40), chunksize=20, on_result=record).get(timeout=60)
        else:
            items = iter(range(40)) if how.startswith("lazy") else list(range(40))
            it = getattr(p, how.removeprefix("lazy-"))(kill_on_5, items, chunksize=20)
            for i in range(40):
                try:
                    outcomes[i] = next(it)
                except shoal.WorkerLostError:
                    outcomes[i] = "lost"
        values = sorted(v for v in outcomes.values() if v != "lost")
        assert list(outcomes.values()).count("lost") == 1
        assert values == [x for x in range(40) if x != 5]
        if not how.endswith("imap_unordered"):  # keyed by item
            assert outcomes[5] == "lost"


def test_sys_exit_in_a_task_loses_the_worker():
    with shoal.Pool(1) as p:
        with pytest.raises(shoal.WorkerLostError):
            p.apply(exit_on, (1, 1))
        assert p.apply(square, (4,)) == 16


def test_map_with_a_crash_raises_and_the_pool_goes_on():
    with shoal.Pool(2) as p:
        with pytest.raises(shoal.WorkerLostError):
            p.starmap(kill_self_on, [(i, 5) for i in range(10)], chunksize=1)
        assert p.map(square, range(5)) == [0, 1, 4, 9, 16]


@pytest.mark.parametrize("backend", ["process", "threads"])
def test_task_timeout_stops_the_task(backend):
    with shoal.Pool(1, task_timeout=0.5, backend=backend) as p:
        with pytest.raises(shoal.TaskTimeoutError):
            p.apply(sleep_then, (60, "never"))
        with pytest.raises(TimeoutError):  # also a builtin TimeoutError
            p.apply(sleep_then, (60, "never"))
        assert p.apply(square, (3,)) == 9


@pytest.mark.parametrize("how", ["apply", "map", "imap"])
def test_task_timeout_stops_a_python_loop_on_a_thread(how):
    # The threads backend cannot kill its worker: the loop gets
    # TaskTimeoutError raised in it (as mpire's threads do).
    stopped = threading.Event()

    def spin(_):
        try:
            while True:
                pass
        finally:
            stopped.set()

    with shoal.Pool(1, task_timeout=0.2, backend="threads") as p:
        with pytest.raises(shoal.TaskTimeoutError):
            if how == "apply":
                p.apply(spin, (0,))
            elif how == "map":
                p.map(spin, [0])
            else:
                list(p.imap(spin, [0]))
        assert stopped.wait(60)
        assert p.apply(square, (3,)) == 9
