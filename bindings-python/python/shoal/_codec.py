"""How a chunk of items runs, and how it travels to a worker process.

One chunk is one task of the Rust core. Both backends run it with
:func:`run_items`; the process backend adds bytes around it:

- parent: ``encode_chunk_into(out, function_bytes, mode, items)`` pickles
  the chunk (the function travels as cloudpickle bytes, unpickled once per
  worker);
- worker: ``run_chunk(payload)`` unpickles, runs, pickles the results
  (and says which is the first failure);
- parent: ``decode_results(payload)`` unpickles them.

A list of plain numbers (every item exactly ``int`` in 64 bits, or exactly
``float``) travels packed instead, as 8-byte values (layout and reasons in
``src/packed.rs``): the parent writes such a chunk without a pickle and
the worker's Rust side unpacks it for :func:`run_loaded`; the worker packs
its results when they all are such numbers (``_shoal.pack``), and the
parent unpacks them.

Each result is the function's return value, or a :class:`Failure` holding
the exception it raised (and, from a process, its traceback as text).

A batch whose items' messages someone wants (``on_message``) sets
:data:`ITEM_MESSAGES` in its mode: its items run one by one and the Rust
side is told which runs, so that ``shoal.progress``/``shoal.log`` name
their item, not only its chunk (see ``src/message.rs``).
"""

from __future__ import annotations

import itertools
import _pickle as pickle  # the C module: pickle.py imports `re`, slow for workers
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs worker processes ~20 ms to import
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import _main
from ._errors import RemoteError, RemoteTraceback, SerializationError
from ._shoal import ITEM_MESSAGES, pack, running_item

#: ``f(x)``
CALL = 0
#: ``f(*x)`` (starmap)
STAR = 1
#: ``f(*x[0], **x[1])`` (apply)
APPLY = 2
#: ``x[0](*x[1], **x[2])``: single calls, each with its own function
#: (pickled by cloudpickle for worker processes)
EACH = 3
# ITEM_MESSAGES (from the Rust side, which sets it): a flag on CALL, STAR
# or APPLY, for batches whose items' messages someone wants.

PROTOCOL = _main.PROTOCOL


class Failure:
    """The exception an item raised, with the remote traceback's text."""

    __slots__ = ("exc", "tb")

    def __init__(self, exc: BaseException, tb: str | None = None) -> None:
        self.exc = exc
        self.tb = tb

    def __reduce__(self) -> Any:
        return (Failure, (self.exc, self.tb))

    def exception(self) -> BaseException:
        """The exception to raise in the caller."""
        if self.tb is not None and self.exc.__cause__ is None:
            self.exc.__cause__ = RemoteTraceback(self.tb)
        return self.exc


def run_items(func: Any, mode: int, items: Sequence[Any], failed: Optional[List[int]] = None) -> List[Any]:
    """Runs ``func`` on every item; an exception becomes that item's Failure
    (and its index is appended to ``failed``, when given).

    ``f(x)`` and ``f(*x)`` run in C loops (``list.extend(map(...))``); an
    exception stops the loop after the items before it were appended, and
    the loop goes on from the next item. With :data:`ITEM_MESSAGES` in
    ``mode``, a Python loop names each item as it runs, a cost only
    batches with ``on_message`` pay.
    """
    out: List[Any] = []
    if mode == CALL or mode == STAR:
        it = iter(items)
        calls = map(func, it) if mode == CALL else itertools.starmap(func, it)
        while True:
            try:
                out.extend(calls)
                break
            except Exception as e:  # noqa: BLE001 - the task's own error
                if failed is not None:
                    failed.append(len(out))
                out.append(Failure(e))
        return out
    # One by one: single calls, or a chunk whose items' messages are wanted,
    # which tells the Rust side the offset of the item that runs (and none
    # once the chunk ends, however it ends: later tasks on this thread are
    # not items of it).
    naming = bool(mode & ITEM_MESSAGES)
    mode &= ~ITEM_MESSAGES
    try:
        for offset, item in enumerate(items):
            if naming:
                running_item(offset)
            try:
                out.append(_call(func, mode, item))
            except Exception as e:  # noqa: BLE001 - the task's own error
                if failed is not None:
                    failed.append(offset)
                out.append(Failure(e))
    finally:
        if naming:
            running_item(None)
    return out


def _call(func: Any, mode: int, item: Any) -> Any:
    """One item's call, in any mode."""
    if mode == CALL:
        return func(item)
    if mode == STAR:
        return func(*item)
    if mode == APPLY:
        args, kwargs = item
        return func(*args, **kwargs)
    f, args, kwargs = item
    if isinstance(f, bytes):
        f = _load_function(f)
    return f(*args, **kwargs)


def dump_function(func: object, inherited: Optional[Dict[str, Any]] = None) -> bytes:
    """The function (or settings holding functions) as bytes for worker
    processes (lambdas and closures too; ``__main__``'s as ``shoal._main``
    sends them, those of ``inherited`` by name)."""
    import io

    try:
        out = io.BytesIO()
        _main.pickler(out, inherited).dump(func)
        return out.getvalue()
    except Exception as e:  # noqa: BLE001
        raise SerializationError(f"cannot pickle the function {func!r}: {e}") from e


