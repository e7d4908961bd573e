//! The FFI-stable form of the [`crate::backend`] traits and types.
//!
//! Everything here is `#[repr(C)]`/`#[repr(u8)]` and derives
//! [`StableAbi`], so abi_stable checks at load time that host and plugin
//! agree on every layout. Plain data (reports, messages, errors) is
//! converted field by field; objects (backend, worker, sinks, hooks, the
//! work of a job) are `#[sabi_trait]` trait objects whose methods run on
//! the side that made them.
//!
//! Users of a plugin never touch these types: [`super::load_backend`]
//! returns a `Box<dyn Backend>` and [`super::export_backend`] takes one.

// The `#[sabi_trait]` and `StableAbi` expansions generate helper items
// without docs and with non-Rust-style names.
#![allow(missing_docs, non_camel_case_types, non_local_definitions)]

use std::time::Duration;

use abi_stable::std_types::{RArc, RBox, RDuration, ROption, RResult, RStr, RString, RVec};
use abi_stable::{StableAbi, sabi_trait};

use crate::backend::{TaskMessage, WorkKind, WorkerReport};
use crate::error::{ExitCause, TaskError, TaskErrorKind};
use crate::ids::{TaskId, WorkerId};

/// [`WorkKind`] across the boundary.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfiWorkKind {
    /// [`WorkKind::Local`].
    Local,
    /// [`WorkKind::Named`].
    Named,
}

/// [`TaskMessage`] across the boundary.
#[repr(u8)]
#[derive(StableAbi, Debug)]
pub enum FfiTaskMessage {
    /// [`TaskMessage::Progress`].
    Progress(f32),
    /// [`TaskMessage::Log`].
    Log(RString),
    /// [`TaskMessage::Data`].
    Data(RVec<u8>),
}

/// [`ExitCause`] across the boundary.
#[repr(u8)]
#[derive(StableAbi, Debug)]
pub enum FfiExitCause {
    /// [`ExitCause::Stopped`].
    Stopped,
    /// [`ExitCause::Code`].
    Code(i32),
    /// [`ExitCause::Signal`].
    Signal(i32),
    /// [`ExitCause::Killed`].
    Killed,
    /// [`ExitCause::Detached`].
    Detached,
    /// [`ExitCause::Vanished`].
    Vanished(RString),
    /// [`ExitCause::Protocol`].
    Protocol(RString),
}

/// [`TaskErrorKind`] across the boundary.
#[repr(u8)]
#[derive(StableAbi, Debug)]
pub enum FfiTaskErrorKind {
    /// [`TaskErrorKind::Panic`].
    Panic {
        /// The panic message.
        message: RString,
        /// The remote traceback.
        traceback: ROption<RString>,
    },
    /// [`TaskErrorKind::Timeout`].
    Timeout {
        /// The timeout that was exceeded.
        after: RDuration,
    },
    /// [`TaskErrorKind::WorkerLost`].
    WorkerLost {
        /// The worker's id.
        worker: u64,
        /// Its process id.
        pid: ROption<u32>,
        /// How it went away.
        cause: FfiExitCause,
    },
    /// [`TaskErrorKind::Cancelled`].
    Cancelled,
    /// [`TaskErrorKind::Serialization`].
    Serialization {
        /// What failed.
        message: RString,
    },
    /// [`TaskErrorKind::Broken`].
    Broken {
        /// The error of the last failed start.
        message: RString,
    },
}

/// [`TaskError`] across the boundary.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiTaskError {
    /// What went wrong.
    pub kind: FfiTaskErrorKind,
    /// How many attempts were made.
    pub attempts: u32,
}

/// [`WorkerReport`] across the boundary.
#[repr(u8)]
#[derive(StableAbi, Debug)]
pub enum FfiReport {
    /// [`WorkerReport::Ready`].
    Ready(u64),
    /// [`WorkerReport::StartFailed`].
    StartFailed(u64, RString),
    /// [`WorkerReport::Returned`] (worker, task).
    Returned(u64, u64),
    /// [`WorkerReport::Done`] (worker, task).
    Done(u64, u64),
    /// [`WorkerReport::Failed`] (worker, task, error).
    Failed(u64, u64, FfiTaskError),
    /// [`WorkerReport::Exited`].
    Exited {
        /// The worker.
        worker: u64,
        /// Its process id.
        pid: ROption<u32>,
        /// How it went away.
        cause: FfiExitCause,
    },
}

