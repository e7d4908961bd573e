"""The entry point of shoal's worker processes.

The pool starts ``python -c "from shoal._worker import main; main()"``. The
worker takes the parent's ``sys.path`` (``SHOAL_PY_PATH``), runs the pool's
``initializer``, ``worker_init`` (``SHOAL_PY_SETUP``, see ``shoal._context``), then hands over to the Rust worker
loop, which speaks the wire protocol with the parent and calls back into
``shoal._codec.run_chunk`` for each chunk. An initializer that raises makes
the worker exit before it is ready: the pool counts a failed start.
"""

from __future__ import annotations

import binascii
import os
import pickle
import sys


def from_env(name: str) -> object:
    """An object the parent put into the environment (see :func:`to_env`)."""
    return pickle.loads(binascii.a2b_base64(os.environ[name]))


def to_env(obj: object) -> str:
    """``obj`` pickled as an environment variable's value. (binascii and
    pickle, not json or base64: those import `re`, milliseconds per worker.)"""
    return binascii.b2a_base64(pickle.dumps(obj), newline=False).decode("ascii")


def main() -> None:
    if "SHOAL_PY_PATH" in os.environ:
        sys.path[:] = from_env("SHOAL_PY_PATH")  # type: ignore[assignment]
    if "SHOAL_PY_SETUP" in os.environ:
        from . import _context

        setup = from_env("SHOAL_PY_SETUP")
        _context.start(setup, int(os.environ.get("SHOAL_WORKER_ID", "0")), thread=False)  # type: ignore[arg-type]
    from . import _shoal

    _shoal.worker_main()
