"""Start methods: ``forkserver`` (the default), ``fork`` and ``spawn``."""

import os
import select
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import shoal
from tasks import env_value, init_state, inner_state, nested_sum, parent_pid, square


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_workers_are_children_of_the_pool_process(start_method):
    with shoal.Pool(2, start_method=start_method) as p:
        assert p.map(square, range(20)) == [x * x for x in range(20)]
        assert set(p.map(parent_pid, range(8))) == {os.getpid()}


def test_unknown_start_methods_are_refused_by_name():
    with pytest.raises(ValueError, match="start_method"):
        shoal.Pool(2, start_method="vfork")


def test_workers_see_the_environment_of_their_pool():
    os.environ["SHOAL_TEST_ENV"] = "before"
    os.environ["SHOAL_TEST_GONE"] = "here"
    with shoal.Pool(1) as p:
        assert p.apply(env_value, ("SHOAL_TEST_ENV",)) == "before"
        assert p.apply(env_value, ("SHOAL_TEST_GONE",)) == "here"
    # The server started with the first pool; a later pool's workers still
    # get the environment as it is now: changed, added and removed.
    os.environ["SHOAL_TEST_ENV"] = "after"
    os.environ["SHOAL_TEST_NEW"] = "new"
    del os.environ["SHOAL_TEST_GONE"]
    try:
        with shoal.Pool(1) as p:
            assert p.apply(env_value, ("SHOAL_TEST_ENV",)) == "after"
            assert p.apply(env_value, ("SHOAL_TEST_NEW",)) == "new"
            assert p.apply(env_value, ("SHOAL_TEST_GONE",)) is None
    finally:
        del os.environ["SHOAL_TEST_ENV"]
        del os.environ["SHOAL_TEST_NEW"]


def test_a_pool_outlives_the_thread_that_made_it():
    # Linux kills a child when the *thread* that forked it exits, if the
    # child asked for a parent-death signal: neither the fork server nor
    # its workers may hang on a short-lived thread.
    made = []
    t = threading.Thread(target=lambda: made.append(shoal.Pool(2)))
    t.start()
    t.join()
    with made[0] as p:
        assert p.map(square, range(10)) == [x * x for x in range(10)]
    with shoal.Pool(2) as p:
        assert p.map(square, range(10)) == [x * x for x in range(10)]


def test_nested_pools_in_forked_workers():
    with shoal.Pool(2) as p:
        assert p.map(nested_sum, [3, 4]) == [nested_sum(3), nested_sum(4)]


#: Defines `forked()`: the pids of this process's children that run the
#: fork server's command line, the server and its workers (forks of it).
_FORKED = """
    import os
    def forked():
        def ours(d):
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    return ppid == os.getpid() and b"shoal._forkserver" in f.read()
            except OSError:
                return False
        return {int(d) for d in os.listdir("/proc") if d.isdigit() and ours(d)}
"""


def test_server_and_workers_die_with_the_pool_process(tmp_path):
    script = textwrap.dedent(_FORKED) + textwrap.dedent(
        """
        import sys, time
        import shoal
        from tasks import pid
        p = shoal.Pool(2)
        workers = set(p.map(pid, range(50)))
        assert workers < forked() and len(forked()) == 3, (workers, forked())
        print(*forked(), flush=True)
        time.sleep(600)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        cwd=os.path.dirname(__file__),
        text=True,
    )
    pids = [int(x) for x in child.stdout.readline().split()]
    assert len(pids) == 3, pids
    # A pidfd becomes readable when its process ends (zombie or reaped).
    fds = [os.pidfd_open(p) for p in pids]
    child.send_signal(signal.SIGKILL)
    child.wait()
    try:
        for pid, fd in zip(pids, fds):
            ready, _, _ = select.select([fd], [], [], 60)
            assert ready, f"process {pid} outlived the pool's process"
    finally:
        for fd in fds:
            os.close(fd)


def test_a_forked_copy_of_the_pool_process_starts_its_own_server():
    # A program that forks (multiprocessing's fork, os.fork) after using a
    # pool: the copy has the original's server connection but neither its
    # server nor the thread that starts servers.
    script = textwrap.dedent(
        """
        import os, sys
        import shoal
        from tasks import parent_pid, square
        with shoal.Pool(2) as p:
            assert p.map(square, range(10)) == [x * x for x in range(10)]
        child = os.fork()
        if child == 0:
            with shoal.Pool(2) as p:
                ok = set(p.map(parent_pid, range(8))) == {os.getpid()}
            os._exit(0 if ok else 3)
        _, status = os.waitpid(child, 0)
        with shoal.Pool(2) as p:
            assert p.map(square, range(10)) == [x * x for x in range(10)]
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    # Its own session, so that a hung copy is killed with the test's process.
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=os.path.dirname(__file__), start_new_session=True
    )
    try:
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _run_script(*parts, session=False):
    """Runs the script made of `parts` in a fresh interpreter beside the
    tasks (the fork server and its imports belong to a process; these tests
    must not share it); with `session`, in a session of its own (signals
    it sends its process group reach no one else)."""
    proc = subprocess.run(
        [sys.executable, "-c", "".join(textwrap.dedent(p) for p in parts)],
        cwd=os.path.dirname(__file__),
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=session,
    )
    assert proc.returncode == 0, proc.stderr


