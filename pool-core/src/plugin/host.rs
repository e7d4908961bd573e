//! The host side: a plugin's [`FfiBackendBox`] seen as a `Box<dyn Backend>`.
//!
//! The host implements the objects the plugin calls back: the report sink,
//! the worker hooks and, per job, the [`FfiTask`] that holds the job's
//! closure and the task's sink. These run on the plugin's worker threads
//! but are host code, so they set up the *host's* copy of the in-task API
//! ([`crate::task`]) around the closure and catch its panics here, before
//! anything crosses back over `extern "C"`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RErr, ROk, RResult, RString, RVec};

use crate::backend::{
    Backend, ExitHook, InitHook, Job, LocalWork, ReportSink, TaskSink, Work, WorkKind, Worker,
    WorkerReport, WorkerSpec,
};
use crate::error::{ExitCause, TaskError};
use crate::ids::{TaskId, WorkerId};
use crate::task;
use crate::worker::panic_message;

use super::ffi::{
    FfiBackendBox, FfiInitError, FfiJob, FfiReport, FfiReportSink, FfiReportSink_TO, FfiTask,
    FfiTask_TO, FfiTaskError, FfiTaskMessage, FfiWork, FfiWorkerBox, FfiWorkerHooks,
    FfiWorkerHooks_TO, FfiWorkerSpec,
};

/// Wraps a plugin's backend for the pool.
pub(crate) fn import_backend(ffi: FfiBackendBox) -> Box<dyn Backend> {
    let name = ffi.name().into_string();
    Box::new(HostBackend { ffi, name })
}

struct HostBackend {
    ffi: FfiBackendBox,
    /// `Backend::name` hands out a `&str`; the plugin's name is copied once.
    name: String,
}

impl Backend for HostBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn accepts(&self, kind: WorkKind) -> bool {
        self.ffi.accepts(kind.into())
    }

    fn start_worker(
        &mut self,
        spec: WorkerSpec,
        reports: Arc<dyn ReportSink>,
    ) -> Result<Box<dyn Worker>, String> {
        let WorkerSpec { id, init, exit } = spec;
        let user_hooks = init.is_some() || exit.is_some();
        let reports =
            RArc::new(HostReports { inner: reports, worker: id, exited: AtomicBool::new(false) });
        let hooks = FfiWorkerHooks_TO::from_ptr(RArc::new(HostHooks { init, exit }), TD_Opaque);
        let spec = FfiWorkerSpec { id: id.0, hooks, user_hooks };
        let sink = FfiReportSink_TO::from_ptr(reports.clone(), TD_Opaque);
        match self.ffi.start_worker(spec, sink) {
            ROk(ffi) => Ok(Box::new(HostWorker { ffi, id, reports })),
            RErr(e) => Err(e.into_string()),
        }
    }
}

/// One plugin worker, as the pool holds it.
struct HostWorker {
    ffi: FfiWorkerBox,
    id: WorkerId,
    reports: RArc<HostReports>,
}

impl Worker for HostWorker {
    fn send(&mut self, job: Job) {
        let Job { task, attempt, work, sink } = job;
        let (work, local) = match work {
            Work::Local(f) => (FfiWork::Local, Some(f)),
            Work::Named { function, argument } => (
                FfiWork::Named { function: function.into(), argument: argument.to_vec().into() },
                None,
            ),
        };
        let link = HostTask { task, worker: self.id, sink, work: Mutex::new(local) };
        let link = FfiTask_TO::from_ptr(RArc::new(link), TD_Opaque);
        if let RErr(e) = self.ffi.send(FfiJob { task: task.0, attempt, work, link }) {
            self.reports.vanished(format!("the plugin failed to take a job: {e}"));
        }
    }

    fn stop(&mut self) {
        if let RErr(e) = self.ffi.stop() {
            self.reports.vanished(format!("the plugin failed to stop the worker: {e}"));
        }
    }

