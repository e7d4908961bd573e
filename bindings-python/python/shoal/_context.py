"""What every worker of a pool gets beside its tasks (mpire's names):

- ``pass_worker_id``: the worker's id is passed as the first argument;
- ``shared_objects``: handed to every worker once (worker processes load
  them from a file at start, not with every task) and passed next;
- ``use_worker_state``: a dict private to the worker, passed next, that
  lives as long as the worker;
- ``worker_init(*those)`` runs when a worker starts, ``worker_exit(*those)``
  when it stops; ``initializer(*initargs)`` (multiprocessing's) runs first.

A worker's :class:`Context` lives in a module global (a worker process has
one) or, for the threads backend, in a dict by worker id (not a
``threading.local``: the Rust worker threads get a fresh Python thread state
each time they take the interpreter lock, which clears thread-locals).
Task functions are wrapped in :class:`WithContext` when any of the three
arguments is asked for.
"""

from __future__ import annotations

import os
import _pickle as pickle  # the C module: pickle.py imports `re`

from . import _shoal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Sequence, Tuple


class Setup:
    """The pool's per-worker settings; pickled (cloudpickle) for processes."""

    def __init__(
        self,
        *,
        initializer: "Optional[Callable[..., object]]" = None,
        initargs: "Sequence[Any]" = (),
        worker_init: "Optional[Callable[..., object]]" = None,
        worker_exit: "Optional[Callable[..., object]]" = None,
        pass_worker_id: bool = False,
        use_worker_state: bool = False,
        has_shared: bool = False,
        shared_file: "Optional[str]" = None,
    ) -> None:
        self.initializer = initializer
        self.initargs = tuple(initargs)
        self.worker_init = worker_init
        self.worker_exit = worker_exit
        self.pass_worker_id = pass_worker_id
        self.use_worker_state = use_worker_state
        self.has_shared = has_shared
        self.shared_file = shared_file
        #: The shared objects themselves (threads backend, ``fork`` workers).
        self.shared: Any = None

    @property
    def wraps_tasks(self) -> bool:
        return self.pass_worker_id or self.has_shared or self.use_worker_state

    @property
    def is_empty(self) -> bool:
        return not (self.wraps_tasks or self.initializer or self.worker_init or self.worker_exit)


#: The settings of the pool being forked (``start_method="fork"``): set in
#: the pool's process only around the fork, so that its workers, copies
#: of that moment, take them from here (shared objects unpickled).
inherited: "Optional[Setup]" = None


class Context:
    """One worker's id, shared objects and state."""

    __slots__ = ("setup", "worker_id", "shared", "state", "prefix")

    def __init__(self, setup: Setup, worker_id: int, shared: "Any") -> None:
        self.setup = setup
        self.worker_id = worker_id
        self.shared = shared
        self.state: dict = {}
        prefix: list = []
        if setup.pass_worker_id:
            prefix.append(worker_id)
        if setup.has_shared:
            prefix.append(shared)
        if setup.use_worker_state:
            prefix.append(self.state)
        self.prefix: "Tuple[Any, ...]" = tuple(prefix)


_threads: "dict[int, Context]" = {}
_process: "Optional[Context]" = None


def current() -> "Optional[Context]":
    """The context of the worker running this code, if any."""
    if _process is not None:
        return _process
    worker = _shoal.worker_id()
    return None if worker is None else _threads.get(worker)


def start(setup: Setup, worker_id: int, *, thread: bool) -> None:
    """Worker start: makes the context, runs ``initializer`` and ``worker_init``."""
    global _process
    shared = setup.shared
    if setup.shared_file is not None:
        with open(setup.shared_file, "rb") as f:
            shared = pickle.load(f)
    context = Context(setup, worker_id, shared)
    if thread:
        _threads[worker_id] = context
    else:
        _process = context
    if setup.initializer is not None:
        setup.initializer(*setup.initargs)
    if setup.worker_init is not None:
        setup.worker_init(*context.prefix)


def stop(worker_id: int) -> None:
    """Worker stop: runs ``worker_exit``, forgets the context."""
    context = _process if _process is not None else _threads.pop(worker_id, None)
    if context is not None and context.setup.worker_exit is not None:
        context.setup.worker_exit(*context.prefix)


class WithContext:
    """A task function that takes the worker's id/shared objects/state first."""

    __slots__ = ("func",)

    def __init__(self, func: "Callable[..., Any]") -> None:
        self.func = func

    def __call__(self, *args: "Any", **kwargs: "Any") -> "Any":
        context = current()
        prefix = context.prefix if context is not None else ()
        return self.func(*prefix, *args, **kwargs)

    def __reduce__(self) -> "Any":
        return (WithContext, (self.func,))


def write_shared(objects: "Any") -> str:
    """Pickles the shared objects once into a file the workers read at start
    (in /dev/shm when there is one: memory, not disk)."""
    import tempfile

    import cloudpickle

    directory = "/dev/shm" if os.path.isdir("/dev/shm") else None
    fd, path = tempfile.mkstemp(prefix="shoal-shared-", suffix=".pkl", dir=directory)
    with os.fdopen(fd, "wb") as f:
        cloudpickle.dump(objects, f, protocol=5)
    return path
