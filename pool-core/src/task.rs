//! The in-task API: what a running task can ask and tell.
//!
//! These functions work inside any task on any backend whose worker runs
//! Rust (threads; the worker side of process backends): the worker runtime
//! sets the current task before running it. Outside a task they do nothing
//! and return `None`.
//!
//! ```
//! use shoal_core::task;
//! fn work(n: u64) -> u64 {
//!     task::progress(0.5);
//!     task::log(format!("halfway through {n}"));
//!     n * 2
//! }
//! assert_eq!(work(2), 4); // outside a pool the calls are no-ops
//! ```

use std::cell::RefCell;
use std::sync::Arc;

use crate::backend::{TaskMessage, TaskSink, WorkerState};
use crate::ids::{TaskId, WorkerId};

struct Current {
    worker: WorkerId,
    task: Option<(TaskId, Arc<dyn TaskSink>)>,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
    static STATE: RefCell<Option<WorkerState>> = const { RefCell::new(None) };
}

/// The id of the worker running the current task (or running `worker_init`).
pub fn worker_id() -> Option<WorkerId> {
    CURRENT.with(|c| c.borrow().as_ref().map(|c| c.worker))
}

/// The id of the current task.
pub fn task_id() -> Option<TaskId> {
    CURRENT.with(|c| c.borrow().as_ref().and_then(|c| c.task.as_ref().map(|t| t.0)))
}

fn send(message: TaskMessage) {
    let sink =
        CURRENT.with(|c| c.borrow().as_ref().and_then(|c| c.task.as_ref().map(|t| t.1.clone())));
    if let Some(sink) = sink {
        sink.message(message);
    }
}

/// Reports how far the task is, as a fraction in `[0, 1]` (clamped).
pub fn progress(fraction: f32) {
    let f = if fraction.is_nan() { 0.0 } else { fraction.clamp(0.0, 1.0) };
    send(TaskMessage::Progress(f));
}

/// Sends a line of text to the task's message stream.
pub fn log(text: impl Into<String>) {
    send(TaskMessage::Log(text.into()));
}

/// Sends a user payload to the task's message stream.
pub fn data(payload: impl Into<Vec<u8>>) {
    send(TaskMessage::Data(payload.into()));
}

/// Runs `f` on this worker's state (made by `worker_init`), if there is one
/// of type `S`. Returns `None` outside a worker, without state, or when the
/// state has another type. Not re-entrant: `f` must not call `with_state`.
pub fn with_state<S: 'static, R>(f: impl FnOnce(&mut S) -> R) -> Option<R> {
    STATE.with(|s| {
        let mut s = s.try_borrow_mut().ok()?;
        let state = s.as_mut()?.downcast_mut::<S>()?;
        Some(f(state))
    })
}

/// Runs `f` as task `task` of `worker`, with `sink` receiving its messages,
/// then restores the previous context. For code that runs tasks with its
/// own copy of this crate (a shared library of task functions, a plugin):
/// each copy has its own thread-locals, so the copy that calls the task
/// function must set them.
#[doc(hidden)]
pub fn run_as<R>(
    worker: WorkerId,
    task: TaskId,
    sink: Arc<dyn TaskSink>,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore(Option<Current>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = prev);
        }
    }
    let prev =
        CURRENT.with(|c| c.borrow_mut().replace(Current { worker, task: Some((task, sink)) }));
    let _restore = Restore(prev);
    f()
}

/// Marks this thread as `worker` (for `worker_init` and between tasks).
pub(crate) fn enter_worker(worker: WorkerId) {
    CURRENT.with(|c| *c.borrow_mut() = Some(Current { worker, task: None }));
}

/// Leaves the worker role (after `take_state` and `worker_exit`).
pub(crate) fn leave_worker() {
    CURRENT.with(|c| *c.borrow_mut() = None);
}

/// Takes this worker's state out, for `worker_exit`.
pub(crate) fn take_state() -> Option<WorkerState> {
    STATE.with(|s| s.borrow_mut().take())
}

pub(crate) fn set_state(state: Option<WorkerState>) {
    STATE.with(|s| *s.borrow_mut() = state);
}

/// Sets (or clears) the current task of this worker thread.
pub(crate) fn set_task(task: Option<(TaskId, Arc<dyn TaskSink>)>) {
    CURRENT.with(|c| {
        if let Some(c) = c.borrow_mut().as_mut() {
            c.task = task;
        }
    });
}
