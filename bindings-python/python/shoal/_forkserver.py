"""The fork servers of the ``forkserver`` and ``fork`` start methods (the
pool's side and the protocol are in the extension's ``forkserver.rs``).

A single-threaded interpreter that forks each worker with
``clone(CLONE_PARENT)`` (``_shoal.fork_sibling``), so that the worker is a
child of the pool's process. Its stdin is its end of the socket pair with
the pool's process. With ``forkserver`` it is a new interpreter, one per
pool process, that imported shoal once; with ``fork`` it is a copy of the
pool's process forked as the pool is made (:func:`fork_server`), one per
pool.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import struct
import sys
import threading
from typing import Any, Dict, List, Set, Tuple

from . import _shoal

_LENGTH = 8
#: The count that marks an import request (``forkserver.rs``).
_IMPORT = 0xFFFF_FFFF


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the pool's process closed the connection")
        data += chunk
    return data


def serve() -> None:
    """The server's loop: one request, one fork, one reply; returns when
    the pool's process closes its end."""
    sock = socket.socket(fileno=os.dup(0))
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    parent = os.getppid()
    _shoal.die_with_parent(parent)
    # Ctrl-C in a terminal reaches the whole process group: the server
    # lives on (as multiprocessing's does), and so do its workers (see
    # ``_worker.main``).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # What every worker needs, imported once here instead of in each one.
    from . import _codec, _context, _worker  # noqa: F401

    try:
        import cloudpickle  # noqa: F401
    except ImportError:
        pass
    while True:
        try:
            head, fds, _, _ = socket.recv_fds(sock, _LENGTH, 16)
            if not head:
                return
            head += _recv_exactly(sock, _LENGTH - len(head))
            body = _recv_exactly(sock, int.from_bytes(head, "little"))
        except OSError:  # ConnectionError included
            return
        (count,) = struct.unpack_from("<I", body)
        if count == _IMPORT:
            name, *path = (s.decode("utf-8", "surrogateescape") for s in body[4:].split(b"\0")[:-1])
            status = _import(name, path)
            sock.sendall(status.to_bytes(_LENGTH, "little", signed=True))
            if status < 0:
                return
            continue
        targets = list(struct.unpack_from(f"<{count}i", body, 4))
        strings = body[4 + 4 * count :].split(b"\0")[:-1]
        cwd, entries = strings[0], strings[1:]
        try:
            pid = _shoal.fork_sibling()
        except OSError as e:
            pid = -(e.errno or 1)
        if pid == 0:
            _become_worker(sock, list(zip(fds, targets)), parent, entries, cwd)
        for fd in fds:
            os.close(fd)
        sock.sendall(pid.to_bytes(_LENGTH, "little", signed=True))


def fork_server(pools: int) -> Any:
    """The ``fork`` start method: forks this process into the server of one
    pool, whose workers then start as copies of this process as it is now
    (its modules, globals and ``__main__``), and returns its handle
    (``_shoal.ForkedServer``) for the pool. ``pools``: this process's shoal
    pools not yet joined or terminated.

    Refused (``ValueError``) when the fork is not safe: while another
    Python thread runs (it may hold a lock that the copy needs) or a pool
    does (its threads hold the pool's locks). The threads a joined pool
    leaves end on their own holding nothing, and those of native
    libraries are not counted, as with ``multiprocessing``'s ``fork``:
    libraries that start threads at import, such as numpy's OpenBLAS, stop
    them around a fork themselves."""
    me = threading.current_thread()
    running = [f"Python thread {t.name!r}" for t in threading.enumerate() if t is not me]
    if pools:
        running.append(f"{pools} shoal pool{'s' if pools > 1 else ''} (not yet joined or terminated)")
    if running:
        raise ValueError(
            "start_method='fork' forks this process, which is only safe while no other "
            f"thread of it runs Python code and no other pool runs; running now: {', '.join(running)}. "
            "Make the pool before starting them, or use start_method='forkserver' (the default)"
        )
    ours, theirs = socket.socketpair()
    # Buffered output would be written again by the copies.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or replaced stream
            pass
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            ours.close()
            os.dup2(theirs.fileno(), 0)
            theirs.close()
            # The copy runs no code of the pool's process, so its objects
            # are never collected here (no finalizer of theirs runs twice),
            # and stay shared with the workers' pages.
            gc.freeze()
            serve()
            code = 0
        except BaseException:  # noqa: BLE001 - reported, then the copy exits
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    theirs.close()
    return _shoal.ForkedServer(ours.detach(), pid)


def _import(name: str, path: List[str]) -> int:
    """Imports ``name`` for the workers forked after it: 0 if it imported,
    1 if it raised, -1 if this process now runs more than one thread (it
    must not fork any more)."""
    sys.path[:] = path
    try:
        __import__(name)
        status = 0
    except BaseException:  # noqa: BLE001 - the worker will import it and report
        status = 1
    return status if len(os.listdir("/proc/self/task")) == 1 else -1


#: Modules this process asked its fork server to import.
_asked: Set[str] = set()


def preload_for(func: Any) -> None:
    """The pool's side: asks the fork server to import the module of
    ``func`` (a ``functools.partial``'s function too) before its next fork,
    once per module, when the workers import it to unpickle ``func``: a
    module-level name of a module this process imported from a file (so
    its import is known to work here); not ``__main__`` (its functions
    travel by value) nor shoal's own (the server has them)."""
    target = getattr(func, "func", func)
    name = getattr(target, "__module__", None)
    if not isinstance(name, str) or name in _asked:
        return
    module = sys.modules.get(name)
    if name == "__main__" or name.partition(".")[0] == "shoal" or getattr(module, "__file__", None) is None:
        return
    found: Any = module
    for part in str(getattr(target, "__qualname__", "<>")).split("."):
        found = getattr(found, part, None)
    if found is not target:
        return  # a closure or lambda: pickled by value, its module not imported
    _asked.add(name)
    _shoal.forkserver_preload(name, [p for p in sys.path if isinstance(p, str)])


def _become_worker(
    sock: socket.socket, fds: List[Tuple[int, int]], parent: int, entries: List[bytes], cwd: bytes
) -> None:
    """The forked worker: never returns."""
    code = 70
    try:
        sock.detach()  # its fd is closed below; the object must not close it again
        _shoal.become_worker(fds, parent)
        environ: Dict[bytes, bytes] = {}
        for entry in entries:
            key, _, value = entry.partition(b"=")
            environ[key] = value
        _set_environment(environ)
        os.chdir(cwd)
        from ._worker import main

        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported, then the worker exits
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def _set_environment(environ: Dict[bytes, bytes]) -> None:
    """Makes the worker's environment ``environ``, changing only what
    differs from the server's (inherited from the same pool process, so
    most of it is the same): clearing and refilling it all was ~1 ms of a
    worker's start, each ``putenv`` scanning the whole environment."""
    current = os.environb
    for key in [k for k in current if k not in environ]:
        del current[key]
    for key, value in environ.items():
        if current.get(key) != value:
            current[key] = value
