//! Waiting so that Ctrl-C still works: a wait for the core runs without
//! the interpreter lock in slices of [`SIGNAL_CHECK`], and between slices
//! Python's signal handlers run (`KeyboardInterrupt` is raised in the
//! caller, as `multiprocessing` does; the tasks already handed out finish).

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use pyo3::prelude::*;

/// How often a waiting caller lets Python handle signals.
pub(crate) const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// Receives from `rx` until `deadline`, without the lock, handling signals.
pub(crate) fn recv<T: Send>(
    py: Python<'_>,
    rx: &Receiver<T>,
    deadline: Option<Instant>,
) -> PyResult<Result<T, RecvTimeoutError>> {
    loop {
        let slice = match deadline {
            None => SIGNAL_CHECK,
            Some(d) => d.saturating_duration_since(Instant::now()).min(SIGNAL_CHECK),
        };
        match py.detach(|| rx.recv_timeout(slice)) {
            Err(RecvTimeoutError::Timeout) => {
                py.check_signals()?;
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(Err(RecvTimeoutError::Timeout));
                }
            }
            other => return Ok(other),
        }
    }
}

/// Runs `f` on a thread of its own and waits for it as [`recv`] does. On
/// an exception (Ctrl-C) the caller returns at once and `f` finishes on
/// its own; its result is dropped.
pub(crate) fn run<T: Send + 'static>(
    py: Python<'_>,
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> PyResult<T> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| {
            pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start a thread: {e}"))
        })?;
    match recv(py, &rx, None)? {
        Ok(v) => Ok(v),
        Err(_) => Err(pyo3::exceptions::PyRuntimeError::new_err(
            "a shoal thread ended without its result",
        )),
    }
}
