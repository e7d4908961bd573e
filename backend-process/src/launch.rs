//! Starting workers without `exec`: a [`Launcher`] replaces the default
//! fork + exec of the worker program.
//!
//! A binding whose workers are its own interpreter can then fork a warm
//! one instead of starting a new program (the Python binding's `fork`
//! start method: about 2 ms instead of 30 ms for an interpreter and its
//! imports). The launched process must be a child of this process (the
//! supervisor waits for it and signals it by pid), and must run
//! [`crate::worker_main`] (or `worker_main_with`) with the [`Launch`]'s
//! fds at their numbers and its environment. Output capture and
//! `configure` apply to commands only; a launcher is responsible for its
//! child's parent-death signal.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};

use shoal_core::WorkerId;

/// What a launched worker needs.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The worker's id.
    pub worker: WorkerId,
    /// `(fd here, fd number in the worker)`: the connection (fd 3) and,
    /// when there are any, the two shared-memory segments.
    pub fds: Vec<(RawFd, RawFd)>,
    /// Variables to set in the worker's environment (the pool's `env` and
    /// the worker protocol's own: fd, id, thresholds).
    pub env: Vec<(OsString, OsString)>,
    /// The working directory to change to, if one was set.
    pub current_dir: Option<PathBuf>,
}

/// Starts one worker process; see the module docs.
pub trait Launcher: Send + Sync {
    /// Starts the worker and returns its pid.
    fn launch(&self, launch: &Launch) -> std::io::Result<u32>;
}

/// A worker process, started by a command or by a [`Launcher`].
pub(crate) enum Proc {
    Command(Child),
    Launched(u32),
}

impl Proc {
    pub(crate) fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        match self {
            Proc::Command(c) => c.try_wait(),
            Proc::Launched(pid) => waitpid(*pid, libc::WNOHANG),
        }
    }

    pub(crate) fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match self {
            Proc::Command(c) => c.wait(),
            Proc::Launched(pid) => {
                waitpid(*pid, 0)?.ok_or_else(|| std::io::Error::other("waitpid returned no status"))
            }
        }
    }

    pub(crate) fn id(&self) -> u32 {
        match self {
            Proc::Command(c) => c.id(),
            Proc::Launched(pid) => *pid,
        }
    }

    pub(crate) fn kill(&mut self) -> std::io::Result<()> {
        match self {
            Proc::Command(c) => c.kill(),
            // SAFETY: kill(2) on our own child, not reaped yet (the reaper
            // is the only caller and reaps after this).
            Proc::Launched(pid) => {
                match unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) } {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            }
        }
    }
}

/// waitpid(2) for child `pid`; `None` while it runs (with `WNOHANG`).
fn waitpid(pid: u32, flags: libc::c_int) -> std::io::Result<Option<ExitStatus>> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, flags) };
        match r {
            0 => return Ok(None),
            -1 => {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            _ => return Ok(Some(ExitStatus::from_raw(status))),
        }
    }
}
