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

import binascii
import multiprocessing
import os
import sys
import threading
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from . import _codec, _shoal
from ._codec import CALL, STAR, Failure
from ._worker import to_env

#: Workers' glibc keeps freed memory instead of returning it to the kernel
#: after every task (numpy temporaries; see DESIGN.md).
_WORKER_MALLOC = {
    "MALLOC_TRIM_THRESHOLD_": str(128 << 20),
    "MALLOC_MMAP_THRESHOLD_": str(128 << 20),
}

_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"

BACKENDS = ("process", "threads")
START_METHODS = ("spawn",)


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


class AsyncResult:
    """The result of ``apply_async``/``map_async``, as in multiprocessing."""

    def __init__(
        self,
        callback: Optional[Callable[[Any], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
    ) -> None:
        self._event = threading.Event()
        self._callback = callback
        self._error_callback = error_callback
        self._value: Any = None
        self._error: Optional[BaseException] = None

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
        if ok and not isinstance(value, Failure):
            self._value = value
            if self._callback is not None:
                self._callback(value)
        else:
            self._error = value.exception() if isinstance(value, Failure) else value
            if self._error_callback is not None:
                self._error_callback(self._error)
        self._event.set()


ApplyResult = AsyncResult
MapResult = AsyncResult


class IMapIterator:
    """The iterator of ``imap``/``imap_unordered``: values, or the item's exception."""

    def __init__(self, batch: Any) -> None:
        self._batch = batch

    def __iter__(self) -> "IMapIterator":
        return self

    def __next__(self) -> Any:
        _index, ok, value = next(self._batch)
        return _unwrap(ok, value)

    def next(self, timeout: Optional[float] = None) -> Any:
        """Like ``next(it)``. ``timeout`` is accepted for compatibility and
        not enforced yet."""
        return self.__next__()


class Pool:
    """A pool of workers with the API of ``multiprocessing.Pool``.

    ``processes`` workers (default: the number of CPUs) are processes
    (``backend="process"``, the default) or threads (``backend="threads"``:
    for code that releases the GIL, such as numpy). ``initializer(*initargs)``
    runs once in each worker as it starts; ``maxtasksperchild`` replaces a
    worker after that many tasks. ``task_timeout`` (seconds) stops a task
    that runs longer (its worker process is replaced) and fails it with
    ``TaskTimeoutError``. ``context`` is accepted for compatibility and
    ignored; ``start_method`` may be ``"spawn"`` (the default; other start
    methods are not available yet).
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
    ) -> None:
        if processes is None:
            processes = os.cpu_count() or 1
        _positive_int("processes", processes, allow_none=False)
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        _positive_int("maxtasksperchild", maxtasksperchild)
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
        kwargs: Dict[str, Any] = {"lifespan": maxtasksperchild, "task_timeout": self._task_timeout}
        if self._process:
            env = dict(_WORKER_MALLOC)
            env["SHOAL_PY_PATH"] = to_env([p for p in sys.path if isinstance(p, str)])
            if initializer is not None:
                init = _codec.dump_function((initializer, tuple(initargs)))
                env["SHOAL_PY_INIT"] = binascii.b2a_base64(init, newline=False).decode("ascii")
            kwargs["command"] = [sys.executable, "-c", "from shoal._worker import main; main()"]
            kwargs["env"] = sorted(env.items())
        elif initializer is not None:
            args = tuple(initargs)
            kwargs["initializer"] = lambda: initializer(*args)
        self._core = _shoal.Core(backend, processes, **kwargs)
        self._state = _RUN
        self._lock = threading.Lock()
        self._threads: List[threading.Thread] = []
        self._stream: Any = None
        self._pump: Optional[threading.Thread] = None
        self._pending: Dict[int, Any] = {}

    # ----------------------------------------------------------- batches

    def _check_running(self) -> None:
        if self._state != _RUN:
            raise ValueError("Pool not running")

    def _batch(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        mode: int,
        chunksize: Optional[int],
        ordered: bool = True,
    ) -> Any:
        self._check_running()
        if not callable(func):
            raise TypeError(f"func must be callable (got {type(func).__name__})")
        _positive_int("chunksize", chunksize)
        function = _codec.dump_function(func) if self._process else None
        return self._core.batch(func, function, mode, iterable, ordered=ordered, chunksize=chunksize)

    def _collect(self, batch: Any) -> List[Any]:
        values, bad = batch.collect(Failure)
        if bad is not None:
            _raise_for(values[bad])
        return values

    def map(self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: Optional[int] = None) -> List[Any]:
        """``[func(x) for x in iterable]`` on the workers; raises the first item's exception."""
        return self._collect(self._batch(func, iterable, CALL, chunksize))

    def starmap(
        self, func: Callable[..., Any], iterable: Iterable[Sequence[Any]], chunksize: Optional[int] = None
    ) -> List[Any]:
        """``[func(*args) for args in iterable]`` on the workers."""
        return self._collect(self._batch(func, iterable, STAR, chunksize))

    def imap(self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: Optional[int] = None) -> IMapIterator:
        """Lazy ``map``: results in order as they come; the input is pulled as needed."""
        return IMapIterator(self._batch(func, iterable, CALL, chunksize))

    def imap_unordered(
        self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: Optional[int] = None
    ) -> IMapIterator:
        """Like ``imap``, results in completion order."""
        return IMapIterator(self._batch(func, iterable, CALL, chunksize, ordered=False))

    def map_unordered(
        self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: Optional[int] = None
    ) -> List[Any]:
        """Every result, in completion order (mpire's ``map_unordered``)."""
        return list(self.imap_unordered(func, iterable, chunksize))

    def _async(
        self,
        run: Callable[[], Any],
        callback: Optional[Callable[[Any], object]],
        error_callback: Optional[Callable[[BaseException], object]],
    ) -> AsyncResult:
        result = AsyncResult(callback, error_callback)

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
    ) -> AsyncResult:
        """``map`` without waiting: an AsyncResult whose value is the list."""
        batch = self._batch(func, iterable, CALL, chunksize)
        return self._async(lambda: self._collect(batch), callback, error_callback)

    def starmap_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Sequence[Any]],
        chunksize: Optional[int] = None,
        callback: Optional[Callable[[Any], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
    ) -> AsyncResult:
        """``starmap`` without waiting."""
        batch = self._batch(func, iterable, STAR, chunksize)
        return self._async(lambda: self._collect(batch), callback, error_callback)

    # ------------------------------------------------------ single calls

    def _send(self, func: Callable[..., Any], args: Sequence[Any], kwds: Dict[str, Any], target: Any) -> None:
        """Queues one call; ``target._set(ok, value)`` receives its outcome."""
        self._check_running()
        if not callable(func):
            raise TypeError(f"func must be callable (got {type(func).__name__})")
        f: Any = _codec.dump_function(func) if self._process else func
        with self._lock:
            if self._stream is None:
                self._stream, results = self._core.open(task_timeout=self._task_timeout)
                self._pump = threading.Thread(
                    target=self._run_pump, args=(results,), name="shoal-pump", daemon=True
                )
                self._pump.start()
            index = self._stream.send((f, tuple(args), dict(kwds)))
            self._pending[index] = target

    def _run_pump(self, results: Any) -> None:
        for index, ok, value in results:
            with self._lock:
                target = self._pending.pop(index)
            try:
                target._set(ok, value)
            except BaseException:  # noqa: BLE001 - a callback raised; keep delivering
                import traceback

                traceback.print_exc()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Sequence[Any] = (),
        kwds: Optional[Dict[str, Any]] = None,
        callback: Optional[Callable[[Any], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
    ) -> AsyncResult:
        """``func(*args, **kwds)`` on a worker, without waiting."""
        result = AsyncResult(callback, error_callback)
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
        """Waits for every submitted task and for the workers to exit.
        Call ``close()`` or ``terminate()`` first."""
        if self._state == _RUN:
            raise ValueError("Pool is still running")
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join()
        self._end_stream()
        self._core.close()
        self._core.join()

    def terminate(self) -> None:
        """Stops every task now (they fail with ``CancelledError``) and the workers."""
        self._state = _TERMINATE
        self._core.terminate()
        self._end_stream()
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join()

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
