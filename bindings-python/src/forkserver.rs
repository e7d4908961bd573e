//! The `forkserver` and `fork` start methods: worker processes forked
//! from a server.
//!
//! Starting a new interpreter for every worker (`spawn`) costs tens of
//! milliseconds; forking the pool's own process is fast but not safe, as a
//! pool runs threads (a lock one of them held at the fork stays locked in
//! the child). The fork server is a single-threaded interpreter, one per
//! pool process, started with the first pool that needs it, which imported
//! shoal once (`shoal._forkserver.serve`) and forks each worker in about a
//! millisecond. With `fork`, the server is instead a copy of the pool's
//! process, forked once as the pool is made, before the pool's threads
//! exist and only while no other thread runs Python code or a pool
//! ([`ForkedServer`]): its workers start as copies of the pool's process
//! as it was then, as `multiprocessing`'s `fork` workers do.
//!
//! A pool's workers must be children of the pool's process: the process
//! backend waits for them, reads their exit status and signals them by pid
//! (`shoal_process::Launcher`). The server therefore forks with
//! `clone(CLONE_PARENT)` ([`fork_sibling`]): the worker's parent is the
//! server's parent, the pool's process.
//!
//! # Protocol
//! A Unix stream socket pair; the server's end is its stdin.
//! - Request (pool to server): an 8-byte little-endian length `n`, sent
//!   with the worker's fds attached (SCM_RIGHTS), then `n` bytes: a 4-byte
//!   little-endian count `k`, `k` 4-byte little-endian fd numbers (where
//!   the worker gets the attached fds, in order: the connection and the
//!   shared-memory segments), the working directory, then the worker's
//!   whole environment as `KEY=VALUE` entries, each of these strings
//!   NUL-terminated.
//! - Reply (server to pool): the worker's pid as a signed 8-byte
//!   little-endian integer, or a negative errno if the fork failed.
//! - Import request: the same length, no fds, then `n` bytes: the count
//!   [`IMPORT`] (`0xFFFF_FFFF`), a module's name and the pool process's
//!   `sys.path` entries, each NUL-terminated. The server imports the module
//!   with that path. Reply: 0 (imported), 1 (the import raised: the server
//!   goes on without it) or -1: the import left the server with more than
//!   one thread, so forking it is no longer safe; it exits after the
//!   reply, the pool starts a new server and asks for no more imports.
//!
//! # Imports ahead of the workers
//! A worker imports the module of each task function it unpickles; a
//! fresh worker pays for that on its first task (py-W4, a pool started
//! for one task: ~2 ms of a ~7 ms cycle to compile `work.py` when no
//! bytecode cache is written). `multiprocessing`'s fork server imports the
//! main module in the server for the same reason. Here the pool names the
//! module of each function it sends to workers ([`forkserver_preload`];
//! only modules the pool's process imported itself, see
//! `shoal._forkserver.preload_for`), and the server imports it before its
//! next fork, so later workers start with it. A module whose import
//! starts a thread (a fork of a threaded process can inherit a held
//! lock) ends that: see the import reply above.
//!
//! The pool's side ([`ForkServer`]) is Rust, so that starting a worker
//! never waits for the interpreter lock (a supervisor thread would wait
//! for it behind the caller's Python code). The environment sent is this
//! process's at the request (Python's `os.environ` writes go through
//! `putenv`) plus the pool's own variables.
//!
//! Lifetimes: the server exits when the pool's process closes its end or
//! dies (its parent-death signal); a worker dies with the pool's process.
//! Linux sends the parent-death signal when the parent *thread* exits, so
//! the server is started from a thread that lives as long as the process
//! ([`on_keeper`]), never from a pool's supervisor thread.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use shoal_process::{Launch, Launcher};

/// The pool's side: starts workers through this process's fork server
/// (started on first use with `python`).
pub(crate) struct ForkServer {
    pub(crate) python: PathBuf,
}