_SERVERS = _FORKED + """
    # This process's fork servers, when no worker is alive.
    servers = forked
    def one_call(func, *args):
        p = shoal.Pool(1)
        out = p.apply(func, args)
        p.close()
        p.join()
        return out
"""


def test_the_server_imports_task_modules_ahead_of_later_workers():
    _run_script(
        """
        import shoal, preload_probe
        """,
        _SERVERS,
        """
        # The call names the module; the server imports it before its next
        # fork (this pool's worker, if it was not forked yet, or the next).
        one_call(preload_probe.where)
        worker, imported_in = one_call(preload_probe.where)
        assert imported_in not in (worker, os.getpid()), (worker, imported_in)
        assert servers() == {imported_in}
        # Closures travel by value: their module is not imported for them.
        assert one_call(lambda: 7) == 7
        """
    )


def test_an_import_that_starts_a_thread_retires_the_server():
    _run_script(
        """
        import shoal, preload_probe, threads_at_import
        from tasks import square
        """,
        _SERVERS,
        """
        assert one_call(square, 3) == 9
        first = servers()
        # The server imports threads_at_import before its next fork (for
        # one of these two pools), runs two threads then, says so and
        # exits; a new server forks the worker.
        assert one_call(threads_at_import.double, 2) == 4
        assert one_call(threads_at_import.double, 3) == 6
        second = servers()
        assert len(first) == len(second) == 1 and first != second, (first, second)
        # No more imports ahead: each worker imports its task's module.
        for _ in range(2):
            worker, imported_in = one_call(preload_probe.where)
            assert imported_in == worker
        assert servers() == second
        """
    )


#: Defines `children()`: the pids of this process's children.
_CHILDREN = """
    import os
    def children():
        def ours(d):
            try:
                with open(f"/proc/{d}/stat") as f:
                    return int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid()
            except OSError:
                return False
        return {int(d) for d in os.listdir("/proc") if d.isdigit() and ours(d)}
"""


def test_fork_workers_start_as_copies_of_the_pool_process():
    # In a fresh interpreter: pytest's process runs other pools' threads.
    _run_script(
        _CHILDREN,
        """
        import threading
        import shoal
        # A lock cannot be pickled: `locked` only reaches workers by name.
        LOCK = threading.Lock()
        STATE = {"x": "before"}
        def locked(i):
            with LOCK:
                return i, STATE["x"], os.getppid()
        STATE["x"] = "at the fork"
        with shoal.Pool(2, start_method="fork", maxtasksperchild=2) as p:
            STATE["x"] = "after"
            # Ten chunks on workers of two tasks each: replacements are
            # forked from the same copy, with the same state.
            got = p.map(locked, range(10), chunksize=1)
            assert got == [(i, "at the fork", os.getpid()) for i in range(10)], got
            # Closures and functions defined later travel by value.
            def later(x):
                return x, STATE["x"]
            assert p.map(later, [1]) == [(1, "after")]
            assert p.apply(lambda: STATE["x"]) == "after"
            assert len(children()) >= 2  # the copy and the workers
        # The copy is stopped and reaped with the pool.
        assert children() == set(), children()
        """,
    )