/// Why the host's `worker_init` did not make a state.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiInitError {
    /// The hook panicked (rather than returning `Err`).
    pub panicked: bool,
    /// The hook's error, or the panic message.
    pub message: RString,
}

/// What a job asks the worker to run. The closure of local work stays on
/// the host side, inside the job's [`FfiTaskRef`].
#[repr(u8)]
#[derive(StableAbi, Debug)]
pub enum FfiWork {
    /// A host closure: run it with [`FfiTask::run`].
    Local,
    /// [`crate::backend::Work::Named`].
    Named {
        /// The function's registered name.
        function: RString,
        /// The serialized argument.
        argument: RVec<u8>,
    },
}

/// One attempt of one task, as it crosses to the plugin.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiJob {
    /// The task's id.
    pub task: u64,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// What to run.
    pub work: FfiWork,
    /// The host side of the task: its closure and its sink.
    pub link: FfiTaskRef,
}

/// The host side of one task attempt, implemented by the host and called
/// by the plugin: the job's closure (for [`FfiWork::Local`]) and the
/// task's [`crate::backend::TaskSink`]. One allocation per job.
#[sabi_trait]
pub trait FfiTask: Send + Sync {
    /// Runs the host closure once, on the calling (worker) thread, with the
    /// host's in-task API set up. `Err` carries the panic message.
    fn run(&self) -> RResult<(), RString>;
    /// [`crate::backend::TaskSink::message`].
    fn message(&self, message: FfiTaskMessage);
    /// [`crate::backend::TaskSink::result_bytes`].
    fn result_bytes(&self, bytes: RVec<u8>) -> RResult<(), FfiTaskError>;
}

/// A shared [`FfiTask`] object.
pub type FfiTaskRef = FfiTask_TO<'static, RArc<()>>;

/// Receives worker reports; implemented by the host.
#[sabi_trait]
pub trait FfiReportSink: Send + Sync {
    /// [`crate::backend::ReportSink::report`].
    fn report(&self, report: FfiReport);
}

/// A shared [`FfiReportSink`] object.
pub type FfiReportSinkRef = FfiReportSink_TO<'static, RArc<()>>;

/// The host's `worker_init`/`worker_exit` of one worker; implemented by
/// the host, which keeps the worker state and the worker role in its own
/// thread-locals.
#[sabi_trait]
pub trait FfiWorkerHooks: Send + Sync {
    /// Enters the worker role on this thread and runs the host's
    /// `worker_init`, if any.
    fn init(&self, worker: u64) -> RResult<(), FfiInitError>;
    /// Runs the host's `worker_exit`, if any, and leaves the worker role.
    fn exit(&self, worker: u64);
}

/// A shared [`FfiWorkerHooks`] object.
pub type FfiWorkerHooksRef = FfiWorkerHooks_TO<'static, RArc<()>>;

/// [`crate::backend::WorkerSpec`] across the boundary.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiWorkerSpec {
    /// The new worker's id.
    pub id: u64,
    /// The host's hooks; the plugin runs `init` first and `exit` last on
    /// the worker's thread.
    pub hooks: FfiWorkerHooksRef,
    /// Whether the user gave `worker_init`/`worker_exit`. Without them the
    /// hooks only set up the host's task context, which in-process
    /// backends need and others (processes) cannot run.
    pub user_hooks: bool,
}

/// [`crate::backend::Worker`] across the boundary; implemented by the
/// plugin. `Err` means the plugin panicked.
#[sabi_trait]
pub trait FfiWorker: Send {
    /// [`crate::backend::Worker::send`].
    fn send(&mut self, job: FfiJob) -> RResult<(), RString>;
    /// [`crate::backend::Worker::stop`].
    fn stop(&mut self) -> RResult<(), RString>;
    /// [`crate::backend::Worker::kill`].
    fn kill(&mut self) -> RResult<(), RString>;
    /// [`crate::backend::Worker::pid`].
    fn pid(&self) -> ROption<u32>;
}

