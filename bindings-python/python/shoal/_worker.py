"""The entry point of shoal's worker processes.

The pool starts ``python -c "from shoal._worker import main; main()"``. The
worker takes the parent's ``sys.path`` (``SHOAL_PY_PATH``), runs the pool's
``initializer`` (``SHOAL_PY_INIT``), then hands over to the Rust worker
loop, which speaks the wire protocol with the parent and calls back into
``shoal._codec.run_chunk`` for each chunk. An initializer that raises makes
the worker exit before it is ready: the pool counts a failed start.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import sys


def main() -> None:
    path = os.environ.get("SHOAL_PY_PATH")
    if path:
        sys.path[:] = json.loads(path)
    init = os.environ.get("SHOAL_PY_INIT")
    if init:
        initializer, initargs = pickle.loads(base64.b64decode(init))
        initializer(*initargs)
    from . import _shoal

    _shoal.worker_main()
