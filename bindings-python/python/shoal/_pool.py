"""``shoal.Pool``: the ``multiprocessing.Pool`` API on shoal's Rust core.

Batches (``map``, ``imap``, ``starmap`` ...) run as one batch of the core
each: the core cuts the input into chunks (automatically sized unless a
``chunksize`` is given) and hands each chunk to whichever worker is free.
Single calls (``apply_async``) go into one *open* batch per pool, which
takes items while it runs; a daemon thread (the "pump") delivers their
results, runs callbacks and wakes waiters. ``map_async`` runs its batch on
a thread of its own.
"""

from __future__ import annotations

import _pickle
import atexit
import collections
import contextlib
import binascii
import multiprocessing
import os
import sys
import threading
import weakref
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from . import _codec, _context, _forkserver, _main, _shoal
from ._codec import CALL, STAR, Failure
from ._worker import to_env

#: Workers' glibc keeps freed memory instead of returning it to the kernel
#: after every task (numpy temporaries; see DESIGN.md).
_WORKER_MALLOC = {
    "MALLOC_TRIM_THRESHOLD_": str(128 << 20),
    "MALLOC_MMAP_THRESHOLD_": str(128 << 20),
}

_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"

#: Pools not yet terminated or joined; terminated at interpreter exit (as
#: multiprocessing does), before finalization, while their worker threads
#: can still take the interpreter lock.
_live: "weakref.WeakSet[Pool]" = weakref.WeakSet()


@atexit.register
def _terminate_live_pools() -> None:
    for pool in list(_live):
        try:
            pool.terminate()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    # No shoal thread may ask for the interpreter lock once the interpreter
    # finalizes (the process would abort): stop those that run Python.
    _shoal.quiesce(2.0)

BACKENDS = ("process", "threads")

#: Automatic chunks of large items hold at most about this many pickled bytes: the
#: core sizes chunks by time, and batching many megabyte-sized items costs
#: page faults and pipelining (W5: one 1 MB item per chunk moves 1.6x the
#: MB/s of 20-item chunks).
CHUNK_BYTES = 1 << 20
#: Items below this pickled size are left to the core's chunker.
LARGE_ITEM = 64 << 10