/// An owned [`FfiWorker`] object.
pub type FfiWorkerBox = FfiWorker_TO<'static, RBox<()>>;

/// [`crate::backend::Backend`] across the boundary; implemented by the
/// plugin.
#[sabi_trait]
pub trait FfiBackend: Send {
    /// [`crate::backend::Backend::name`].
    fn name(&self) -> RString;
    /// [`crate::backend::Backend::accepts`].
    fn accepts(&self, kind: FfiWorkKind) -> bool;
    /// [`crate::backend::Backend::start_worker`].
    fn start_worker(
        &mut self,
        spec: FfiWorkerSpec,
        reports: FfiReportSinkRef,
    ) -> RResult<FfiWorkerBox, RString>;
}

/// An owned [`FfiBackend`] object: what a plugin hands to the host.
pub type FfiBackendBox = FfiBackend_TO<'static, RBox<()>>;

/// The plugin's constructor: options string in, backend out.
pub type NewBackendFn = extern "C" fn(options: RStr<'_>) -> RResult<FfiBackendBox, RString>;

// ---- conversions -------------------------------------------------------

impl From<WorkKind> for FfiWorkKind {
    fn from(k: WorkKind) -> Self {
        match k {
            WorkKind::Local => FfiWorkKind::Local,
            WorkKind::Named => FfiWorkKind::Named,
        }
    }
}

impl From<FfiWorkKind> for WorkKind {
    fn from(k: FfiWorkKind) -> Self {
        match k {
            FfiWorkKind::Local => WorkKind::Local,
            FfiWorkKind::Named => WorkKind::Named,
        }
    }
}

impl From<TaskMessage> for FfiTaskMessage {
    fn from(m: TaskMessage) -> Self {
        match m {
            TaskMessage::Progress(p) => FfiTaskMessage::Progress(p),
            TaskMessage::Log(s) => FfiTaskMessage::Log(s.into()),
            TaskMessage::Data(d) => FfiTaskMessage::Data(d.into()),
        }
    }
}

impl From<FfiTaskMessage> for TaskMessage {
    fn from(m: FfiTaskMessage) -> Self {
        match m {
            FfiTaskMessage::Progress(p) => TaskMessage::Progress(p),
            FfiTaskMessage::Log(s) => TaskMessage::Log(s.into()),
            FfiTaskMessage::Data(d) => TaskMessage::Data(d.into()),
        }
    }
}

impl From<ExitCause> for FfiExitCause {
    fn from(c: ExitCause) -> Self {
        match c {
            ExitCause::Stopped => FfiExitCause::Stopped,
            ExitCause::Code(c) => FfiExitCause::Code(c),
            ExitCause::Signal(s) => FfiExitCause::Signal(s),
            ExitCause::Killed => FfiExitCause::Killed,
            ExitCause::Detached => FfiExitCause::Detached,
            ExitCause::Vanished(why) => FfiExitCause::Vanished(why.into()),
            ExitCause::Protocol(why) => FfiExitCause::Protocol(why.into()),
        }
    }
}

impl From<FfiExitCause> for ExitCause {
    fn from(c: FfiExitCause) -> Self {
        match c {
            FfiExitCause::Stopped => ExitCause::Stopped,
            FfiExitCause::Code(c) => ExitCause::Code(c),
            FfiExitCause::Signal(s) => ExitCause::Signal(s),
            FfiExitCause::Killed => ExitCause::Killed,
            FfiExitCause::Detached => ExitCause::Detached,
            FfiExitCause::Vanished(why) => ExitCause::Vanished(why.into()),
            FfiExitCause::Protocol(why) => ExitCause::Protocol(why.into()),
        }
    }
}

impl From<TaskError> for FfiTaskError {
    fn from(e: TaskError) -> Self {
        let attempts = e.attempts();
        let kind = match e.kind().clone() {
            TaskErrorKind::Panic { message, traceback } => FfiTaskErrorKind::Panic {
                message: message.into(),
                traceback: traceback.map(RString::from).into(),
            },
            TaskErrorKind::Timeout { after } => FfiTaskErrorKind::Timeout { after: after.into() },
            TaskErrorKind::WorkerLost { worker, pid, cause } => FfiTaskErrorKind::WorkerLost {
                worker: worker.0,
                pid: pid.into(),
                cause: cause.into(),
            },
            TaskErrorKind::Cancelled => FfiTaskErrorKind::Cancelled,
            TaskErrorKind::Serialization { message } => {
                FfiTaskErrorKind::Serialization { message: message.into() }
            }
            TaskErrorKind::Broken { message } => {
                FfiTaskErrorKind::Broken { message: message.into() }
            }
        };
        FfiTaskError { kind, attempts }
    }
}

impl From<FfiTaskError> for TaskError {
    fn from(e: FfiTaskError) -> Self {
        let kind = match e.kind {
            FfiTaskErrorKind::Panic { message, traceback } => TaskErrorKind::Panic {
                message: message.into(),
                traceback: traceback.into_option().map(String::from),
            },
            FfiTaskErrorKind::Timeout { after } => {
                TaskErrorKind::Timeout { after: Duration::from(after) }
            }
            FfiTaskErrorKind::WorkerLost { worker, pid, cause } => TaskErrorKind::WorkerLost {
                worker: WorkerId(worker),
                pid: pid.into_option(),
                cause: cause.into(),
            },
            FfiTaskErrorKind::Cancelled => TaskErrorKind::Cancelled,
            FfiTaskErrorKind::Serialization { message } => {
                TaskErrorKind::Serialization { message: message.into() }
            }
            FfiTaskErrorKind::Broken { message } => {
                TaskErrorKind::Broken { message: message.into() }
            }
        };
        TaskError::new(kind).with_attempts(e.attempts)
    }
}

impl From<WorkerReport> for FfiReport {
    fn from(r: WorkerReport) -> Self {
        match r {
            WorkerReport::Ready(w) => FfiReport::Ready(w.0),
            WorkerReport::StartFailed(w, e) => FfiReport::StartFailed(w.0, e.into()),
            WorkerReport::Returned(w, t) => FfiReport::Returned(w.0, t.0),
            WorkerReport::Done(w, t) => FfiReport::Done(w.0, t.0),
            WorkerReport::Failed(w, t, e) => FfiReport::Failed(w.0, t.0, e.into()),
            WorkerReport::Exited { worker, pid, cause } => {
                FfiReport::Exited { worker: worker.0, pid: pid.into(), cause: cause.into() }
            }
        }
    }
}

impl From<FfiReport> for WorkerReport {
    fn from(r: FfiReport) -> Self {
        match r {
            FfiReport::Ready(w) => WorkerReport::Ready(WorkerId(w)),
            FfiReport::StartFailed(w, e) => WorkerReport::StartFailed(WorkerId(w), e.into()),
            FfiReport::Returned(w, t) => WorkerReport::Returned(WorkerId(w), TaskId(t)),
            FfiReport::Done(w, t) => WorkerReport::Done(WorkerId(w), TaskId(t)),
            FfiReport::Failed(w, t, e) => WorkerReport::Failed(WorkerId(w), TaskId(t), e.into()),
            FfiReport::Exited { worker, pid, cause } => WorkerReport::Exited {
                worker: WorkerId(worker),
                pid: pid.into_option(),
                cause: cause.into(),
            },
        }
    }
}

// ---- the root module ---------------------------------------------------

/// The root module every shoal plugin exports (through
/// [`crate::export_plugin!`]). abi_stable checks its layout, and that of
/// everything it reaches, when the host loads the plugin.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = ShoalPluginRef)))]
#[sabi(missing_field(panic))]
pub struct ShoalPlugin {
    /// The [`super::PLUGIN_ABI_VERSION`] the plugin was built with.
    pub abi_version: u32,
    /// The shoal-core version the plugin was built with.
    pub core_version: RStr<'static>,
    /// Makes a backend from an options string.
    #[sabi(last_prefix_field)]
    pub new_backend: extern "C" fn(options: RStr<'_>) -> RResult<FfiBackendBox, RString>,
}

impl abi_stable::library::RootModule for ShoalPluginRef {
    abi_stable::declare_root_module_statics! {ShoalPluginRef}
    const BASE_NAME: &'static str = "shoal_plugin";
    const NAME: &'static str = "shoal_plugin";
    const VERSION_STRINGS: abi_stable::sabi_types::VersionStrings =
        abi_stable::package_version_strings!();
}
