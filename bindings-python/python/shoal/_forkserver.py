"""The ``forkserver`` start method: worker processes forked from a server.

Starting a new interpreter for every worker (``spawn``) costs tens of
milliseconds; forking the pool's own process is fast but not safe once it
runs threads (a lock another thread held at the fork stays locked in the
child forever; shoal's pools run threads). The fork server is the middle
way, as in ``multiprocessing``: one single-threaded interpreter per pool
process, started with the first pool that asks for it, which imported
shoal once and forks a worker in about a millisecond.

Protocol, over a Unix stream socket pair (the pool's end in this module,
the server's end inherited as its stdin):

- request (pool to server): an 8-byte little-endian length, then that
  many bytes of pickled ``(targets, env, cwd)``, with the worker's fds
  attached to the first bytes (SCM_RIGHTS); ``targets[i]`` is the fd
  number the i-th attached fd gets in the worker (the connection and the
  shared-memory segments, see ``shoal_process::Launch``), ``env`` the
  whole environment of the worker (the pool's process's environment at
  the request, then the pool's own variables), ``cwd`` its working
  directory.
- reply (server to pool): the worker's pid as a signed 8-byte
  little-endian integer, or a negative errno if the fork failed.

The server forks each worker with ``clone(CLONE_PARENT)``
(``_shoal.fork_sibling``): the worker is a child of the pool's process,
which waits for it and signals it like a spawned one. The server exits
when the pool's process closes its end (or dies: it also has a
parent-death signal), and a worker dies with the pool's process.
"""

from __future__ import annotations

import os
import _pickle as pickle
import queue
import socket
import subprocess
import sys
import threading
from typing import Any, Callable, List, Optional, Tuple, TypeVar

from . import _shoal

_LENGTH = 8

T = TypeVar("T")

_lock = threading.Lock()
#: (server process, our end, the pid that started it): a forked copy of
#: this process must start its own server, not talk over its parent's.
_server: Optional[Tuple["subprocess.Popen[bytes]", socket.socket, int]] = None


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the fork server closed its connection")
        data += chunk
    return data


def _connection() -> socket.socket:
    """Our end of the server's socket; starts the server if needed. The
    caller holds ``_lock``."""
    global _server
    if _server is not None:
        process, sock, pid = _server
        if pid == os.getpid() and process.poll() is None:
            return sock
        if pid == os.getpid():
            sock.close()
            process.wait()
        _server = None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with theirs:
        process = _on_keeper(
            lambda: subprocess.Popen(
                [sys.executable, "-c", "from shoal._forkserver import serve; serve()"],
                stdin=theirs.fileno(),
                close_fds=True,
            )
        )
    _server = (process, ours, os.getpid())
    return ours


_keeper: Optional[Tuple["queue.SimpleQueue[Any]", int]] = None


def _on_keeper(start: Callable[[], T]) -> T:
    """Runs ``start`` on a thread that lives as long as this process.

    The server and its workers die with the *thread* that started the
    server (Linux sends the parent-death signal when the parent thread
    exits, and a ``CLONE_PARENT`` worker's parent is the server's), so
    that cannot be a pool's supervisor thread, which ends with its pool.
    """
    global _keeper
    if _keeper is None or _keeper[1] != os.getpid():
        requests: "queue.SimpleQueue[Any]" = queue.SimpleQueue()

        def keep() -> None:
            while True:
                job, done = requests.get()
                try:
                    done.put((True, job()))
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    done.put((False, e))

        threading.Thread(target=keep, name="shoal-forkserver-keeper", daemon=True).start()
        _keeper = (requests, os.getpid())
    done: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
    _keeper[0].put((start, done))
    ok, value = done.get()
    if not ok:
        raise value
    return value


def launch(fds: List[Tuple[int, int]], env: List[Tuple[str, str]], cwd: Optional[str]) -> int:
    """Asks the fork server for a worker (called by the process backend on
    a supervisor thread; see ``shoal_process::Launcher``); returns its pid."""
    environ = dict(os.environ)
    environ.update(env)
    data = pickle.dumps(([to for _, to in fds], environ, cwd or os.getcwd()))
    request = len(data).to_bytes(_LENGTH, "little") + data
    with _lock:
        sock = _connection()
        sent = socket.send_fds(sock, [request[:_LENGTH]], [fd for fd, _ in fds])
        sock.sendall(request[sent:])
        pid = int.from_bytes(_recv_exactly(sock, _LENGTH), "little", signed=True)
    if pid < 0:
        raise OSError(-pid, f"the fork server could not fork a worker: {os.strerror(-pid)}")
    return pid


def serve() -> None:
    """The server's loop (its stdin is its end of the socket pair)."""
    sock = socket.socket(fileno=os.dup(0))
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    parent = os.getppid()
    _shoal.die_with_parent(parent)
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
            data = _recv_exactly(sock, int.from_bytes(head, "little"))
        except (ConnectionError, OSError):
            return
        targets, environ, cwd = pickle.loads(data)
        try:
            pid = _shoal.fork_sibling()
        except OSError as e:
            pid = -(e.errno or 1)
        if pid == 0:
            _become_worker(sock, list(zip(fds, targets)), parent, environ, cwd)
        for fd in fds:
            os.close(fd)
        sock.sendall(pid.to_bytes(_LENGTH, "little", signed=True))


def _become_worker(sock: socket.socket, fds: List[Tuple[int, int]], parent: int, environ: dict, cwd: str) -> None:
    """The forked worker: never returns."""
    code = 70
    try:
        sock.detach()  # its fd is closed below; the object must not close it again
        _shoal.become_worker(fds, parent)
        os.environ.clear()
        os.environ.update(environ)
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