/// This process's server: the child, our end, and the pid that started it
/// (a forked copy of this process must start its own).
struct Server {
    child: Child,
    sock: UnixStream,
    owner: u32,
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

/// The count that marks an import request (see the module docs).
const IMPORT: u32 = u32::MAX;

/// Import requests for the server's next fork, and whether imports are
/// off for good (one left a server with threads, or broke it).
static PRELOAD: Mutex<(Vec<Vec<u8>>, bool)> = Mutex::new((Vec::new(), false));

type Spawn = Box<dyn FnOnce() -> io::Result<Child> + Send>;
/// A spawn for the keeper thread, and where its outcome goes.
type Job = (Spawn, mpsc::Sender<io::Result<Child>>);

/// A thread that lives as long as the process and starts the servers (see
/// the module docs), with the pid it belongs to: a forked copy of this
/// process has the channel but not the thread, and makes its own.
static KEEPER: Mutex<Option<(u32, mpsc::Sender<Job>)>> = Mutex::new(None);

/// Runs `spawn` on the keeper thread, starting it if needed.
fn on_keeper(spawn: Spawn) -> io::Result<Child> {
    let gone = || io::Error::other("the fork server's thread is gone");
    let (done_tx, done_rx) = mpsc::channel();
    {
        let mut keeper = KEEPER.lock().unwrap_or_else(|e| e.into_inner());
        let pid = std::process::id();
        if keeper.as_ref().is_none_or(|(owner, _)| *owner != pid) {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new().name("shoal-forkserver".into()).spawn(move || {
                for (spawn, done) in rx {
                    let _ = done.send(spawn());
                }
            })?;
            *keeper = Some((pid, tx));
        }
        let (_, tx) = keeper.as_ref().expect("set above");
        tx.send((spawn, done_tx)).map_err(|_| gone())?;
    }
    done_rx.recv().map_err(|_| gone())?
}

impl ForkServer {
    fn start(&self) -> io::Result<Server> {
        let (ours, theirs) = UnixStream::pair()?;
        let python = self.python.clone();
        let spawn: Spawn = Box::new(move || {
            Command::new(python)
                .args(["-c", "from shoal._forkserver import serve; serve()"])
                .stdin(Stdio::from(OwnedFd::from(theirs)))
                .spawn()
        });
        let child = on_keeper(spawn)?;
        Ok(Server { child, sock: ours, owner: std::process::id() })
    }
}

/// The request's bytes after its length (see the module docs).
fn request(launch: &Launch) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(&(launch.fds.len() as u32).to_le_bytes());
    for &(_, to) in &launch.fds {
        out.extend_from_slice(&to.to_le_bytes());
    }
    let cwd = match &launch.current_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?,
    };
    let mut push = |s: &[u8]| -> io::Result<()> {
        if s.contains(&0) {
            return Err(io::Error::other("a NUL byte in the environment or directory"));
        }
        out.extend_from_slice(s);
        out.push(0);
        Ok(())
    };
    push(cwd.as_os_str().as_bytes())?;
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    env.extend(launch.env.iter().cloned());
    for (k, v) in env {
        let mut entry = k.into_vec();
        entry.push(b'=');
        entry.extend_from_slice(v.as_bytes());
        push(&entry)?;
    }
    Ok(out)
}

/// Sends `bytes` with `fds` attached to its first byte.
fn send_with_fds(sock: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let data = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is arithmetic.
    let space = unsafe { libc::CMSG_SPACE(data as u32) } as usize;
    // u64s: the control buffer must be aligned for a cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov =
        libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the
    // sendmsg call, and the cmsg lies inside `control` (CMSG_SPACE).
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(data as u32) as _;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr(),
            libc::CMSG_DATA(cmsg).cast::<RawFd>(),
            fds.len(),
        );
        libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    (&*sock).write_all(&bytes[sent as usize..])
}

/// Stops and reaps a server of this process; one inherited from the
/// process this one was forked from is only let go (it is not our child).
fn retire(mut server: Server) {
    if server.owner == std::process::id() {
        let _ = server.child.kill();
        let _ = server.child.wait();
    }
}

