//! The Rust half of the `forkserver` start method (the protocol and the
//! server are in `shoal/_forkserver.py`).
//!
//! A pool's workers must be children of the pool's process: the process
//! backend waits for them, reads their exit status and signals them by pid
//! (`shoal_process::Launcher`). The fork server is a single-threaded
//! interpreter that imported shoal once; it makes each worker with
//! `clone(CLONE_PARENT)`, a fork whose parent is the server's parent, the
//! pool's process. Forking there is safe where forking the pool's own
//! process is not: no other thread can hold a lock at that moment.
//!
//! - [`PyLauncher`]: the pool's side; the process backend calls it on a
//!   supervisor thread, it calls `shoal._forkserver.launch`.
//! - [`fork_sibling`]: the server's fork, with CPython's before/after-fork
//!   hooks around it as `os.fork` has them.
//! - [`become_worker`]: the new worker puts its connection and segments at
//!   their fd numbers, closes the server's fds, dies with the pool's
//!   process and applies the workers' malloc settings.

use std::io;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use shoal_process::{Launch, Launcher};

use crate::chunk::Obj;

/// glibc keeps freed memory up to this size instead of returning it to the
/// kernel after every task (DESIGN.md: numpy temporaries in workers); a
/// spawned worker gets the same through `MALLOC_*_` variables, which glibc
/// reads only when a program starts.
const MALLOC_THRESHOLD: libc::c_int = 128 << 20;

/// Starts a worker by calling a Python function with the [`Launch`]'s fds,
/// environment and working directory; the function returns the pid.
pub(crate) struct PyLauncher {
    pub(crate) launch: Obj,
}

impl Launcher for PyLauncher {
    fn launch(&self, launch: &Launch) -> io::Result<u32> {
        let env: Vec<(String, String)> = launch
            .env
            .iter()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
            .collect();
        let cwd = launch.current_dir.as_ref().map(|d| d.to_string_lossy().into_owned());
        Python::attach(|py| {
            self.launch
                .call1(py, (launch.fds.clone(), env, cwd))
                .and_then(|pid| pid.extract::<u32>(py))
                .map_err(|e| io::Error::other(crate::errors::describe(py, &e)))
        })
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
/// SIGKILL when `parent` dies (and exits if it already has) and applies the
/// workers' malloc settings (see [`die_with_parent`]).
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
        libc::mallopt(libc::M_TRIM_THRESHOLD, MALLOC_THRESHOLD);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOC_THRESHOLD);
    }
    Ok(())
}
