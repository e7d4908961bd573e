//! The seam between the pool and the things that run tasks.
//!
//! A [`Backend`] makes [`Worker`]s; a worker runs one [`Job`] at a time and
//! reports through a [`ReportSink`]; a running task streams its messages and,
//! for remote workers, its serialized result through the job's [`TaskSink`].
//! Both traits are object-safe and synchronous: a backend never blocks the
//! caller (`send`, `stop` and `kill` only hand work over).
//!
//! # How each kind of backend maps onto these traits
//!
//! * **In-process threads** (`backend-threads`). `start_worker` spawns an OS
//!   thread that runs [`WorkerRuntime`](crate::worker::WorkerRuntime):
//!   `worker_init`, then jobs from a channel, then `worker_exit`. Jobs carry
//!   [`Work::Local`] closures that write their typed result straight into the
//!   caller's handle, so a result never goes through the dispatcher. `kill`
//!   cannot stop a thread safely: the thread is *detached* (it exits when its
//!   task returns) and reported as exited with [`ExitCause::Detached`] at
//!   once, so the scheduler replaces it.
//! * **Child processes** (`backend-process`). `start_worker` spawns a process
//!   and a reader thread for its pipe. Jobs carry [`Work::Named`]: a function
//!   name plus the argument as bytes; the reader turns frames into
//!   [`TaskSink::message`], [`TaskSink::result_bytes`] and
//!   [`WorkerReport`]s. `kill` sends SIGTERM, then SIGKILL after a grace
//!   period; the reaper reports [`ExitCause::Code`] or [`ExitCause::Signal`].
//! * **Web Workers** (`backend-webworker`, wasm32). There is no thread to
//!   block: `start_worker` creates a `Worker` and `send` calls `postMessage`.
//!   The worker's `onmessage` callback calls the same sinks, and the
//!   JavaScript driver feeds the scheduler from those callbacks and timers.
//!   `kill` is `Worker.terminate()`, reported as [`ExitCause::Killed`].
//!
//! Plugins wrap these traits in an FFI-stable form (`crate::plugin`, native
//! only).

use std::any::Any;
use std::sync::Arc;

use crate::error::{ExitCause, TaskError};
use crate::ids::{TaskId, WorkerId};

/// A closure run in the worker's own address space. It delivers its result
/// itself (it captured where to put it); a panic is caught by the worker
/// runtime and reported as [`TaskError`] `Panic`.
pub type LocalWork = Box<dyn FnOnce() + Send>;

/// What a job asks the worker to run.
pub enum Work {
    /// An in-process callable (threads backend).
    Local(LocalWork),
    /// A function named in the worker program and its serialized argument
    /// (process, Web Worker and cluster backends).
    Named {
        /// The function's registered name.
        function: String,
        /// The serialized argument (shared: the pool keeps it for a retry).
        argument: Arc<Vec<u8>>,
    },
}

/// The kinds of [`Work`] a backend may accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkKind {
    /// [`Work::Local`].
    Local,
    /// [`Work::Named`].
    Named,
}

impl Work {
    /// Which kind this is.
    pub fn kind(&self) -> WorkKind {
        match self {
            Work::Local(_) => WorkKind::Local,
            Work::Named { .. } => WorkKind::Named,
        }
    }
}

/// A non-terminal message from a running task.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskMessage {
    /// Fraction done, in `[0, 1]`.
    Progress(f32),
    /// A line of text.
    Log(String),
    /// A user payload.
    Data(Vec<u8>),
}

/// Where a task's messages and (for remote work) its result go. One per
/// task; implemented by the pool, called by backends and by the in-task API
/// ([`crate::task`]). Must not block.
pub trait TaskSink: Send + Sync {
    /// The running task emitted a message.
    fn message(&self, message: TaskMessage);
    /// The serialized result of [`Work::Named`]. Decoding happens here; an
    /// error is returned so the backend reports the task as failed.
    fn result_bytes(&self, bytes: Vec<u8>) -> Result<(), TaskError>;
}