    fn kill(&mut self) {
        if let RErr(e) = self.ffi.kill() {
            self.reports.vanished(format!("the plugin failed to kill the worker: {e}"));
        }
    }

    fn pid(&self) -> Option<u32> {
        self.ffi.pid().into_option()
    }
}

/// The pool's report sink, for one worker. It keeps `Exited` exactly once
/// even when the host reports the worker gone itself (the plugin panicked
/// in `send`, `stop` or `kill`).
struct HostReports {
    inner: Arc<dyn ReportSink>,
    worker: WorkerId,
    exited: AtomicBool,
}

impl HostReports {
    fn vanished(&self, why: String) {
        if !self.exited.swap(true, Ordering::AcqRel) {
            self.inner.report(WorkerReport::Exited {
                worker: self.worker,
                pid: None,
                cause: ExitCause::Vanished(why),
            });
        }
    }
}

impl FfiReportSink for HostReports {
    fn report(&self, report: FfiReport) {
        let report = WorkerReport::from(report);
        if matches!(report, WorkerReport::Exited { .. }) && self.exited.swap(true, Ordering::AcqRel)
        {
            return;
        }
        // The driver's sink only sends on a channel; a panic here would be
        // a bug in the host, and must still not cross into the plugin.
        let _ = catch_unwind(AssertUnwindSafe(|| self.inner.report(report)));
    }
}

/// The host's `worker_init`/`worker_exit`, run on the plugin's worker
/// thread against the host's thread-locals.
struct HostHooks {
    init: Option<InitHook>,
    exit: Option<ExitHook>,
}

impl FfiWorkerHooks for HostHooks {
    fn init(&self, worker: u64) -> RResult<(), FfiInitError> {
        let id = WorkerId(worker);
        task::enter_worker(id);
        let Some(init) = &self.init else { return ROk(()) };
        match catch_unwind(AssertUnwindSafe(|| init(id))) {
            Ok(Ok(state)) => {
                task::set_state(Some(state));
                ROk(())
            }
            Ok(Err(e)) => RErr(FfiInitError { panicked: false, message: e.into() }),
            Err(p) => RErr(FfiInitError { panicked: true, message: panic_message(&*p).into() }),
        }
    }

    fn exit(&self, worker: u64) {
        let state = task::take_state();
        if let Some(exit) = &self.exit {
            let _ = catch_unwind(AssertUnwindSafe(|| exit(WorkerId(worker), state)));
        }
        task::leave_worker();
    }
}

/// The host side of one job: its closure and its task's sink.
struct HostTask {
    task: TaskId,
    worker: WorkerId,
    sink: Arc<dyn TaskSink>,
    /// Taken by the one `run`.
    work: Mutex<Option<LocalWork>>,
}

impl FfiTask for HostTask {
    fn run(&self) -> RResult<(), RString> {
        let work = self.work.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(work) = work else {
            return RErr("this job has no closure to run (named work, or it already ran)".into());
        };
        // The host's thread-locals, not the plugin's: this closure was
        // compiled into the host and calls the host's `task::*`.
        let sink = self.sink.clone();
        match task::run_as(self.worker, self.task, sink, || catch_unwind(AssertUnwindSafe(work))) {
            Ok(()) => ROk(()),
            Err(p) => RErr(panic_message(&*p).into()),
        }
    }

    fn message(&self, message: FfiTaskMessage) {
        let _ = catch_unwind(AssertUnwindSafe(|| self.sink.message(message.into())));
    }

    fn result_bytes(&self, bytes: RVec<u8>) -> RResult<(), FfiTaskError> {
        match catch_unwind(AssertUnwindSafe(|| self.sink.result_bytes(bytes.into()))) {
            Ok(Ok(())) => ROk(()),
            Ok(Err(e)) => RErr(e.into()),
            Err(p) => RErr(
                TaskError::serialization(format!(
                    "decoding the result panicked: {}",
                    panic_message(&*p)
                ))
                .into(),
            ),
        }
    }
}
