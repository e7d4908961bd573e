//! Errors as values that say what happened.
//!
//! * [`TaskError`]: why one task ended without a result (panic, timeout, the
//!   worker died under it, cancelled, serialization, the pool is broken).
//! * [`BuildError`]: a bad option at [`PoolBuilder::build`](crate::PoolBuilder)
//!   time; it names the option.
//! * [`SubmitError`]: the pool did not accept a task; it hands the task back.
//! * [`BatchError`]: which item of a batch failed, and how.

use core::fmt;
use core::time::Duration;

use crate::ids::WorkerId;

/// How a worker went away.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitCause {
    /// The worker asked to stop (lifespan reached, idle shrink, close) and did.
    Stopped,
    /// A worker process exited with this code.
    Code(i32),
    /// A worker process was killed by this signal.
    Signal(i32),
    /// The pool killed the worker (task timeout, cancel, terminate).
    Killed,
    /// An in-process worker thread was abandoned: it is still running a task
    /// that exceeded its timeout or was cancelled, and will exit when that
    /// task returns. Threads cannot be killed safely.
    Detached,
    /// The worker's channel closed without an exit status (for example a
    /// worker thread that panicked outside a task).
    Vanished(String),
    /// The worker broke the wire protocol (a malformed, truncated or
    /// oversized frame) and was dropped.
    Protocol(String),
}

impl fmt::Display for ExitCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitCause::Stopped => f.write_str("stopped"),
            ExitCause::Code(c) => write!(f, "exit code {c}"),
            ExitCause::Signal(s) => write!(f, "signal {s}"),
            ExitCause::Killed => f.write_str("killed by the pool"),
            ExitCause::Detached => f.write_str("detached"),
            ExitCause::Vanished(why) => write!(f, "vanished: {why}"),
            ExitCause::Protocol(why) => write!(f, "dropped for breaking the protocol: {why}"),
        }
    }
}

/// What kind of failure a [`TaskError`] is.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum TaskErrorKind {
    /// The task panicked (Rust) or raised (other languages).
    Panic {
        /// The panic message.
        message: String,
        /// The remote traceback, where the worker's language has one.
        traceback: Option<String>,
    },
    /// The task ran longer than its timeout.
    Timeout {
        /// The timeout that was exceeded.
        after: Duration,
    },
    /// The worker died while the task was on it.
    WorkerLost {
        /// The worker that died.
        worker: WorkerId,
        /// Its process id, for process backends.
        pid: Option<u32>,
        /// How it went away.
        cause: ExitCause,
    },
    /// The task was cancelled (by its handle, or by `terminate`).
    Cancelled,
    /// The argument or the result could not be (de)serialized.
    Serialization {
        /// What failed.
        message: String,
    },
    /// The pool cannot start workers (for example `worker_init` keeps
    /// failing); queued tasks fail with this instead of waiting forever.
    Broken {
        /// The error of the last failed start.
        message: String,
    },
}

/// Why a task ended without a result.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskError {
    kind: TaskErrorKind,
    attempts: u32,
}

impl TaskError {
    /// An error of this kind after one attempt.
    pub fn new(kind: TaskErrorKind) -> Self {
        TaskError { kind, attempts: 1 }
    }
    /// A panic with this message.
    pub fn panic(message: impl Into<String>) -> Self {
        Self::new(TaskErrorKind::Panic { message: message.into(), traceback: None })
    }
    /// A timeout.
    pub fn timeout(after: Duration) -> Self {
        Self::new(TaskErrorKind::Timeout { after })
    }
    /// The worker died under the task.
    pub fn worker_lost(worker: WorkerId, pid: Option<u32>, cause: ExitCause) -> Self {
        Self::new(TaskErrorKind::WorkerLost { worker, pid, cause })
    }
    /// Cancelled.
    pub fn cancelled() -> Self {
        Self::new(TaskErrorKind::Cancelled)
    }
    /// A serialization failure.
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new(TaskErrorKind::Serialization { message: message.into() })
    }
    /// The pool is broken.
    pub fn broken(message: impl Into<String>) -> Self {
        Self::new(TaskErrorKind::Broken { message: message.into() })
    }
    /// Records how many attempts were made (retries + 1).
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }
    /// The kind of failure.
    pub fn kind(&self) -> &TaskErrorKind {
        &self.kind
    }
    /// How many times the task ran (1 without retries).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
    /// The task panicked or raised.
    pub fn is_panic(&self) -> bool {
        matches!(self.kind, TaskErrorKind::Panic { .. })
    }
    /// The task exceeded its timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, TaskErrorKind::Timeout { .. })
    }
    /// The worker died under the task.
    pub fn is_worker_lost(&self) -> bool {
        matches!(self.kind, TaskErrorKind::WorkerLost { .. })
    }
    /// The task was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.kind, TaskErrorKind::Cancelled)
    }
    /// Argument or result could not be (de)serialized.
    pub fn is_serialization(&self) -> bool {
        matches!(self.kind, TaskErrorKind::Serialization { .. })
    }
    /// The pool could not start workers.
    pub fn is_broken(&self) -> bool {
        matches!(self.kind, TaskErrorKind::Broken { .. })
    }
    /// The worker the task was lost on, for `WorkerLost`.
    pub fn worker(&self) -> Option<WorkerId> {
        match self.kind {
            TaskErrorKind::WorkerLost { worker, .. } => Some(worker),
            _ => None,
        }
    }
    /// Whether a retry may help: every failure but `Cancelled`,
    /// `Serialization` and `Broken`.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self.kind,
            TaskErrorKind::Cancelled
                | TaskErrorKind::Serialization { .. }
                | TaskErrorKind::Broken { .. }
        )
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            TaskErrorKind::Panic { message, traceback } => {
                write!(f, "task panicked: {message}")?;
                if let Some(tb) = traceback {
                    write!(f, "\n{tb}")?;
                }
            }
            TaskErrorKind::Timeout { after } => write!(f, "task timed out after {after:?}")?,
            TaskErrorKind::WorkerLost { worker, pid, cause } => {
                write!(f, "{worker}")?;
                if let Some(pid) = pid {
                    write!(f, " (pid {pid})")?;
                }
                write!(f, " was lost while running the task: {cause}")?;
            }
            TaskErrorKind::Cancelled => f.write_str("task cancelled")?,
            TaskErrorKind::Serialization { message } => {
                write!(f, "serialization failed: {message}")?
            }
            TaskErrorKind::Broken { message } => {
                write!(f, "the pool cannot start workers: {message}")?
            }
        }
        if self.attempts > 1 {
            write!(f, " (after {} attempts)", self.attempts)?;
        }
        Ok(())
    }
}

