//! The worker runtime for workers that run Rust in their own thread: it runs
//! `worker_init`, jobs and `worker_exit`, sets up the in-task API
//! ([`crate::task`]) and turns panics into [`TaskError`]s. Backends whose
//! workers run Rust use it (the threads backend directly; a process backend
//! in its child).

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::backend::{Job, Work, WorkerSpec};
use crate::error::TaskError;
use crate::function::Registry;
use crate::ids::WorkerId;
use crate::task;

/// Runs the jobs of one worker on the current thread.
pub struct WorkerRuntime {
    spec: WorkerSpec,
    registry: Option<Registry>,
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

impl WorkerRuntime {
    /// A runtime for the worker described by `spec`.
    pub fn new(spec: WorkerSpec) -> Self {
        WorkerRuntime { spec, registry: None }
    }

    /// Lets the worker run [`Work::Named`] jobs from `registry`.
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// This worker's id.
    pub fn id(&self) -> WorkerId {
        self.spec.id
    }

    /// Enters the worker role on this thread and runs `worker_init`. A panic
    /// or an `Err` from the hook is the start error.
    pub fn init(&mut self) -> Result<(), String> {
        task::enter_worker(self.spec.id);
        let Some(init) = self.spec.init.clone() else { return Ok(()) };
        let id = self.spec.id;
        match catch_unwind(AssertUnwindSafe(|| init(id))) {
            Ok(Ok(state)) => {
                task::set_state(Some(state));
                Ok(())
            }
            Ok(Err(e)) => Err(format!("worker_init failed: {e}")),
            Err(p) => Err(format!("worker_init panicked: {}", panic_message(&*p))),
        }
    }

    /// Runs one job. `Work::Local` closures deliver their own result; a
    /// panic becomes `Err(Panic)`. `Work::Named` runs the registered
    /// function on the serialized chunk and hands the result bytes to the
    /// job's sink.
    pub fn run(&mut self, job: Job) -> Result<(), TaskError> {
        let Job { task: id, work, sink, .. } = job;
        match work {
            Work::Local(f) => {
                task::set_task(Some((id, sink)));
                let r = catch_unwind(AssertUnwindSafe(f));
                task::set_task(None);
                r.map_err(|p| TaskError::panic(panic_message(&*p)))
            }
            Work::Named { function, argument } => {
                let Some(registry) = &self.registry else {
                    return Err(TaskError::serialization(format!(
                        "this worker has no registry; it cannot run the named function `{function}`"
                    )));
                };
                let Some(f) = registry.get(&function) else {
                    return Err(TaskError::serialization(format!(
                        "no function named `{function}` is registered in this worker (it has: {})",
                        registry.names().join(", ")
                    )));
                };
                task::set_task(Some((id, sink.clone())));
                let r = catch_unwind(AssertUnwindSafe(|| f.call_chunk(&argument)));
                task::set_task(None);
                match r {
                    Ok(Ok(bytes)) => sink.result_bytes(bytes),
                    Ok(Err(e)) => Err(TaskError::serialization(e)),
                    Err(p) => Err(TaskError::panic(panic_message(&*p))),
                }
            }
        }
    }

    /// Runs `worker_exit` with the worker's state and leaves the worker role.
    /// A panicking hook is swallowed: the worker is leaving anyway.
    pub fn exit(self) {
        let state = task::take_state();
        if let Some(exit) = self.spec.exit.clone() {
            let id = self.spec.id;
            let _ = catch_unwind(AssertUnwindSafe(|| exit(id, state)));
        }
        task::leave_worker();
    }
}
