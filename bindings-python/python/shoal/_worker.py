"""The entry point of shoal's worker processes.

The pool starts ``python -c "from shoal._worker import main; main()"``. The
worker takes the parent's ``sys.path`` (``SHOAL_PY_PATH``), reads the pool's
settings (``SHOAL_PY_SETUP``, see ``shoal._context``) and hands over to the
Rust worker loop, which speaks the wire protocol with the parent, runs
``initializer``/``worker_init`` and ``worker_exit`` as the worker's hooks
and calls back into ``shoal._codec.run_chunk`` for each chunk. An
initializer that raises is the worker's start failure: the pool reports
its message and, after repeated failures, fails tasks with
``BrokenPoolError``.
"""

from __future__ import annotations

import binascii
import os
import _pickle as pickle  # the C module: pickle.py imports `re`
import sys


def from_env(name: str) -> object:
    """An object the parent put into the environment (see :func:`to_env`)."""
    return pickle.loads(binascii.a2b_base64(os.environ[name]))


def to_env(obj: object) -> str:
    """``obj`` pickled as an environment variable's value. (binascii and
    pickle, not json or base64: those import `re`, milliseconds per worker.)"""
    return binascii.b2a_base64(pickle.dumps(obj), newline=False).decode("ascii")


def main() -> None:
    """A spawned worker: takes the parent's ``sys.path`` and the pool's
    settings from the environment, then serves. Ctrl-C is the pool's
    process's to handle (it reaches the terminal's whole process group):
    a worker ignores SIGINT, as mpire's do, instead of failing the task it
    runs or the next one; ``terminate`` and ``task_timeout`` stop tasks."""
    import _signal  # type: ignore[import-not-found]  # not signal: it imports enum, ms per worker

    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    if "SHOAL_PY_PATH" in os.environ:
        path = from_env("SHOAL_PY_PATH")
        assert isinstance(path, list)
        sys.path[:] = path
    if os.environ.get("SHOAL_PY_SETUP"):
        setup = from_env("SHOAL_PY_SETUP")
    else:
        # A fork worker: the settings as its pool's process had them.
        setup = getattr(sys.modules.get("shoal._context"), "inherited", None)
    serve(setup)


def serve(setup: object) -> None:
    """Runs the Rust worker loop with the pool's settings (a
    ``shoal._context.Setup`` or None) as the worker's hooks."""
    from . import _shoal

    if setup is None:
        _shoal.worker_main()
        return
    from . import _context

    _shoal.worker_main(
        init=lambda worker: _context.start(setup, worker, thread=False),  # type: ignore[arg-type]
        exit=_context.stop,
    )