def _large_item_chunksize(iterable: Any) -> Optional[int]:
    """A chunksize for a list or tuple whose first item is large, else None."""
    if not isinstance(iterable, (list, tuple)) or not iterable:
        return None
    try:
        size = len(_pickle.dumps(iterable[0], protocol=5))
    except Exception:  # noqa: BLE001 - the batch reports it properly
        return None
    return max(1, CHUNK_BYTES // size) if size >= LARGE_ITEM else None
#: ``forkserver`` (the default): workers are forked from a single-threaded
#: server process that imported shoal once (``shoal._forkserver``): a
#: millisecond per worker instead of tens, and safe, as no other thread holds
#: a lock at the fork. The server also imports the modules of the pool's
#: task functions (``_forkserver.preload_for``). ``fork``: the server is a
#: copy of the pool's process made with the pool, where that is safe
#: (``_forkserver.fork_server``), so workers start with its state, and
#: ``__main__``'s functions travel by name. ``spawn``: a new interpreter
#: per worker. (Forking the pool's process for each worker is left out: a
#: pool runs threads, and a lock one of them held at the fork would stay
#: locked in the worker.)
START_METHODS = ("forkserver", "fork", "spawn")


def _chunking_key(func: Callable[..., Any]) -> str:
    """The name under which a pool remembers how long ``func``'s items take
    (the core's chunking key): a batch of the same function starts its
    automatic chunking from there instead of probing with one-item chunks.
    Functions that share a name share the memory, which only costs their
    first chunks' balance."""
    target = getattr(func, "func", func)  # functools.partial
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{getattr(target, '__module__', None)}.{name}"


def _positive_int(name: str, value: Any, allow_none: bool = True) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer (got {value!r})")
    return value


def _positive_seconds(name: str, value: Any) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds (got {value!r})")
    return float(value)


def _raise_for(value: Any) -> None:
    if isinstance(value, Failure):
        raise value.exception()
    raise value


def _unwrap(ok: bool, value: Any) -> Any:
    if not ok or isinstance(value, Failure):
        _raise_for(value)
    return value


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False (got {value!r})")


#: ``on_message(index, kind, payload)``: a batch item's message.
OnMessage = Callable[[int, str, Any], object]


def _check_on_message(on_message: Optional[OnMessage]) -> None:
    """A batch's ``on_message`` must be callable (or None)."""
    if on_message is not None and not callable(on_message):
        raise TypeError(f"on_message must be callable (got {type(on_message).__name__})")


def _call_back(fn: Callable[..., object], *args: Any) -> None:
    """``fn(*args)`` for a callback; an exception it raises is printed and
    delivery goes on (a callback never changes the outcome of a batch or a
    task)."""
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - the callback's own error
        import traceback

        traceback.print_exc()


def _deliver(on_message: Optional[OnMessage], index: int, message: Tuple[str, Any]) -> None:
    """``on_message(index, kind, payload)``, if there is one."""
    if on_message is not None:
        _call_back(on_message, index, *message)


def _tqdm(total: Optional[int]) -> Any:
    """A tqdm bar when tqdm is installed, else None (the core draws its own)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total)


def _length(iterable: Any) -> Optional[int]:
    try:
        return len(iterable)
    except TypeError:
        return None


#: Messages an AsyncResult keeps (the oldest go first).
MAX_MESSAGES = 10_000


class TaskMessages:
    """The messages a task sent (``shoal.progress(fraction)``,
    ``shoal.log(text)``), as ``AsyncResult`` and ``shoal.Future`` keep them:
    the last :data:`MAX_MESSAGES`, and the last fraction."""

    def __init__(self) -> None:
        self._task_messages: "collections.deque[Tuple[str, Any]]" = collections.deque(maxlen=MAX_MESSAGES)
        self._task_progress: Optional[float] = None

    @property
    def progress(self) -> Optional[float]:
        """The last fraction the task reported with ``shoal.progress``, if any."""
        return self._task_progress

    def messages(self) -> List[Tuple[str, Any]]:
        """The task's messages so far: ``("progress", fraction)``,
        ``("log", text)``."""
        return list(self._task_messages)

    def _record(self, kind: str, payload: Any) -> None:
        if kind == "progress":
            self._task_progress = payload
        self._task_messages.append((kind, payload))


class AsyncResult(TaskMessages):
    """The result of ``apply_async``/``map_async``, as in multiprocessing.

    For ``apply_async``, the messages the task sends with
    ``shoal.progress(fraction)`` and ``shoal.log(text)`` arrive
    before its result: ``messages()`` lists them as ``(kind, payload)``,
    ``progress`` is the last fraction, and ``on_message(kind, payload)`` is
    called for each as it arrives (on a background thread).
    """

    def __init__(
        self,
        callback: Optional[Callable[[Any], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
        on_message: Optional[Callable[[str, Any], object]] = None,
        callbacks: Optional[threading.Lock] = None,
    ) -> None:
        super().__init__()
        self._event = threading.Event()
        # Held while a callback runs: a pool's callbacks never overlap, as
        # multiprocessing runs them all on one thread.
        self._callbacks = callbacks if callbacks is not None else threading.Lock()
        self._callback = callback
        self._error_callback = error_callback
        self._on_message = on_message
        self._value: Any = None
        self._error: Optional[BaseException] = None

    def _message(self, kind: str, payload: Any) -> None:
        self._record(kind, payload)
        if self._on_message is not None:
            self._on_message(kind, payload)

    def ready(self) -> bool:
        """Whether the call has completed."""
        return self._event.is_set()

    def successful(self) -> bool:
        """Whether the call completed without raising; ValueError if not ready."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error is None

    def wait(self, timeout: Optional[float] = None) -> None:
        """Waits until the result is ready or ``timeout`` seconds passed."""
        self._event.wait(timeout)

    def get(self, timeout: Optional[float] = None) -> Any:
        """The result; re-raises the task's exception; ``multiprocessing.TimeoutError``
        if it is not ready within ``timeout`` seconds."""
        self.wait(timeout)
        if not self.ready():
            raise multiprocessing.TimeoutError
        if self._error is not None:
            raise self._error
        return self._value

    def _set(self, ok: bool, value: Any) -> None:
        # A callback that raises is printed; the result is ready all the
        # same (multiprocessing's result thread dies, and get() waits).
        if ok and not isinstance(value, Failure):
            self._value = value
            if self._callback is not None:
                with self._callbacks:
                    _call_back(self._callback, value)
        else:
            self._error = value.exception() if isinstance(value, Failure) else value
            if self._error_callback is not None:
                with self._callbacks:
                    _call_back(self._error_callback, self._error)
        self._event.set()


ApplyResult = AsyncResult
MapResult = AsyncResult


class IMapIterator:
    """``imap``/``imap_unordered`` with a tqdm bar or ``on_message``: values,
    or the item's exception; the items' messages go to ``on_message`` as
    the iteration meets them (on the iterating thread)."""

    def __init__(self, batch: Any, bar: Any = None, on_message: Optional[OnMessage] = None) -> None:
        self._batch = batch
        self._bar = bar
        self._on_message = on_message

    def __iter__(self) -> "IMapIterator":
        return self

    def __next__(self) -> Any:
        return self.next()

    def next(self, timeout: Optional[float] = None) -> Any:
        """Like ``next(it)``, waiting at most ``timeout`` seconds (for each
        message or result)."""
        while True:
            try:
                index, ok, value = self._batch.next(timeout)
            except StopIteration:
                if self._bar is not None:
                    self._bar.close()
                raise
            if ok is not None:
                break
            _deliver(self._on_message, index, value)
        if self._bar is not None:
            self._bar.update(1)
        return _unwrap(ok, value)

    def __del__(self) -> None:
        # Left before its end (`break`): the bar ends here, so that the
        # next one does not nest under it.
        bar, self._bar = getattr(self, "_bar", None), None
        if bar is not None:
            try:
                bar.close()
            except Exception:  # noqa: BLE001 - interpreter exit
                pass


class Pool:
    """A pool of workers with the API of ``multiprocessing.Pool``.

    ``processes`` workers (default: the number of CPUs) are processes
    (``backend="process"``, the default) or threads (``backend="threads"``:
    for code that releases the GIL, such as numpy). ``initializer(*initargs)``
    runs once in each worker as it starts; ``maxtasksperchild`` replaces a
    worker after that many tasks. ``task_timeout`` (seconds) stops a task
    that runs longer (its worker process is replaced; on threads, Python
    code gets ``TaskTimeoutError`` raised in it) and fails it with
    ``TaskTimeoutError``. ``context`` is accepted for compatibility and
    ignored; ``start_method`` is ``"forkserver"`` (the default: each worker
    is forked from a server process that imported shoal once; it runs the
    code of its tasks' modules, not of the pool's process), ``"fork"``
    (each worker is forked from a copy of this process made with the pool,
    so it has this process's modules and globals as they were then, as
    with ``multiprocessing``'s ``fork``; refused while another Python
    thread or shoal pool runs) or ``"spawn"`` (each worker is a new
    interpreter).
    """

    def __init__(
        self,
        processes: Optional[int] = None,
        initializer: Optional[Callable[..., object]] = None,
        initargs: Sequence[Any] = (),
        maxtasksperchild: Optional[int] = None,
        context: Any = None,
        *,
        backend: str = "process",
        task_timeout: Optional[float] = None,
        start_method: Optional[str] = None,
        worker_init: Optional[Callable[..., object]] = None,
        worker_exit: Optional[Callable[..., object]] = None,
        pass_worker_id: bool = False,
        shared_objects: Any = None,
        use_worker_state: bool = False,
        worker_lifespan: Optional[int] = None,
    ) -> None:
        if processes is None:
            processes = os.cpu_count() or 1
        _positive_int("processes", processes, allow_none=False)
        for name, hook in (("initializer", initializer), ("worker_init", worker_init), ("worker_exit", worker_exit)):
            if hook is not None and not callable(hook):
                raise TypeError(f"{name} must be a callable")
        _positive_int("maxtasksperchild", maxtasksperchild)
        _positive_int("worker_lifespan", worker_lifespan)
        _check_bool("pass_worker_id", pass_worker_id)
        _check_bool("use_worker_state", use_worker_state)
        if worker_lifespan is not None and maxtasksperchild is not None:
            raise ValueError("worker_lifespan: give it or maxtasksperchild (the same option), not both")
        lifespan = worker_lifespan if worker_lifespan is not None else maxtasksperchild
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS} (got {backend!r})")
        if start_method is not None and start_method not in START_METHODS:
            raise ValueError(
                f"start_method must be one of {START_METHODS} (got {start_method!r})"
            )
        self._task_timeout = _positive_seconds("task_timeout", task_timeout)
        self._processes = processes
        self._backend = backend
        self._process = backend == "process"
        self._preload = self._process and start_method in (None, "forkserver")
        setup = _context.Setup(
            initializer=initializer,
            initargs=initargs,
            worker_init=worker_init,
            worker_exit=worker_exit,
            pass_worker_id=pass_worker_id,
            use_worker_state=use_worker_state,
            has_shared=shared_objects is not None,
        )
        # Forked first: before this pool's threads and files exist. Its
        # workers inherit the settings, shared objects included (as
        # mpire's fork workers do: a multiprocessing Value or Lock works).
        fork_server = None
        if self._process and start_method == "fork":
            setup.shared = shared_objects
            _context.inherited = setup
            try:
                fork_server = _forkserver.fork_server(len(_live))
            finally:
                _context.inherited = None
        self._inherited = _main.snapshot() if fork_server is not None else None
        self._wrap = setup.wraps_tasks
        self._shared_file: Optional[str] = None
        self._pid = os.getpid()
        kwargs: Dict[str, Any] = {"lifespan": lifespan, "task_timeout": self._task_timeout}
        if self._process:
            kwargs["command"] = [sys.executable, "-c", "from shoal._worker import main; main()"]
            if start_method in (None, "forkserver"):
                kwargs["forkserver"] = sys.executable
            elif fork_server is not None:
                kwargs["fork_server"] = fork_server
            env = dict(_WORKER_MALLOC)
            env["SHOAL_PY_PATH"] = to_env([p for p in sys.path if isinstance(p, str)])
            if shared_objects is not None and fork_server is None:
                self._shared_file = setup.shared_file = _context.write_shared(shared_objects)
            # Always set: a pool made in a worker must not pass its own
            # pool's settings on to its workers.
            env["SHOAL_PY_SETUP"] = ""
            if not setup.is_empty and fork_server is None:
                try:
                    data = _codec.dump_function(setup, self._inherited)
                except _codec.SerializationError as e:
                    self._remove_shared()
                    raise _codec.SerializationError(
                        "cannot pickle the pool's initializer, initargs, worker_init or "
                        f"worker_exit for its worker processes: {e.__cause__ or e}"
                    ) from e
                env["SHOAL_PY_SETUP"] = binascii.b2a_base64(data, newline=False).decode("ascii")
            kwargs["env"] = sorted(env.items())
        elif not setup.is_empty:
            setup.shared = shared_objects
            kwargs["worker_init"] = lambda wid: _context.start(setup, wid, thread=True)
            kwargs["worker_exit"] = _context.stop
        try:
            self._core = _shoal.Core(backend, processes, **kwargs)
        except BaseException:
            self._remove_shared()
            raise
        self._state = _RUN
        self._lock = threading.Lock()
        self._callbacks = threading.Lock()
        self._threads: List[threading.Thread] = []
        self._stream: Any = None
        self._pump: Optional[threading.Thread] = None
        self._pending: Dict[int, Any] = {}
        #: The batches iterated by their callers (``imap``, ``Executor.map``)
        #: that may still run: ``join`` lets them finish.
        self._batches: "weakref.WeakSet[Any]" = weakref.WeakSet()
        _live.add(self)

    # ----------------------------------------------------------- batches

    def _check_running(self) -> None:
        if self._state != _RUN:
            raise ValueError("Pool not running")

    def _check_call(self, func: Any, chunksize: Optional[int], check: bool) -> None:
        """Checks a batch's function and chunksize (and, with ``check``, that
        the pool runs)."""
        if check:
            self._check_running()
        if not callable(func):
            raise TypeError(f"func must be callable (got {type(func).__name__})")
        _positive_int("chunksize", chunksize)

    def _function(self, func: Any, chunksize: Optional[int], check: bool) -> Tuple[Any, Optional[bytes]]:
        """Checks a batch's function and chunksize; returns the function as
        the workers call it (with the worker's context when asked for) and,
        for worker processes, pickled."""
        self._check_call(func, chunksize, check)
        if self._preload:
            _forkserver.preload_for(func)
        if self._wrap:
            func = _context.WithContext(func)
        return func, (_codec.dump_function(func, self._inherited) if self._process else None)

    def _batch(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        mode: int,
        chunksize: Optional[int],
        ordered: bool = True,
        progress_bar: bool = False,
        values: bool = False,
        messages: bool = False,
        check: bool = True,
    ) -> Any:
        """A batch of the core, to iterate (``imap``, ``Executor.map``, a bar);
        with ``messages``, the items' messages come in it too. ``check=False``:
        accepted earlier (``map_async``), runs even if the pool was closed
        since."""
        _check_bool("progress_bar", progress_bar)
        key = _chunking_key(func)
        func, function = self._function(func, chunksize, check)
        batch = self._core.batch(
            func,
            function,
            mode,
            iterable,
            ordered=ordered,
            chunksize=chunksize,
            progress_bar=progress_bar,
            values=values,
            key=key,
            messages=messages,
        )
        self._batches.add(batch)
        return batch

    def _map(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        mode: int,
        chunksize: Optional[int],
        progress_bar: bool,
        check: bool = True,
    ) -> Tuple[List[Any], Optional[int]]:
        """Every value of an ordered batch and the first failed index: the
        core's eager map over the whole input, taken first (as
        multiprocessing does), in chunks that are slices of it.
        ``check=False``: accepted earlier (``map_async``), runs even if the
        pool was closed since."""
        key = _chunking_key(func)
        func, function = self._function(func, chunksize, check)
        if chunksize is None and self._process:
            chunksize = _large_item_chunksize(iterable)
        return self._core.map(
            func, function, mode, iterable, chunksize=chunksize, progress_bar=progress_bar, key=key
        )

    def _run(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        mode: int,
        chunksize: Optional[int],
        progress_bar: bool,
        check: bool = True,
        on_message: Optional[OnMessage] = None,
    ) -> List[Any]:
        """A whole ordered batch: every value, or the first item's exception."""
        _check_bool("progress_bar", progress_bar)
        _check_on_message(on_message)
        bar = _tqdm(_length(iterable)) if progress_bar else None
        if bar is None and on_message is None:
            values, bad = self._map(func, iterable, mode, chunksize, progress_bar, check)
        else:
            batch = self._batch(func, iterable, mode, chunksize, messages=on_message is not None)
            values, bad = [], None
            with bar if bar is not None else contextlib.nullcontext():
                for index, ok, value in batch:
                    if ok is None:
                        _deliver(on_message, index, value)
                        continue
                    if bad is None and (not ok or isinstance(value, Failure)):
                        bad = index
                    values.append(value)
                    if bar is not None:
                        bar.update(1)
        if bad is not None:
            _raise_for(values[bad])
        return values

    def _iterate(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: Optional[int],
        ordered: bool,
        progress_bar: bool,
        on_message: Optional[OnMessage] = None,
    ) -> Any:
        _check_bool("progress_bar", progress_bar)
        _check_on_message(on_message)
        bar = _tqdm(_length(iterable)) if progress_bar else None
        if bar is None and on_message is None:
            # The core's iterator itself: values, failures raised, `next(timeout)`.
            return self._batch(func, iterable, CALL, chunksize, ordered, progress_bar=progress_bar, values=True)
        batch = self._batch(func, iterable, CALL, chunksize, ordered, messages=on_message is not None)
        return IMapIterator(batch, bar, on_message)

    def map(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: Optional[int] = None,
        *,
        progress_bar: bool = False,
        on_message: Optional[OnMessage] = None,
    ) -> List[Any]:
        """``[func(x) for x in iterable]`` on the workers; raises the first item's exception.
        ``progress_bar=True`` draws a bar (tqdm when installed, else shoal's own).
        ``on_message(index, kind, payload)`` receives the items' messages
        (``shoal.progress``/``log`` in a task; ``index`` is the item's
        position in ``iterable``) on the calling thread, before the
        item's result. Chunks keep their size; their items run in a Python
        loop instead of a C one then, so that each message names its item."""
        return self._run(func, iterable, CALL, chunksize, progress_bar, on_message=on_message)

    def starmap(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Sequence[Any]],
        chunksize: Optional[int] = None,
        *,
        progress_bar: bool = False,
        on_message: Optional[OnMessage] = None,
    ) -> List[Any]:
        """``[func(*args) for args in iterable]`` on the workers; ``on_message`` as for :meth:`map`."""
        return self._run(func, iterable, STAR, chunksize, progress_bar, on_message=on_message)

    def imap(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: Optional[int] = None,
        *,
        progress_bar: bool = False,
        on_message: Optional[OnMessage] = None,
    ) -> Iterator[Any]:
        """Lazy ``map``: results in order as they come. Its tasks start at
        once; the input is pulled as they run, a few chunks ahead of the
        results taken (memory stays bounded over an endless input), and
        ``join`` after ``close`` runs every task, keeping the results for
        the iterator, as multiprocessing's does. Dropping the iterator
        cancels the tasks not yet run. The iterator has ``next(timeout)``
        as multiprocessing's.
        ``on_message(index, kind, payload)`` receives the items' messages as
        the iteration meets them (on the iterating thread), as for :meth:`map`."""
        return self._iterate(func, iterable, chunksize, True, progress_bar, on_message)

    def imap_unordered(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: Optional[int] = None,
        *,
        progress_bar: bool = False,
        on_message: Optional[OnMessage] = None,
    ) -> Iterator[Any]:
        """Like ``imap``, results in completion order."""
        return self._iterate(func, iterable, chunksize, False, progress_bar, on_message)

    def map_unordered(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: Optional[int] = None,
        *,
        progress_bar: bool = False,
        on_message: Optional[OnMessage] = None,
    ) -> List[Any]:
        """Every result, in completion order (mpire's ``map_unordered``)."""
        return list(self.imap_unordered(func, iterable, chunksize, progress_bar=progress_bar, on_message=on_message))

    def _async(
        self,
        run: Callable[[], Any],
        callback: Optional[Callable[[Any], object]],
        error_callback: Optional[Callable[[BaseException], object]],
    ) -> AsyncResult:
        result = AsyncResult(callback, error_callback, callbacks=self._callbacks)

        def target() -> None:
            try:
                value: Any = run()
                ok = True
            except BaseException as e:  # noqa: BLE001 - delivered to the caller
                value, ok = e, False
            result._set(ok, value)

        thread = threading.Thread(target=target, name="shoal-map-async", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return result

    def map_async(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: Optional[int] = None,
        callback: Optional[Callable[[Any], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
        *,
        on_result: Optional[Callable[[Any, Any], object]] = None,
        on_progress: Optional[Callable[[float], object]] = None,
        on_message: Optional[OnMessage] = None,
    ) -> AsyncResult:
        """``map`` without waiting: an AsyncResult whose value is the list.

        For GUIs, which must not block: ``on_result(argument, result)`` is
        called for each item as it ends (``result`` is the exception for a
        failed item), ``on_progress(fraction)`` with the fraction done in
        [0, 1] and ``on_message(index, kind, payload)`` for each message an
        item's task sends (``shoal.progress``/``log``; as for :meth:`map`);
        all on a background thread, like ``callback`` (called once all
        ended). An exception ``on_message`` raises is printed and the
        batch goes on (it only watches).
        """
        return self._map_async(
            func, iterable, CALL, chunksize, callback, error_callback, on_result, on_progress, on_message
        )

    def _map_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        mode: int,
        chunksize: Optional[int],
        callback: Optional[Callable[[Any], object]],
        error_callback: Optional[Callable[[BaseException], object]],
        on_result: Optional[Callable[[Any, Any], object]],
        on_progress: Optional[Callable[[float], object]],
        on_message: Optional[OnMessage] = None,
    ) -> AsyncResult:
        _check_on_message(on_message)
        if on_result is None and on_progress is None and on_message is None:
            self._check_call(func, chunksize, check=True)  # fail now, not in the thread
            return self._async(
                lambda: self._run(func, iterable, mode, chunksize, False, check=False), callback, error_callback
            )
        self._check_call(func, chunksize, check=True)  # fail now, not in the thread

        def run() -> List[Any]:
            # On the background thread: the caller never waits for its input.
            items = list(iterable)
            n = len(items)
            unordered = self._batch(
                func, items, mode, chunksize, ordered=False, messages=on_message is not None, check=False
            )
            values: List[Any] = [None] * n
            bad: Optional[int] = None
            done = 0
            for index, ok, value in unordered:
                if ok is None:
                    _deliver(on_message, index, value)
                    continue
                done += 1
                values[index] = value
                failed = not ok or isinstance(value, Failure)
                if failed and (bad is None or index < bad):
                    bad = index
                # An event callback that raises is printed and changes
                # nothing, as a message callback.
                if on_result is not None:
                    outcome = (value.exception() if isinstance(value, Failure) else value) if failed else value
                    _call_back(on_result, items[index], outcome)
                if on_progress is not None:
                    _call_back(on_progress, done / n)
            if n == 0 and on_progress is not None:
                _call_back(on_progress, 1.0)
            if bad is not None:
                _raise_for(values[bad])
            return values

        return self._async(run, callback, error_callback)

    def starmap_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Sequence[Any]],
        chunksize: Optional[int] = None,
        callback: Optional[Callable[[Any], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
        *,
        on_result: Optional[Callable[[Any, Any], object]] = None,
        on_progress: Optional[Callable[[float], object]] = None,
        on_message: Optional[OnMessage] = None,
    ) -> AsyncResult:
        """``starmap`` without waiting; events as for :meth:`map_async`."""
        return self._map_async(
            func, iterable, STAR, chunksize, callback, error_callback, on_result, on_progress, on_message
        )

    # ------------------------------------------------------ single calls

    def _send(self, func: Callable[..., Any], args: Sequence[Any], kwds: Dict[str, Any], target: Any) -> Any:
        """Queues one call; ``target._set(ok, value)`` receives its outcome.
        Returns the handle that can cancel it until it starts
        (``_shoal.Pending``)."""
        func, function = self._function(func, None, check=True)
        f: Any = function if function is not None else func
        with self._lock:
            if self._stream is None:
                self._stream, results = self._core.open(task_timeout=self._task_timeout, messages=True)
                self._pump = threading.Thread(
                    target=_run_pump,
                    args=(self._lock, self._pending, results),
                    name="shoal-pump",
                    daemon=True,
                )
                self._pump.start()
            index, call = self._stream.send((f, tuple(args), dict(kwds)))
            self._pending[index] = target
        return call

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Sequence[Any] = (),
        kwds: Optional[Dict[str, Any]] = None,
        callback: Optional[Callable[[Any], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
        *,
        on_message: Optional[Callable[[str, Any], object]] = None,
    ) -> AsyncResult:
        """``func(*args, **kwds)`` on a worker, without waiting; the task's
        messages reach ``on_message(kind, payload)`` and ``AsyncResult.messages()``."""
        result = AsyncResult(callback, error_callback, on_message, self._callbacks)
        self._send(func, args, kwds or {}, result)
        return result

    def apply(self, func: Callable[..., Any], args: Sequence[Any] = (), kwds: Optional[Dict[str, Any]] = None) -> Any:
        """``func(*args, **kwds)`` on a worker; waits for the result."""
        return self.apply_async(func, args, kwds).get()

    # --------------------------------------------------------- lifetime

    def close(self) -> None:
        """Accepts no new tasks; the submitted ones still run."""
        if self._state == _RUN:
            self._state = _CLOSE

    def _end_stream(self) -> None:
        with self._lock:
            stream, pump = self._stream, self._pump
        if stream is not None:
            stream.close()
        if pump is not None:
            pump.join()

    def join(self) -> None:
        """Waits for every submitted task (those of ``imap`` iterators not
        yet read too) and for the workers to exit. Call ``close()`` or
        ``terminate()`` first."""
        if self._state == _RUN:
            raise ValueError("Pool is still running")
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join()
        self._end_stream()
        # Every task of an `imap` started before `close` runs, its results
        # kept for its iterator, as multiprocessing's join waits for them.
        for batch in list(self._batches):
            batch.finish()
        self._core.close()
        self._core.join()
        _live.discard(self)
        self._remove_shared()

    def terminate(self) -> None:
        """Stops every task now (they fail with ``CancelledError``) and the workers."""
        self._state = _TERMINATE
        self._core.terminate()
        self._end_stream()
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join()
        _live.discard(self)
        self._remove_shared()

    def _remove_shared(self) -> None:
        path, self._shared_file = getattr(self, "_shared_file", None), None
        # Not from a forked copy of this process (user code may fork): the
        # original pool may still need the file.
        if path is not None and getattr(self, "_pid", None) == os.getpid():
            try:
                os.unlink(path)
            except OSError:
                pass

    def __del__(self) -> None:
        self._remove_shared()

    def __enter__(self) -> "Pool":
        self._check_running()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()

    def __repr__(self) -> str:
        return f"<shoal.Pool backend={self._backend} processes={self._processes} state={self._state}>"

    # ---------------------------------------------------- beyond mp

    @property
    def backend(self) -> str:
        """``"process"`` or ``"threads"``."""
        return self._backend

    def insights(self) -> str:
        """The per-worker table: tasks, busy/idle/init time, utilisation."""
        return self._core.insights()

    def print_insights(self) -> None:
        """Prints :meth:`insights` (mpire's name)."""
        print(self.insights())

    def suspend(self) -> None:
        """Stops handing tasks to workers; running tasks finish, queued ones wait."""
        self._core.suspend()

    def resume(self) -> None:
        """Hands tasks to workers again after :meth:`suspend`."""
        self._core.resume()


def _run_pump(lock: threading.Lock, pending: Dict[int, Any], results: Any) -> None:
    """The thread that delivers a pool's single calls' outcomes and messages
    to their targets (``pending``, by index). It holds no reference to the
    pool, so that a pool dropped without ``close`` is collected (its core
    then closes, and these results end)."""
    try:
        _deliver_calls(lock, pending, results)
    except BaseException as e:  # noqa: BLE001 - the pool was terminated
        # The calls still waiting end with it (not one waits forever).
        from . import _errors

        with lock:
            waiting = list(pending.values())
            pending.clear()
        error = _errors.CancelledError(f"the pool stopped before the call ended: {e}")
        for target in waiting:
            try:
                target._set(False, error)
            except BaseException:  # noqa: BLE001 - a callback raised
                import traceback

                traceback.print_exc()


def _deliver_calls(lock: threading.Lock, pending: Dict[int, Any], results: Any) -> None:
    for index, ok, value in results:
        with lock:
            target = pending[index] if ok is None else pending.pop(index)
        try:
            if ok is None:  # a message of a running task
                message = getattr(target, "_message", None)
                if message is not None:
                    message(*value)
                continue
            target._set(ok, value)
        except BaseException:  # noqa: BLE001 - a callback raised; keep delivering
            import traceback

            traceback.print_exc()
