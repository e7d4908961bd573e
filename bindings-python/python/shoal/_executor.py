"""``shoal.Executor``: a ``concurrent.futures.Executor`` on a shoal pool."""

from __future__ import annotations

import atexit
import concurrent.futures
import itertools
import threading
import weakref
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence

from ._codec import STAR
from ._pool import Pool, TaskMessages, _call_back, _unwrap


class Future(concurrent.futures.Future, TaskMessages):
    """What :meth:`Executor.submit` returns: a ``concurrent.futures.Future``
    that also has the task's messages (``shoal.progress(fraction)`` and
    ``shoal.log(text)`` in the task), as ``AsyncResult`` has them.
    ``Executor.submit`` passes its keyword arguments on to the function
    (the ``concurrent.futures`` contract), so messages cannot be a
    ``submit`` option: the future has them instead. ``messages()`` lists
    them, ``progress`` is the last fraction, and ``add_message_callback(fn)``
    calls ``fn(kind, payload)`` for each one."""

    def __init__(self) -> None:
        concurrent.futures.Future.__init__(self)
        TaskMessages.__init__(self)
        self._message_callbacks: List[Callable[[str, Any], object]] = []
        # Reentrant: a callback may add another.
        self._message_lock = threading.RLock()
        #: The call's handle (``_shoal.Pending``), once sent.
        self._call: Any = None

    def cancel(self) -> bool:
        """Cancels the call unless a worker took it already (then ``False``,
        as for a running ``concurrent.futures`` future): it never runs."""
        with self._condition:
            call = self._call
            if call is not None and not self.done() and not call.cancel():
                return False
            return concurrent.futures.Future.cancel(self)

    def running(self) -> bool:
        """Whether a worker took the call and it has not ended."""
        call = self._call
        return call is not None and call.started and not self.done()

    def add_message_callback(self, fn: Callable[[str, Any], object]) -> None:
        """Calls ``fn(kind, payload)`` for each of the task's messages: at
        once for those that already came (the last ``MAX_MESSAGES``), as
        ``add_done_callback`` calls at once for a finished future, so that
        none is lost to a fast task; then for each as it comes, on a pool
        thread. Each message once, in order. An exception ``fn`` raises is
        printed and changes nothing."""
        if not callable(fn):
            raise TypeError(f"add_message_callback: fn must be callable (got {type(fn).__name__})")
        with self._message_lock:
            self._message_callbacks.append(fn)
            for kind, payload in self.messages():
                _call_back(fn, kind, payload)

    def _message(self, kind: str, payload: Any) -> None:
        with self._message_lock:
            self._record(kind, payload)
            for fn in list(self._message_callbacks):
                _call_back(fn, kind, payload)


class _FutureTarget:
    """Delivers a call's outcome and messages to a Future (unless it was
    cancelled)."""

    __slots__ = ("future",)

    def __init__(self, future: Future) -> None:
        self.future = future

    def _message(self, kind: str, payload: Any) -> None:
        self.future._message(kind, payload)

    def _set(self, ok: bool, value: Any) -> None:
        if self.future.cancelled():
            return
        try:
            self.future.set_result(_unwrap(ok, value))
        except concurrent.futures.InvalidStateError:
            pass
        except BaseException as e:  # noqa: BLE001 - the task's exception
            try:
                self.future.set_exception(e)
            except concurrent.futures.InvalidStateError:
                pass


#: Executors not yet shut down with ``wait=True``: their calls run before
#: the interpreter exits, as ``concurrent.futures`` waits for its executors'
#: work (pools, as multiprocessing's, are terminated at exit instead).
_unjoined: "weakref.WeakSet[Executor]" = weakref.WeakSet()


@atexit.register
def _join_executors() -> None:
    # Registered after the pools' handler (`_pool` is imported first), so
    # it runs before it.
    for executor in list(_unjoined):
        try:
            executor._pool.close()
            executor._pool.join()
        except BaseException:  # noqa: BLE001 - exiting anyway
            pass


class Executor(concurrent.futures.Executor):
    """``submit``/``map``/``shutdown`` on shoal workers (processes by default).

    The signature of ``concurrent.futures.ProcessPoolExecutor`` (its
    ``mp_context`` is accepted and ignored, as ``Pool``'s ``context`` is;
    ``start_method`` chooses, as for :class:`Pool`). Works with
    ``asyncio``'s ``loop.run_in_executor``. ``map`` chunks automatically
    unless ``chunksize`` is given. ``submit`` returns a :class:`Future`
    that also holds the task's messages (``shoal.progress``/``shoal.log``).
    """

    def __init__(
        self,
        max_workers: Optional[int] = None,
        mp_context: Any = None,
        initializer: Optional[Callable[..., object]] = None,
        initargs: Sequence[Any] = (),
        *,
        max_tasks_per_child: Optional[int] = None,
        backend: str = "process",
        task_timeout: Optional[float] = None,
        start_method: Optional[str] = None,
    ) -> None:
        self._pool = Pool(
            max_workers,
            initializer,
            initargs,
            max_tasks_per_child,
            mp_context,
            backend=backend,
            task_timeout=task_timeout,
            start_method=start_method,
        )
        self._futures: "set[concurrent.futures.Future[Any]]" = set()
        self._maps: List[Any] = []
        _unjoined.add(self)
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """``fn(*args, **kwargs)`` on a worker: a :class:`Future` (with the
        task's messages)."""
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future = Future()
        future._call = self._pool._send(fn, args, kwargs, _FutureTarget(future))
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return future

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: Optional[float] = None,
        chunksize: Optional[int] = None,
    ) -> Iterator[Any]:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if timeout is not None:
            return super().map(fn, *iterables, timeout=timeout)
        batch = self._pool._batch(fn, zip(*iterables), STAR, chunksize, values=True)
        # Held until shutdown, so that a map whose results nobody takes
        # still runs (`with executor: executor.map(f, items)`), as with
        # concurrent.futures' executors.
        self._maps = [b for b in self._maps if not b.finished]
        self._maps.append(batch)
        return batch

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        if cancel_futures:
            for f in list(self._futures):
                f.cancel()
            for batch in self._maps:
                batch.cancel()
        self._pool.close()
        if wait:
            self._pool.join()
            self._maps = []
            _unjoined.discard(self)