/// One attempt of one task, handed to a worker.
pub struct Job {
    /// The task.
    pub task: TaskId,
    /// 1 for the first attempt, 2 for the first retry, ...
    pub attempt: u32,
    /// What to run.
    pub work: Work,
    /// Where the task's messages go.
    pub sink: Arc<dyn TaskSink>,
}

/// What a worker tells the pool. Reports from one worker arrive in order.
#[derive(Debug)]
pub enum WorkerReport {
    /// `worker_init` finished; the worker takes jobs.
    Ready(WorkerId),
    /// The worker could not start (`worker_init` failed, spawn failed).
    StartFailed(WorkerId, String),
    /// The job returned and the worker takes the next one, but the task's
    /// result is still being decoded: its `Done` or `Failed` follows. A
    /// backend that decodes results on its own threads reports this
    /// first, so that the worker does not idle through the decode; one
    /// that does not send it reports `Done`/`Failed` alone.
    Returned(WorkerId, TaskId),
    /// The job returned; its result was delivered.
    Done(WorkerId, TaskId),
    /// The job failed; the worker lives on.
    Failed(WorkerId, TaskId, TaskError),
    /// The worker is gone. Sent exactly once per started worker, after any
    /// other report of that worker.
    Exited {
        /// The worker.
        worker: WorkerId,
        /// Its process id, for process backends.
        pid: Option<u32>,
        /// How it went away.
        cause: ExitCause,
    },
}

/// Receives [`WorkerReport`]s; implemented by the driver. Must not block.
pub trait ReportSink: Send + Sync {
    /// Deliver one report.
    fn report(&self, report: WorkerReport);
}

/// Per-worker state made by `worker_init`.
pub type WorkerState = Box<dyn Any + Send>;

/// `worker_init`: makes the per-worker state; an `Err` fails the start.
pub type InitHook = Arc<dyn Fn(WorkerId) -> Result<WorkerState, String> + Send + Sync>;

/// `worker_exit`: gets the per-worker state back before the worker leaves.
pub type ExitHook = Arc<dyn Fn(WorkerId, Option<WorkerState>) + Send + Sync>;

/// How to start one worker.
#[derive(Clone)]
pub struct WorkerSpec {
    /// The new worker's id.
    pub id: WorkerId,
    /// Runs first in the worker.
    pub init: Option<InitHook>,
    /// Runs last in the worker.
    pub exit: Option<ExitHook>,
}

/// One worker, as the pool holds it.
pub trait Worker: Send {
    /// Hand a job to the idle worker. If the worker is gone, the backend
    /// reports `Exited` (the scheduler then fails the task `WorkerLost`).
    fn send(&mut self, job: Job);
    /// Ask the worker to exit after its current job, running `worker_exit`.
    fn stop(&mut self);
    /// Abort the worker now (timeout, cancel, terminate). The backend reports
    /// `Exited` when it is gone.
    fn kill(&mut self);
    /// The worker's process id, for process backends.
    fn pid(&self) -> Option<u32> {
        None
    }
}

/// Makes workers. Object-safe; a pool owns one as `Box<dyn Backend>`.
pub trait Backend: Send {
    /// A short name for reports ("threads", "process", ...).
    fn name(&self) -> &str;
    /// Whether this backend can run this kind of work.
    fn accepts(&self, kind: WorkKind) -> bool;
    /// Start a worker. It reports `Ready` (or `StartFailed`) through
    /// `reports` when it is up; an `Err` here means it never started.
    fn start_worker(
        &mut self,
        spec: WorkerSpec,
        reports: Arc<dyn ReportSink>,
    ) -> Result<Box<dyn Worker>, String>;
    /// How long the pool's own threads (its dispatcher, a batch waiting
    /// for its chunks) spin before they block when they wait; `None`: the
    /// pool's default (`shoal_core::wait::SPIN`). Spinning saves a thread
    /// wake-up per hand-off between threads that are awake; a backend
    /// whose workers are processes on the same cores loses more by the
    /// core a spinning thread takes from them.
    fn spin(&self) -> Option<core::time::Duration> {
        None
    }
}
