"""Type stubs of the Rust extension module ``shoal._shoal`` (checked against
the built module by ``mypy.stubtest`` in ``cargo xtask test``)."""

from typing import Any, Iterator, List, Optional, Sequence, Tuple, final

__all__ = [
    "Batch",
    "Core",
    "ForkedServer",
    "ITEM_MESSAGES",
    "Pending",
    "Stream",
    "WORKER_FUNCTION",
    "become_worker",
    "die_with_parent",
    "fork_sibling",
    "forkserver_preload",
    "log",
    "pack",
    "progress",
    "quiesce",
    "running_item",
    "unpack",
    "worker_id",
    "worker_main",
]

WORKER_FUNCTION: str
ITEM_MESSAGES: int

def progress(fraction: float) -> None: ...
def log(text: str) -> None: ...
def worker_id() -> Optional[int]: ...
def running_item(offset: Optional[int], /) -> None: ...
def pack(list: List[Any]) -> Optional[bytes]: ...
def unpack(data: bytes) -> List[Any]: ...
def worker_main(init: Optional[Any] = None, exit: Optional[Any] = None) -> None: ...
def fork_sibling() -> int: ...
def become_worker(fds: Sequence[Tuple[int, int]], parent: int) -> None: ...
def die_with_parent(parent: int) -> None: ...
def forkserver_preload(module: str, path: List[str]) -> None: ...
def quiesce(timeout: float) -> bool: ...
@final
class Pending:
    def cancel(self) -> bool: ...
    @property
    def started(self) -> bool: ...

@final
class ForkedServer:
    def __new__(cls, fd: int, pid: int) -> ForkedServer: ...

@final
class Core:
    def __new__(
        cls,
        backend: str,
        workers: int,
        *,
        min_workers: Optional[int] = None,
        lifespan: Optional[int] = None,
        task_timeout: Optional[float] = None,
        idle_timeout: Optional[float] = None,
        command: Optional[Sequence[str]] = None,
        env: Optional[Sequence[Tuple[str, str]]] = None,
        cwd: Optional[str] = None,
        forkserver: Optional[str] = None,
        fork_server: Optional[ForkedServer] = None,
        worker_init: Optional[Any] = None,
        worker_exit: Optional[Any] = None,
    ) -> Core: ...
    @property
    def backend(self) -> str: ...
    @property
    def max_workers(self) -> int: ...
    def live_workers(self) -> int: ...
    def batch(
        self,
        func: Any,
        function: Optional[bytes],
        mode: int,
        items: Any,
        *,
        ordered: bool = True,
        chunksize: Optional[int] = None,
        max_in_flight: Optional[int] = None,
        task_timeout: Optional[float] = None,
        progress_bar: bool = False,
        values: bool = False,
        key: Optional[str] = None,
        messages: bool = False,
    ) -> Batch: ...
    def map(
        self,
        func: Any,
        function: Optional[bytes],
        mode: int,
        items: Any,
        *,
        chunksize: Optional[int] = None,
        task_timeout: Optional[float] = None,
        progress_bar: bool = False,
        key: Optional[str] = None,
    ) -> Tuple[list[Any], Optional[int]]: ...
    def open(self, *, task_timeout: Optional[float] = None, messages: bool = False) -> Tuple[Stream, Batch]: ...
    def close(self) -> None: ...
    def join(self) -> None: ...
    def terminate(self) -> None: ...
    def suspend(self) -> None: ...
    def resume(self) -> None: ...
    def insights(self) -> str: ...
@final
class Batch:
    def __iter__(self) -> Batch: ...
    def __next__(self) -> Any: ...
    def next(self, timeout: Optional[float] = None) -> Any: ...
    def finish(self) -> None: ...
    @property
    def finished(self) -> bool: ...
    def cancel(self) -> None: ...
@final
class Stream:
    def send(self, item: Any) -> Tuple[int, Pending]: ...
    def close(self) -> None: ...