def _first_unpicklable(items: Sequence[Any]) -> str:
    import io

    for i, x in enumerate(items):
        try:
            _main.pickler(io.BytesIO()).dump(x)
        except Exception as e:  # noqa: BLE001
            return f"item {i} ({type(x).__name__}): {e}"
    return "unknown item"


def encode_chunk_into(
    out: Any, function: bytes | None, mode: int, items: List[Any], main_by_name: bool = False
) -> None:
    """Pickles one chunk into ``out`` (a ``_shoal.Sink``): the pickler
    writes a large item's bytes straight to ``out``, without a copy in a
    pickle of its own. A chunk that the C pickler cannot write (lambdas as
    arguments), or that names ``__main__`` (unless ``main_by_name``: the
    workers are copies of this process), is written again by
    ``shoal._main``'s pickler."""
    try:
        pickle.Pickler(out, protocol=PROTOCOL).dump((function, mode, items))
        if main_by_name or not out.names_main():
            return
    except Exception:  # noqa: BLE001 - the other pickler says why
        pass
    out.clear()
    try:
        _main.pickler(out).dump((function, mode, items))
    except Exception:  # noqa: BLE001
        raise SerializationError(f"cannot pickle the arguments: {_first_unpicklable(items)}") from None


def decode_results(payload: bytes) -> List[Any]:
    """Unpickles the results of one chunk."""
    try:
        return pickle.loads(payload)
    except Exception as e:  # noqa: BLE001
        raise SerializationError(f"cannot unpickle the results: {e}") from e


# ------------------------------------------------------------- worker side

_functions: dict[bytes, Callable[..., Any]] = {}


def _load_function(function: bytes) -> Callable[..., Any]:
    func = _functions.get(function)
    if func is None:
        func = pickle.loads(function)
        if len(_functions) >= 64:
            _functions.clear()
        _functions[function] = func
    return func


def _portable(result: Any) -> Any:
    """The result itself if it pickles, else a Failure saying why."""
    if isinstance(result, Failure):
        try:
            pickle.loads(pickle.dumps(result.exc, protocol=PROTOCOL))
            return result
        except Exception:  # noqa: BLE001
            e = result.exc
            return Failure(RemoteError(f"{type(e).__module__}.{type(e).__qualname__}: {e}"), result.tb)
    try:
        pickle.dumps(result, protocol=PROTOCOL)
        return result
    except Exception as e:  # noqa: BLE001
        return Failure(
            SerializationError(f"cannot pickle the result ({type(result).__name__}): {e}")
        )


def run_chunk(payload: bytes) -> Tuple[bytes, int]:
    """Worker side: runs one pickled chunk; returns its results pickled and
    the offset of the first that is a :class:`Failure` (-1: none), so that
    the parent need not look at every result to find it."""
    try:
        function, mode, items = pickle.loads(payload)
    except Exception as e:  # noqa: BLE001
        raise SerializationError(f"cannot unpickle the task: {e}") from e
    return run_loaded(function, mode, items)


def load_function(function: bytes) -> Callable[..., Any]:
    """The task function of a chunk, unpickled (once per function)."""
    try:
        return _load_function(function)
    except Exception as e:  # noqa: BLE001
        raise SerializationError(f"cannot unpickle the task: {e}") from e


def run_loaded(function: bytes, mode: int, items: List[Any]) -> Tuple[bytes, int]:
    """:func:`run_chunk` on a chunk already read (a packed chunk: see the
    module docs)."""
    func = load_function(function) if (mode & ~ITEM_MESSAGES) != EACH else None
    failed: List[int] = []
    results = run_items(func, mode, items, failed)
    return finish(results, failed)


def finish_loaded(
    func: Callable[..., Any], results: List[Any], failed: List[int], rest: List[Any]
) -> Tuple[bytes, int]:
    """:func:`run_loaded` in ``CALL`` mode for a chunk whose first items the
    worker's Rust loop ran (``worker.rs``) until one raised or returned a
    result that does not pack: ``results`` theirs (a :class:`Failure` where
    one raised, its offset in ``failed``), ``rest`` the items after them."""
    more: List[int] = []
    at = len(results)
    results.extend(run_items(func, CALL, rest, more))
    failed.extend(at + i for i in more)
    return finish(results, failed)


def finish(results: List[Any], failed: List[int]) -> Tuple[bytes, int]:
    """A chunk's results as bytes and the offset of its first Failure (-1:
    none): packed when they are plain numbers, else pickled, a Failure's
    traceback formatted and a result that does not pickle replaced by a
    Failure saying why."""
    if failed:
        import traceback
    for i in failed:
        r = results[i]
        results[i] = _portable(Failure(r.exc, "".join(traceback.format_exception(r.exc))))
    first = failed[0] if failed else -1
    data = pack(results) if first == -1 else None  # plain numbers: no pickle
    if data is None:
        try:
            data = pickle.dumps(results, protocol=PROTOCOL)
        except Exception:  # noqa: BLE001 - find the culprit, keep the others
            results = [_portable(r) for r in results]
            data = pickle.dumps(results, protocol=PROTOCOL)
            first = next((i for i, r in enumerate(results) if type(r) is Failure), -1)
    flush_output()
    return data, first


def flush_output() -> None:
    """Flushes the worker's stdout and stderr after each chunk, so that a
    task's prints are out before its chunk's results reach the pool."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