def test_fork_is_refused_while_another_thread_or_pool_runs():
    _run_script(
        """
        import threading
        import shoal
        def refused(match):
            try:
                shoal.Pool(1, start_method="fork")
            except ValueError as e:
                assert "start_method='fork'" in str(e) and match in str(e), e
            else:
                raise AssertionError("a fork pool was made beside " + match)
        def square(x):
            return x * x
        started, stop = threading.Event(), threading.Event()
        t = threading.Thread(target=lambda: (started.set(), stop.wait()), name="busy")
        t.start()
        started.wait()
        refused("Python thread 'busy'")
        stop.set()
        t.join()
        pool = shoal.Pool(1)
        refused("1 shoal pool")
        pool.close()
        pool.join()
        # A joined pool's threads end on their own: forking is safe again.
        with shoal.Pool(1, start_method="fork") as p:
            assert p.map(square, range(4)) == [0, 1, 4, 9]
        """,
    )


def test_a_fork_pool_whose_copy_is_gone_fails_instead_of_hanging():
    _run_script(
        _CHILDREN,
        """
        import signal
        import shoal
        def square(x):
            return x * x
        p = shoal.Pool(1, start_method="fork")
        worker = p.apply(os.getpid)
        (copy,) = children() - {worker}
        os.kill(copy, signal.SIGKILL)
        os.waitpid(copy, 0)
        try:
            p.apply(os._exit, (3,))
        except shoal.WorkerLostError:
            pass
        # Its successor cannot start: the call fails and says why.
        try:
            p.apply(square, (3,))
        except shoal.BrokenPoolError as e:
            assert "fork start method's server" in str(e), e
        else:
            raise AssertionError("no error without the copy")
        p.terminate()
        """,
    )


@pytest.mark.parametrize("start_method", ["forkserver", "fork", "spawn"])
def test_ctrl_c_in_a_terminal_leaves_servers_and_workers_running(start_method):
    # Ctrl-C sends SIGINT to the terminal's whole process group. Workers
    # and servers ignore it (as the signal is made: nothing stays pending
    # to fail a later task); the pool's process handles it.
    _run_script(
        f"""
        import os, signal
        import shoal
        def square(x):
            return x * x
        with shoal.Pool(1, start_method={start_method!r}) as p:
            assert p.apply(square, (2,)) == 4
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            os.killpg(0, signal.SIGINT)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            assert p.map(square, range(3)) == [0, 1, 4]
            # A successor, forked by the server after the signal.
            try:
                p.apply(os._exit, (3,))
            except shoal.WorkerLostError:
                pass
            assert p.apply(square, (3,)) == 9
        """,
        session=True,
    )


@pytest.mark.parametrize("backend", ["process", "threads"])
def test_the_interpreter_exits_cleanly_with_shoal_threads_still_busy(backend):
    # A pump still pulling a slow generator after its iterator was left,
    # and (threads) a task that spins on after its timeout: neither may
    # ask for the interpreter lock while it finalizes (that aborted).
    for _ in range(2):
        _run_script(
            f"""
            import time
            import shoal
            def slow():
                while True:
                    time.sleep(0.0005)
                    yield 1
            def spin(_):
                while True:
                    pass
            p = shoal.Pool(2, backend={backend!r}, task_timeout=0.2)
            for n, x in enumerate(p.imap(abs, slow())):
                if n == 200:
                    break
            if {backend!r} == "threads":
                try:
                    p.apply(spin, (0,))
                except shoal.TaskTimeoutError:
                    pass
            """
        )


def test_a_pool_made_in_a_worker_does_not_pass_its_pools_settings_on():
    with shoal.Pool(1, initializer=init_state, initargs=("outer",)) as p:
        assert p.apply(inner_state) is None


def test_fork_workers_inherit_the_shared_objects():
    # As with mpire's fork: objects that only travel by inheritance.
    _run_script(
        """
        import multiprocessing
        import shoal
        counter, lock = multiprocessing.Value("i", 0), multiprocessing.Lock()
        def bump(worker_id, shared, x):
            c, l = shared
            with l:
                c.value += 1
            return worker_id
        with shoal.Pool(2, start_method="fork", shared_objects=(counter, lock),
                        pass_worker_id=True) as p:
            ids = p.map(bump, range(100), chunksize=1)
        assert counter.value == 100, counter.value
        assert all(isinstance(i, int) for i in ids)
        """
    )
