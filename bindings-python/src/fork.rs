//! The `fork` start method: a worker process is a fork of this
//! interpreter, which already imported everything (about 2 ms instead of
//! 30 ms for a new interpreter and its imports; shared objects are copied
//! on write instead of loaded from a file).
//!
//! The process backend calls [`ForkLauncher::launch`] on its own thread;
//! it takes the interpreter lock and calls `os.fork()` (Python runs its
//! at-fork handlers and makes this thread the child's main thread). The
//! child moves the connection and segment fds to their numbers, closes
//! every other fd above them, arms its parent-death signal, sets the
//! worker protocol's environment, applies the pool's malloc settings
//! (glibc reads `MALLOC_*_` only at process start) and calls `main` (the
//! Rust worker loop); it never returns to the caller's code.
//!
//! Forking a threaded process is only as safe as the locks other threads
//! held at that moment: Python's own are reset by its at-fork handlers,
//! the child touches no Rust state of the parent's pool, but user code in
//! the child may meet a lock another thread of the parent held (as with
//! `multiprocessing`'s fork). Hence `spawn` stays the default.

use std::io;

use pyo3::prelude::*;
use shoal_process::{Launch, Launcher};

use crate::chunk::Obj;

/// glibc keeps freed memory up to this size instead of returning it to the
/// kernel after every task (DESIGN.md: numpy temporaries in workers).
const MALLOC_THRESHOLD: libc::c_int = 128 << 20;

/// Forks this interpreter for each worker; see the module docs.
pub(crate) struct ForkLauncher {
    /// Called in the child: runs the worker and exits.
    pub(crate) main: Obj,
}

impl Launcher for ForkLauncher {
    fn launch(&self, launch: &Launch) -> io::Result<u32> {
        let parent = std::process::id() as libc::pid_t;
        Python::attach(|py| -> PyResult<u32> {
            let os = py.import("os")?;
            let pid: i32 = os.getattr("fork")?.call0()?.extract()?;
            if pid != 0 {
                return Ok(pid as u32);
            }
            child(py, launch, parent, &self.main);
        })
        .map_err(|e| io::Error::other(e.to_string()))
    }
}

/// The forked child: becomes the worker, never returns.
fn child(py: Python<'_>, launch: &Launch, parent: libc::pid_t, main: &Obj) -> ! {
    // SAFETY: this process has one thread now; the fds are ours.
    unsafe {
        let mut moved = Vec::with_capacity(launch.fds.len());
        for &(from, _) in &launch.fds {
            moved.push(libc::fcntl(from, libc::F_DUPFD_CLOEXEC, 64));
        }
        let mut highest = 2;
        for (&(_, to), &from) in launch.fds.iter().zip(&moved) {
            if from < 0 || libc::dup2(from, to) < 0 {
                libc::_exit(71);
            }
            highest = highest.max(to);
        }
        // The parent's other connections must not stay open in here.
        libc::syscall(libc::SYS_close_range, highest + 1, libc::c_uint::MAX, 0);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
        if libc::getppid() != parent {
            libc::_exit(1);
        }
        libc::mallopt(libc::M_TRIM_THRESHOLD, MALLOC_THRESHOLD);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOC_THRESHOLD);
    }
    let run = || -> PyResult<()> {
        let os = py.import("os")?;
        let environ = os.getattr("environ")?;
        for (k, v) in &launch.env {
            environ.set_item(k.to_string_lossy(), v.to_string_lossy())?;
        }
        if let Some(dir) = &launch.current_dir {
            os.getattr("chdir")?.call1((dir.to_string_lossy(),))?;
        }
        main.call0(py)?;
        Ok(())
    };
    if let Err(e) = run() {
        e.print(py);
    }
    // SAFETY: leaving the child without running the parent's exit handlers.
    unsafe { libc::_exit(70) }
}
