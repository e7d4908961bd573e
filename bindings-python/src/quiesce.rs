//! Stopping Python code that runs on shoal's own threads: a task past its
//! `task_timeout` on the threads backend, and everything at interpreter
//! exit.
//!
//! **Timeouts.** On the threads backend the core fails a task that ran
//! past its timeout and replaces its worker, but cannot stop the thread,
//! which would run on. Each chunk a worker thread runs registers itself
//! here ([`Task`]) with its deadline; a watchdog thread raises
//! `shoal.TaskTimeoutError` in the threads whose chunk is past it
//! (`PyThreadState_SetAsyncExc`, as mpire does for its threads), which
//! stops Python code at its next bytecode (not a call blocked in C). The
//! watchdog checks, holding the interpreter lock, that the chunk still
//! runs: a chunk's entry leaves only under that lock, so the exception
//! never lands in the next chunk.
//!
//! **Exit.** A thread that asks for the interpreter lock while the
//! interpreter finalizes is ended by CPython with `pthread_exit`, which
//! cannot unwind through Rust frames: the process aborts ("FATAL:
//! exception not rethrown"). Three kinds of shoal threads take the lock on
//! their own: a batch's pump, which pulls a lazy input (a generator that
//! sleeps between items may still be pulled after its iterator was
//! dropped), a threads-backend worker running a Python task (one that
//! `terminate` or `task_timeout` detached keeps running) and the watchdog.
//! So the pool module's exit handler, after terminating the pools, calls
//! [`quiesce`]: it stops the watchdog, raises `SystemExit` in the threads
//! that run a task and waits, lock released, for those and the pumps to
//! end (a bounded wait: a task blocked in C cannot be stopped).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::ffi;
use pyo3::prelude::*;

/// A chunk running on a worker thread.
struct Running {
    /// The thread's Python id (`threading.get_ident`).
    thread: u64,
    /// Tells this chunk from the thread's next one.
    token: u64,
    deadline: Option<Instant>,
}

struct Live {
    pumps: usize,
    tasks: Vec<Running>,
    next_token: u64,
    watchdog: bool,
    /// `quiesce` ran: the watchdog stops and none starts.
    exiting: bool,
}

static LIVE: Mutex<Live> = Mutex::new(Live {
    pumps: 0,
    tasks: Vec::new(),
    next_token: 0,
    watchdog: false,
    exiting: false,
});
/// Notified when a pump or task ends, and when a task with a deadline starts.
static CHANGED: Condvar = Condvar::new();

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
        CHANGED.notify_all();
    }
}

/// Held by a worker thread while it runs a chunk of Python calls, with the
/// interpreter lock held from start to drop.
pub(crate) struct Task(u64);

impl Task {
    /// `limit`: the chunk's timeout, if it has one.
    pub(crate) fn start(_py: Python<'_>, limit: Option<Duration>) -> Self {
        // SAFETY: no preconditions; the id `threading.get_ident` gives.
        let thread = unsafe { ffi::PyThread_get_thread_ident() } as u64;
        let deadline = limit.and_then(|l| Instant::now().checked_add(l));
        let mut l = live();
        let token = l.next_token;
        l.next_token += 1;
        l.tasks.push(Running { thread, token, deadline });
        if deadline.is_some() && !l.exiting {
            if !l.watchdog {
                l.watchdog = std::thread::Builder::new()
                    .name("shoal-timeouts".into())
                    .spawn(watchdog)
                    .is_ok();
            }
            CHANGED.notify_all();
        }
        Task(token)
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        let mut l = live();
        if let Some(at) = l.tasks.iter().position(|t| t.token == self.0) {
            l.tasks.swap_remove(at);
        }
        drop(l);
        CHANGED.notify_all();
    }
}

/// Raises `TaskTimeoutError` in the threads whose chunk is past its
/// deadline, until `quiesce` (see the module docs).
fn watchdog() {
    let mut raised: Vec<u64> = Vec::new();
    loop {
        let expired: Vec<u64> = {
            let mut l = live();
            loop {
                if l.exiting {
                    l.watchdog = false;
                    CHANGED.notify_all();
                    return;
                }
                let now = Instant::now();
                raised.retain(|token| l.tasks.iter().any(|t| t.token == *token));
                let due: Vec<u64> = l
                    .tasks
                    .iter()
                    .filter(|t| t.deadline.is_some_and(|d| d <= now) && !raised.contains(&t.token))
                    .map(|t| t.token)
                    .collect();
                if !due.is_empty() {
                    break due;
                }
                let next = l.tasks.iter().filter_map(|t| t.deadline).filter(|d| *d > now).min();
                l = match next {
                    Some(d) => {
                        CHANGED.wait_timeout(l, d - now).unwrap_or_else(|p| p.into_inner()).0
                    }
                    None => CHANGED.wait(l).unwrap_or_else(|p| p.into_inner()),
                };
            }
        };
        let attached = Python::try_attach(|py| {
            let Ok(error) = py.import("shoal._errors").and_then(|m| m.getattr("TaskTimeoutError"))
            else {
                return;
            };
            let l = live();
            if l.exiting {
                return;
            }
            for t in l.tasks.iter().filter(|t| expired.contains(&t.token)) {
                // SAFETY: the interpreter lock is held; a thread id that no
                // longer runs is ignored by CPython.
                unsafe { ffi::PyThreadState_SetAsyncExc(t.thread as _, error.as_ptr()) };
            }
        });
        if attached.is_none() {
            // The interpreter is finalizing: never ask for the lock again.
            live().watchdog = false;
            CHANGED.notify_all();
            return;
        }
        raised.extend(expired);
    }
}

/// `_shoal.quiesce(timeout)`: stops the watchdog, raises `SystemExit` in
/// the threads running a Python task and waits up to `timeout` seconds for
/// them and the pumps to end; whether they did (see the module docs).
#[pyfunction]
pub(crate) fn quiesce(py: Python<'_>, timeout: f64) -> bool {
    let threads: Vec<u64> = {
        let mut l = live();
        l.exiting = true;
        l.tasks.iter().map(|t| t.thread).collect()
    };
    CHANGED.notify_all();
    for thread in threads {
        // SAFETY: the interpreter lock is held; an id that no longer runs
        // is ignored by CPython.
        unsafe { ffi::PyThreadState_SetAsyncExc(thread as _, ffi::PyExc_SystemExit) };
    }
    let deadline = Instant::now() + Duration::from_secs_f64(timeout.max(0.0));
    py.detach(|| {
        let mut l = live();
        while l.pumps > 0 || !l.tasks.is_empty() || l.watchdog {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return false };
            l = CHANGED.wait_timeout(l, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    })
}