/// One request and its reply over a server's socket.
fn ask(sock: &UnixStream, launch: &Launch, body: &[u8]) -> io::Result<i64> {
    let fds: Vec<RawFd> = launch.fds.iter().map(|&(fd, _)| fd).collect();
    send_with_fds(sock, &(body.len() as u64).to_le_bytes(), &fds)?;
    (&*sock).write_all(body)?;
    let mut reply = [0u8; 8];
    (&*sock).read_exact(&mut reply)?;
    Ok(i64::from_le_bytes(reply))
}

/// The worker's pid from a fork request's reply.
fn worker_pid(reply: i64) -> io::Result<u32> {
    if reply < 0 {
        let e = io::Error::from_raw_os_error((-reply) as i32);
        return Err(io::Error::other(format!("the fork server could not fork a worker: {e}")));
    }
    Ok(reply as u32)
}

/// Sends the pending import requests to `server`; false if it is no
/// longer usable (it must be replaced), which also ends imports.
fn preload(server: &Server) -> bool {
    let pending = {
        let mut p = PRELOAD.lock().unwrap_or_else(|e| e.into_inner());
        if p.1 {
            p.0.clear();
        }
        std::mem::take(&mut p.0)
    };
    for body in pending {
        let sock = &server.sock;
        let reply = (|| -> io::Result<i64> {
            (&*sock).write_all(&(body.len() as u64).to_le_bytes())?;
            (&*sock).write_all(&body)?;
            let mut reply = [0u8; 8];
            (&*sock).read_exact(&mut reply)?;
            Ok(i64::from_le_bytes(reply))
        })();
        if !matches!(reply, Ok(0 | 1)) {
            let mut p = PRELOAD.lock().unwrap_or_else(|e| e.into_inner());
            *p = (Vec::new(), true);
            return false;
        }
    }
    true
}

