//! The plugin side: a `Box<dyn Backend>` wrapped into an [`FfiBackendBox`].
//!
//! This code runs in the plugin's own copy of shoal-core. Jobs arriving
//! from the host become ordinary [`Job`]s whose [`Work::Local`] closure
//! calls back into the host ([`FfiTask::run`]), so the plugin's backend
//! runs them like any other closure. Every method the host calls catches
//! panics and returns them as error values.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RErr, ROk, ROption, RResult, RStr, RString};

use crate::backend::{
    Backend, Job, ReportSink, TaskMessage, TaskSink, Work, Worker, WorkerReport, WorkerSpec,
    WorkerState,
};
use crate::error::TaskError;
use crate::ids::{TaskId, WorkerId};
use crate::worker::panic_message;

use super::ffi::{
    FfiBackend, FfiBackend_TO, FfiBackendBox, FfiInitError, FfiJob, FfiReportSinkRef, FfiTaskRef,
    FfiWork, FfiWorkKind, FfiWorker, FfiWorker_TO, FfiWorkerBox, FfiWorkerSpec,
};

/// Wraps a backend into the FFI form a plugin hands to the host: the
/// other half of [`super::load_backend`]. Used by [`crate::export_plugin!`];
/// call it directly only to build a root module of your own.
pub fn export_backend(backend: Box<dyn Backend>) -> FfiBackendBox {
    FfiBackend_TO::from_value(GuestBackend { inner: backend }, TD_Opaque)
}

/// Runs a plugin's constructor for [`crate::export_plugin!`]: catches its
/// panic and wraps its backend.
pub fn new_backend<F>(options: RStr<'_>, make: F) -> RResult<FfiBackendBox, RString>
where
    F: FnOnce(&str) -> Result<Box<dyn Backend>, String>,
{
    match catch_unwind(AssertUnwindSafe(|| make(options.as_str()))) {
        Ok(Ok(backend)) => ROk(export_backend(backend)),
        Ok(Err(e)) => RErr(e.into()),
        Err(p) => RErr(format!("the plugin's constructor panicked: {}", panic_message(&*p)).into()),
    }
}

/// Runs `f`, turning a panic into an error message for the host.
fn guard<R>(what: &str, f: impl FnOnce() -> R) -> Result<R, RString> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|p| format!("the plugin panicked in `{what}`: {}", panic_message(&*p)).into())
}

struct GuestBackend {
    inner: Box<dyn Backend>,
}

impl FfiBackend for GuestBackend {
    fn name(&self) -> RString {
        guard("name", || RString::from(self.inner.name())).unwrap_or_else(|_| "plugin".into())
    }

    fn accepts(&self, kind: FfiWorkKind) -> bool {
        guard("accepts", || self.inner.accepts(kind.into())).unwrap_or(false)
    }

    fn start_worker(
        &mut self,
        spec: FfiWorkerSpec,
        reports: FfiReportSinkRef,
    ) -> RResult<FfiWorkerBox, RString> {
        let FfiWorkerSpec { id, hooks, user_hooks } = spec;
        let spec = if !user_hooks && !self.accepts(FfiWorkKind::Local) {
            // Workers outside this process: nothing of the host can run
            // in them, and no hook was asked for.
            WorkerSpec { id: WorkerId(id), init: None, exit: None }
        } else {
            host_hooks(id, hooks)
        };
        let reports: Arc<dyn ReportSink> = Arc::new(GuestReports(reports));
        match guard("start_worker", || self.inner.start_worker(spec, reports)) {
            Ok(Ok(worker)) => {
                ROk(FfiWorker_TO::from_value(GuestWorker { inner: worker }, TD_Opaque))
            }
            Ok(Err(e)) => RErr(e.into()),
            Err(e) => RErr(e),
        }
    }
}

/// A worker spec whose `init` and `exit` call the host's hooks (which also
/// set up the host's task context on the worker's thread).
fn host_hooks(id: u64, hooks: super::ffi::FfiWorkerHooksRef) -> WorkerSpec {
    let hooks = Arc::new(hooks);
    let exit_hooks = hooks.clone();
    WorkerSpec {
        id: WorkerId(id),
        init: Some(Arc::new(move |w: WorkerId| -> Result<WorkerState, String> {
            match hooks.init(w.0) {
                ROk(()) => Ok(Box::new(())),
                // Re-raised here so the plugin's runtime reports it as
                // a panic of `worker_init`; `resume_unwind` skips the
                // panic hook (the host already printed it).
                RErr(FfiInitError { panicked: true, message }) => {
                    resume_unwind(Box::new(message.into_string()))
                }
                RErr(FfiInitError { message, .. }) => Err(message.into_string()),
            }
        })),
        exit: Some(Arc::new(move |w: WorkerId, _state: Option<WorkerState>| exit_hooks.exit(w.0))),
    }
}

struct GuestWorker {
    inner: Box<dyn Worker>,
}

impl FfiWorker for GuestWorker {
    fn send(&mut self, job: FfiJob) -> RResult<(), RString> {
        let FfiJob { task, attempt, work, link } = job;
        let link = Arc::new(GuestTask(link));
        let work = match work {
            FfiWork::Local => {
                let link = link.clone();
                Work::Local(Box::new(move || link.run()))
            }
            FfiWork::Named { function, argument } => Work::Named {
                function: function.into_string(),
                argument: Arc::new(argument.into_vec()),
            },
        };
        let job = Job { task: TaskId(task), attempt, work, sink: link };
        guard("send", || self.inner.send(job)).into()
    }

    fn stop(&mut self) -> RResult<(), RString> {
        guard("stop", || self.inner.stop()).into()
    }

    fn kill(&mut self) -> RResult<(), RString> {
        guard("kill", || self.inner.kill()).into()
    }

    fn pid(&self) -> ROption<u32> {
        guard("pid", || self.inner.pid()).ok().flatten().into()
    }
}

/// The plugin's view of the pool's report sink.
struct GuestReports(FfiReportSinkRef);

impl ReportSink for GuestReports {
    fn report(&self, report: WorkerReport) {
        self.0.report(report.into());
    }
}

/// The plugin's view of one job's host side: its sink, and its closure.
struct GuestTask(FfiTaskRef);

impl GuestTask {
    /// The job's closure: runs the host closure; a panic there comes back
    /// as a message and unwinds here again, for the plugin's runtime to
    /// catch and report.
    fn run(&self) {
        if let RErr(message) = self.0.run() {
            resume_unwind(Box::new(message.into_string()));
        }
    }
}

impl TaskSink for GuestTask {
    fn message(&self, message: TaskMessage) {
        self.0.message(message.into());
    }

    fn result_bytes(&self, bytes: Vec<u8>) -> Result<(), TaskError> {
        self.0.result_bytes(bytes.into()).into_result().map_err(TaskError::from)
    }
}
