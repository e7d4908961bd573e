//! Interpreter exit: shoal's threads stop touching Python first.
//!
//! A thread that asks for the interpreter lock while the interpreter
//! finalizes is ended by CPython with `pthread_exit`, which cannot unwind
//! through Rust frames: the process aborts ("FATAL: exception not
//! rethrown"). Two kinds of shoal threads take the lock on their own: a
//! batch's pump, which pulls a lazy input (a generator that sleeps between
//! items may still be pulled after its iterator was dropped), and a
//! threads-backend worker running a Python task (one that `terminate` or
//! `task_timeout` detached keeps running). So the pool module's exit
//! handler, after terminating the pools, calls [`quiesce`]: it raises
//! `SystemExit` in the threads that run a task and waits, lock released,
//! for those and the pumps to end (a bounded wait: a task blocked in C
//! cannot be stopped).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::ffi;
use pyo3::prelude::*;

struct Live {
    pumps: usize,
    /// The Python thread ids of the threads running a Python task (a
    /// thread appears once per task it runs).
    tasks: Vec<u64>,
}

static LIVE: Mutex<Live> = Mutex::new(Live { pumps: 0, tasks: Vec::new() });
static ENDED: Condvar = Condvar::new();

fn live() -> MutexGuard<'static, Live> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Held by a pump thread while it lives.
pub(crate) struct Pump(());

impl Pump {
    pub(crate) fn start() -> Self {
        live().pumps += 1;
        Pump(())
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        live().pumps -= 1;
        ENDED.notify_all();
    }
}

/// Held by a worker thread while it runs a Python task (taken with the
/// interpreter lock held).
pub(crate) struct Task(u64);

impl Task {
    pub(crate) fn start(_py: Python<'_>) -> Self {
        // SAFETY: no preconditions; the id `threading.get_ident` gives.
        let id = unsafe { ffi::PyThread_get_thread_ident() } as u64;
        live().tasks.push(id);
        Task(id)
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        let mut l = live();
        if let Some(at) = l.tasks.iter().position(|&t| t == self.0) {
            l.tasks.swap_remove(at);
        }
        drop(l);
        ENDED.notify_all();
    }
}

/// `_shoal.quiesce(timeout)`: raises `SystemExit` in the threads running a
/// Python task and waits up to `timeout` seconds for them and the pumps to
/// end; whether they did (see the module docs).
#[pyfunction]
pub(crate) fn quiesce(py: Python<'_>, timeout: f64) -> bool {
    let tasks = live().tasks.clone();
    for id in tasks {
        // SAFETY: the interpreter lock is held; an id that no longer runs
        // is ignored by CPython.
        unsafe { ffi::PyThreadState_SetAsyncExc(id as _, ffi::PyExc_SystemExit) };
    }
    let deadline = Instant::now() + Duration::from_secs_f64(timeout.max(0.0));
    py.detach(|| {
        let mut l = live();
        while l.pumps > 0 || !l.tasks.is_empty() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return false };
            l = ENDED.wait_timeout(l, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    })
}
