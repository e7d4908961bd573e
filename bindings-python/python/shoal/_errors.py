"""The exceptions shoal raises, one class per way a task can fail.

A task's own exception is re-raised as itself (its original type), with the
worker's traceback attached as its ``__cause__`` (a :class:`RemoteTraceback`),
as ``multiprocessing`` does. The classes here are for failures that are not
the task's own: its worker died, it ran too long, it could not be pickled.
"""

from __future__ import annotations

from _pickle import PicklingError  # the C module: pickle.py imports `re`, slow for workers
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class ShoalError(Exception):
    """Base class of shoal's own errors."""


class WorkerLostError(ShoalError):
    """The worker running the task died (killed, crashed, exited)."""


class TaskTimeoutError(ShoalError, TimeoutError):
    """The task ran longer than its ``task_timeout``; its worker was stopped."""


class SerializationError(ShoalError, PicklingError):
    """A function, argument or result could not be pickled or unpickled."""


class BrokenPoolError(ShoalError):
    """The pool cannot start workers (``initializer`` keeps failing, ...)."""


class TaskError(ShoalError):
    """A task failed in a way that has no better class (a bug in shoal)."""


class RemoteError(ShoalError):
    """A task raised an exception that could not travel back as itself
    (it did not survive pickling); this carries its type name and text."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, as text."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


def _cancelled_error() -> type:
    import concurrent.futures

    class CancelledError(ShoalError, concurrent.futures.CancelledError):
        """The task was cancelled (``terminate``, ``cancel``) before it ended."""

    CancelledError.__module__ = __name__
    return CancelledError


def __getattr__(name: str) -> Any:
    # CancelledError derives from concurrent.futures', whose import (with
    # logging) costs worker processes tens of milliseconds: made on first use.
    if name == "CancelledError":
        cls = _cancelled_error()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
