"""The fork start method: workers are forks of the caller's interpreter."""

import os

import pytest

import shoal
from tasks import fail_on_3, kill_self_on, mark_exit, pid, read_state, init_state, sleep_then, square, with_shared


@pytest.fixture(scope="module")
def fork_pool():
    p = shoal.Pool(2, start_method="fork")
    yield p
    p.terminate()


def test_forked_workers_run_functions_lambdas_and_raise(fork_pool):
    assert fork_pool.map(square, range(100)) == [x * x for x in range(100)]
    k = 5
    assert fork_pool.map(lambda x: x + k, [1]) == [6]
    with pytest.raises(KeyError) as info:
        fork_pool.map(fail_on_3, range(5))
    assert isinstance(info.value.__cause__, shoal.RemoteTraceback)
    pids = set(fork_pool.map(pid, range(50)))
    assert os.getpid() not in pids


def test_forked_workers_take_init_state_and_shared_objects(tmp_path):
    with shoal.Pool(2, start_method="fork", initializer=init_state, initargs=("forked",)) as p:
        assert set(p.map(read_state, range(10))) == {"forked"}
    with shoal.Pool(1, start_method="fork", shared_objects={"base": 1}) as p:
        assert p.map(with_shared, [1]) == [2]
    p = shoal.Pool(1, start_method="fork", shared_objects=str(tmp_path), worker_exit=mark_exit)
    p.map(lambda _shared, x: x, range(3))
    p.close()
    p.join()
    assert len(list(tmp_path.iterdir())) == 1


def test_a_killed_forked_worker_fails_only_its_task_and_is_replaced():
    with shoal.Pool(2, start_method="fork") as p:
        with pytest.raises(shoal.WorkerLostError):
            p.apply(kill_self_on, (1, 1))
        assert p.map(square, range(10)) == [x * x for x in range(10)]


def test_task_timeout_replaces_a_forked_worker():
    with shoal.Pool(1, start_method="fork", task_timeout=0.5) as p:
        with pytest.raises(shoal.TaskTimeoutError):
            p.apply(sleep_then, (60, "never"))
        assert p.apply(square, (4,)) == 16
