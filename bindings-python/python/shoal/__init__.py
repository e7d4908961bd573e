"""shoal: a worker pool on a Rust core.

``shoal.Pool`` is a drop-in for ``multiprocessing.Pool``; ``shoal.Executor``
is a ``concurrent.futures.Executor``. Workers are processes (default) or
threads. Inside a task, ``shoal.progress(fraction)``, ``shoal.log(text)``
and ``shoal.worker_id()`` talk to the pool.
"""

from ._errors import (
    BrokenPoolError,
    CancelledError,
    RemoteError,
    RemoteTraceback,
    SerializationError,
    ShoalError,
    TaskError,
    TaskTimeoutError,
    WorkerLostError,
)
from ._executor import Executor
from ._pool import AsyncResult, IMapIterator, Pool
from ._shoal import log, progress, worker_id

__all__ = [
    "AsyncResult",
    "BrokenPoolError",
    "CancelledError",
    "Executor",
    "IMapIterator",
    "Pool",
    "RemoteError",
    "RemoteTraceback",
    "SerializationError",
    "ShoalError",
    "TaskError",
    "TaskTimeoutError",
    "WorkerLostError",
    "log",
    "progress",
    "worker_id",
]
__version__ = "0.1.0"