impl std::error::Error for TaskError {}

/// A pool option was rejected when the pool was built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildError {
    option: &'static str,
    message: String,
}

impl BuildError {
    /// A rejected option and why.
    pub fn new(option: &'static str, message: impl Into<String>) -> Self {
        BuildError { option, message: message.into() }
    }
    /// The name of the offending option (`min`, `max`, `chunksize`, ...).
    pub fn option(&self) -> &'static str {
        self.option
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid option `{}`: {}", self.option, self.message)
    }
}

impl std::error::Error for BuildError {}

/// Why a pool did not accept a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubmitRefusal {
    /// `close` or `terminate` was called.
    Closed,
    /// The backend cannot run this kind of task function.
    Unsupported,
    /// The batch or task options were invalid (see the message).
    InvalidOption(&'static str),
}

/// The pool did not accept a task; the task comes back.
pub struct SubmitError<T> {
    task: T,
    reason: SubmitRefusal,
}

impl<T> SubmitError<T> {
    /// A refused task and why.
    pub fn new(task: T, reason: SubmitRefusal) -> Self {
        SubmitError { task, reason }
    }
    /// Why the task was refused.
    pub fn reason(&self) -> SubmitRefusal {
        self.reason
    }
    /// The task that was not accepted.
    pub fn into_inner(self) -> T {
        self.task
    }
}

impl<T> fmt::Debug for SubmitError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitError").field("reason", &self.reason).finish_non_exhaustive()
    }
}

impl<T> fmt::Display for SubmitError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            SubmitRefusal::Closed => f.write_str("the pool is closed; the task was not accepted"),
            SubmitRefusal::Unsupported => {
                f.write_str("this backend cannot run this kind of task function")
            }
            SubmitRefusal::InvalidOption(opt) => write!(f, "invalid option `{opt}`"),
        }
    }
}

impl<T> std::error::Error for SubmitError<T> {}

/// A batch (`map`, `imap`, ...) did not complete.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum BatchError {
    /// The item at `index` of the input failed.
    Failed {
        /// The position of the failed item in the input.
        index: usize,
        /// How it failed.
        error: TaskError,
    },
    /// A batch option was invalid (`chunksize` 0, ...).
    InvalidOption(BuildError),
    /// The pool was closed or terminated before the batch could run.
    Closed,
}

impl BatchError {
    /// The index of the failed item, for `Failed`.
    pub fn index(&self) -> Option<usize> {
        match self {
            BatchError::Failed { index, .. } => Some(*index),
            _ => None,
        }
    }
    /// The task error, for `Failed`.
    pub fn task_error(&self) -> Option<&TaskError> {
        match self {
            BatchError::Failed { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Failed { index, error } => write!(f, "item {index} failed: {error}"),
            BatchError::InvalidOption(e) => e.fmt(f),
            BatchError::Closed => f.write_str("the pool is closed; the batch did not run"),
        }
    }
}

impl std::error::Error for BatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BatchError::Failed { error, .. } => Some(error),
            BatchError::InvalidOption(e) => Some(e),
            BatchError::Closed => None,
        }
    }
}
