"""shoal: a worker pool on a Rust core.

``shoal.Pool`` is a drop-in for ``multiprocessing.Pool``; ``shoal.Executor``
is a ``concurrent.futures.Executor``. Workers are processes (default) or
threads. Inside a task, ``shoal.progress(fraction)``, ``shoal.log(text)``
and ``shoal.worker_id()`` talk to the pool.
"""

from importlib import import_module as _import_module

from ._shoal import log, progress, worker_id

# Imported on first use (PEP 562): worker processes import `shoal._worker`,
# which runs this file, and must not pay for `concurrent.futures`,
# `multiprocessing` and cloudpickle before they are ready.
_LAZY = {
    "AsyncResult": "._pool",
    "IMapIterator": "._pool",
    "Pool": "._pool",
    "Executor": "._executor",
    "Future": "._executor",
    "BrokenPoolError": "._errors",
    "CancelledError": "._errors",
    "RemoteError": "._errors",
    "RemoteTraceback": "._errors",
    "SerializationError": "._errors",
    "ShoalError": "._errors",
    "TaskError": "._errors",
    "TaskTimeoutError": "._errors",
    "WorkerLostError": "._errors",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shoal' has no attribute {name!r}")
    value = getattr(_import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> "list[str]":
    return sorted(__all__)


__all__ = [
    "AsyncResult",
    "BrokenPoolError",
    "CancelledError",
    "Executor",
    "Future",
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