/// `_shoal.forkserver_preload(module, path)`: asks this process's fork
/// server to import `module` (with `path` as `sys.path`) before its next
/// fork (see the module docs).
#[pyfunction]
pub(crate) fn forkserver_preload(module: &str, path: Vec<String>) -> PyResult<()> {
    let mut body = IMPORT.to_le_bytes().to_vec();
    for s in std::iter::once(module).chain(path.iter().map(String::as_str)) {
        if s.contains('\0') {
            return Ok(()); // not a path the server could use: the worker imports it
        }
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    let mut p = PRELOAD.lock().unwrap_or_else(|e| e.into_inner());
    if !p.1 {
        p.0.push(body);
    }
    Ok(())
}

impl Launcher for ForkServer {
    fn launch(&self, launch: &Launch) -> io::Result<u32> {
        let body = request(launch)?;
        let mut server = SERVER.lock().unwrap_or_else(|e| e.into_inner());
        // A server that died (or belongs to the process this one was
        // forked from) is replaced once; a second failure is the worker's.
        let mut fresh = false;
        let reply = loop {
            let usable = server.as_mut().is_some_and(|s| {
                s.owner == std::process::id() && matches!(s.child.try_wait(), Ok(None))
            });
            if !usable {
                if let Some(old) = server.take() {
                    retire(old);
                }
                *server = Some(self.start()?);
                fresh = true;
            }
            if !preload(server.as_ref().expect("started above")) {
                retire(server.take().expect("started above"));
                continue; // imports are off now: the next server forks at once
            }
            match ask(&server.as_ref().expect("started above").sock, launch, &body) {
                Ok(reply) => break reply,
                Err(e) if fresh => return Err(e),
                Err(_) => retire(server.take().expect("asked above")),
            }
        };
        worker_pid(reply)
    }
}

/// The `fork` start method's server: a copy of the pool's process, forked
/// as the pool was made (`shoal._forkserver.fork_server`), that serves
/// that pool alone and is never replaced (a later copy of the pool's
/// process, which then runs the pool's threads, would not be safe). It
/// speaks the protocol above without import requests: its workers start
/// with every module the pool's process had.
#[pyclass(module = "shoal._shoal", frozen)]
pub(crate) struct ForkedServer(Arc<Forked>);

pub(crate) struct Forked {
    sock: Mutex<UnixStream>,
    pid: libc::pid_t,
}

#[pymethods]
impl ForkedServer {
    /// Takes `fd` (the pool's end of the server's socket) and the server,
    /// child `pid` of this process: stopped and reaped once no pool uses
    /// it.
    #[new]
    fn new(fd: RawFd, pid: i32) -> PyResult<Self> {
        if fd < 0 || pid <= 0 {
            return Err(PyValueError::new_err(format!(
                "a forked server needs its fd and pid (got {fd}, {pid})"
            )));
        }
        // SAFETY: the caller hands over its only handle of `fd` (a
        // detached socket), and `pid` is its child.
        let sock = unsafe { UnixStream::from(OwnedFd::from_raw_fd(fd)) };
        Ok(ForkedServer(Arc::new(Forked { sock: Mutex::new(sock), pid })))
    }
}

impl ForkedServer {
    pub(crate) fn launcher(&self) -> Arc<Forked> {
        self.0.clone()
    }
}

impl Launcher for Forked {
    fn launch(&self, launch: &Launch) -> io::Result<u32> {
        let body = request(launch)?;
        let sock = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        let reply = ask(&sock, launch, &body).map_err(|e| {
            io::Error::other(format!(
                "the fork start method's server (pid {}) is gone, so no worker can start: {e}",
                self.pid
            ))
        })?;
        worker_pid(reply)
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        // SAFETY: signals and reaps our own child; it holds nothing of ours.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// Forks this (single-threaded) interpreter into a sibling: a child of
/// this process's parent. Returns the child's pid here and 0 in the child.
#[pyfunction]
pub(crate) fn fork_sibling() -> PyResult<i32> {
    // SAFETY: CPython's documented fork protocol around a fork of the
    // calling thread (the interpreter lock is held: we are called from
    // Python). With a null stack the child continues on a copy of this
    // one, as after fork(2).
    let pid = unsafe {
        pyo3::ffi::PyOS_BeforeFork();
        let pid = libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        );
        if pid == 0 {
            pyo3::ffi::PyOS_AfterFork_Child();
        } else {
            pyo3::ffi::PyOS_AfterFork_Parent();
        }
        pid
    };
    if pid < 0 {
        return Err(PyOSError::new_err(format!("clone: {}", io::Error::last_os_error())));
    }
    Ok(pid as i32)
}

/// Asks for SIGKILL when `parent` dies; exits at once if it already has
/// (this process was then adopted by another).
#[pyfunction]
pub(crate) fn die_with_parent(parent: i32) {
    // SAFETY: prctl and getppid have no memory effects; _exit never returns.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
        if libc::getppid() != parent {
            libc::_exit(1);
        }
    }
}

/// Turns a freshly forked sibling into a worker of `parent`: moves each
/// `(fd, number)` to its number, closes every fd above them, asks for
/// SIGKILL when `parent` dies (and exits if it already has; see
/// [`die_with_parent`]).
#[pyfunction]
pub(crate) fn become_worker(fds: Vec<(i32, i32)>, parent: i32) -> PyResult<()> {
    let last = || PyOSError::new_err(io::Error::last_os_error().to_string());
    // SAFETY: plain syscalls on fds this process owns; nothing else runs
    // in it yet.
    unsafe {
        // First out of the way of every target number, then into place.
        let mut moved = Vec::with_capacity(fds.len());
        for &(from, _) in &fds {
            let fd = libc::fcntl(from, libc::F_DUPFD_CLOEXEC, 64);
            if fd < 0 {
                return Err(last());
            }
            moved.push(fd);
        }
        let mut highest = 2;
        for (&(_, to), &from) in fds.iter().zip(&moved) {
            if libc::dup2(from, to) < 0 {
                return Err(last());
            }
            highest = highest.max(to);
        }
        // The server's connection to the pool and every other fd it had
        // must not stay open in a worker.
        libc::syscall(libc::SYS_close_range, highest + 1, libc::c_uint::MAX, 0);
        die_with_parent(parent);
        // The worker loop it runs next keeps freed memory
        // (`shoal_process::keep_freed_memory`), as every worker's does.
    }
    Ok(())
}
