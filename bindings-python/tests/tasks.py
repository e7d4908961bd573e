"""Task functions for the tests, importable by worker processes."""

import os
import signal
import sys
import threading
import time

import shoal


def square(x):
    return x * x


def add(a, b):
    return a + b


def fail_on_3(x):
    if x == 3:
        raise KeyError(f"three {x}")
    return x


def kill_self_on(x, bad):
    if x == bad:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def exit_on(x, bad):
    if x == bad:
        sys.exit(3)
    return x


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def pid(_=None):
    return os.getpid()


def make_lock(_):
    return threading.Lock()


def whoami(_=None):
    return shoal.worker_id()


_state = {}


def init_state(value):
    _state["value"] = value


def read_state(_=None):
    return _state.get("value")


def inner_state(_=None):
    """What a worker of a pool made in this worker reads of its state."""
    with shoal.Pool(1) as inner:
        return inner.apply(read_state)


def nested_sum(n):
    with shoal.Pool(2, backend="threads") as inner:
        return sum(inner.map(square, range(n)))


class NeedsTwoArgs(Exception):
    """An exception that does not survive pickling (two required args)."""

    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")


def raise_unpicklable(_):
    raise NeedsTwoArgs(1, 2)


def report(x):
    shoal.progress(0.5)
    shoal.log(f"item {x}")
    return x


def with_id(worker_id, x):
    return (worker_id, x)


def with_shared(shared, x):
    return shared["base"] + x


def count_in_state(state, x):
    state["n"] = state.get("n", 0) + 1
    return state["n"]


def init_count(state):
    state["n"] = 100


def all_three(worker_id, shared, state, x):
    return (isinstance(worker_id, int), shared, isinstance(state, dict), x)


def mark_exit(directory):
    open(os.path.join(directory, str(os.getpid())), "w").close()


def touch(directory, name):
    """Creates the file `name` in `directory`; returns `name`."""
    open(os.path.join(directory, str(name)), "w").close()
    return name


def broken_init():
    raise RuntimeError("initializer is broken")


def chatty(x):
    shoal.progress(0.5)
    shoal.log(f"working on {x}")
    shoal.progress(1.0)
    return x * 2


def parent_pid(_=None):
    return os.getppid()


def env_value(name):
    return os.environ.get(name)


def gated_chatty(gate, x):
    """chatty, once `gate` (a threading.Event: threads backend only) is set."""
    gate.wait(30)
    return chatty(x)


def chatty_fail_on_3(x):
    """chatty, but item 3 logs and raises KeyError."""
    if x == 3:
        shoal.log("working on 3")
        raise KeyError(f"three {x}")
    return chatty(x)


def chatty_in_two_halves(started, gate, x):
    """chatty's first message, then `started` is set and the task waits for
    `gate` before the rest (threading.Events: threads backend only)."""
    shoal.progress(0.5)
    started.set()
    gate.wait(30)
    shoal.log(f"working on {x}")
    shoal.progress(1.0)
    return x * 2


def identity(x):
    return x


def odd_one_out(x):
    """Plain ints, except a float for 7, a big int for 11 and a str for 13."""
    return {7: 7.5, 11: 2**70, 13: "thirteen"}.get(x, x)


class Small(int):
    """An int subclass: must come back as itself, not as a plain int."""


def flood(n):
    """Sends `n` log messages; returns `n`."""
    import shoal

    for i in range(n):
        shoal.log(str(i))
    return n
