//! shoal's threads backend: every worker is an OS thread that takes jobs
//! from its own crossbeam channel and runs them in-process, so tasks are
//! plain Rust closures and results never get copied or serialized.
//!
//! ```
//! use shoal_core::Pool;
//! use shoal_threads::Threads;
//!
//! let backend = Threads::new().thread_name("render").pin_cores(false);
//! let pool = Pool::builder().min(1).max(4).build(backend).unwrap();
//! assert_eq!(pool.map(1..=3, |x: i32| x * 10).unwrap(), vec![10, 20, 30]);
//! ```
//!
//! A thread cannot be killed safely, so `kill` (task timeout, cancel of a
//! running task, terminate) *detaches* the worker: the pool counts it as
//! gone at once ([`ExitCause::Detached`]) and starts a replacement; the
//! thread exits as soon as its task returns, and its late result is
//! dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender};
use shoal_core::ExitCause;
use shoal_core::WorkerId;
use shoal_core::backend::{Backend, Job, ReportSink, WorkKind, Worker, WorkerReport, WorkerSpec};
use shoal_core::function::Registry;
use shoal_core::worker::WorkerRuntime;

#[cfg(feature = "plugin-export")]
mod export;

/// The threads backend and its options.
#[derive(Clone, Debug)]
pub struct Threads {
    name: String,
    pin: bool,
    stack_size: Option<usize>,
    registry: Option<Registry>,
    serialize_all: bool,
}

impl Default for Threads {
    fn default() -> Self {
        Threads {
            name: "shoal-worker".to_string(),
            pin: false,
            stack_size: None,
            registry: None,
            serialize_all: false,
        }
    }
}

impl Threads {
    /// Unpinned threads named `shoal-worker-<id>` with the default stack.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names worker threads `<prefix>-<worker id>`.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.name = prefix.into();
        self
    }

    /// Pins worker `i` to CPU core `i mod cores` (where the OS allows it).
    ///
    /// Worth it when the pool's workers take every core and nothing else
    /// runs there. Unpinned, a pool's workers sometimes end up sharing one
    /// core for the pool's whole life: the caller and the dispatcher spin
    /// on the other core between chunks, so the kernel sees no idle core
    /// to move a worker to. On 2 cores, W1 then takes ~780 µs instead of
    /// ~520 µs; 14 of 180 fresh unpinned pools did so, 0 of 180 pinned
    /// ones. Off by default: pinned workers cannot move away from a core
    /// that other work keeps busy, and pools that pin all start at core 0.
    pub fn pin_cores(mut self, on: bool) -> Self {
        self.pin = on;
        self
    }

    /// Lets the workers run named functions from `registry`
    /// ([`shoal_core::function`]).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Refuses closures, so every task is a named function whose argument
    /// and result are serialized, exactly as a process backend would do,
    /// while still running on threads. Check that a program is ready for
    /// processes, or debug serialization, without leaving the process.
    /// Needs [`Threads::registry`].
    pub fn serialize_all(mut self, on: bool) -> Self {
        self.serialize_all = on;
        self
    }

    /// The stack size of worker threads, in bytes.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }
}

enum Cmd {
    Job(Job),
    Stop,
}

/// What the pool's handle and the thread share.
struct Shared {
    id: WorkerId,
    reports: Arc<dyn ReportSink>,
    /// Set by `kill`: the thread leaves after its current job, silently.
    detached: AtomicBool,
    /// `Exited` goes out exactly once.
    exited: AtomicBool,
}

impl Shared {
    fn exited(&self, cause: ExitCause) {
        if !self.exited.swap(true, Ordering::AcqRel) {
            self.reports.report(WorkerReport::Exited { worker: self.id, pid: None, cause });
        }
    }
}

/// Reports `Vanished` if the worker thread unwinds outside a task.
struct ExitGuard(Arc<Shared>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.exited(ExitCause::Vanished("the worker thread panicked outside a task".into()));
        }
    }
}

struct ThreadWorker {
    tx: Sender<Cmd>,
    shared: Arc<Shared>,
}

impl Worker for ThreadWorker {
    fn send(&mut self, job: Job) {
        if self.tx.send(Cmd::Job(job)).is_err() {
            self.shared.exited(ExitCause::Vanished("the worker thread is gone".into()));
        }
    }

    fn stop(&mut self) {
        if self.tx.send(Cmd::Stop).is_err() {
            self.shared.exited(ExitCause::Stopped);
        }
    }

    fn kill(&mut self) {
        self.shared.detached.store(true, Ordering::Release);
        let _ = self.tx.send(Cmd::Stop);
        self.shared.exited(ExitCause::Detached);
    }
}

fn run_worker(
    spec: WorkerSpec,
    registry: Option<Registry>,
    rx: Receiver<Cmd>,
    shared: Arc<Shared>,
    pin: Option<usize>,
) {
    let _guard = ExitGuard(shared.clone());
    if let Some(i) = pin
        && let Some(cores) = core_affinity::get_core_ids()
        && !cores.is_empty()
    {
        core_affinity::set_for_current(cores[i % cores.len()]);
    }
    let id = spec.id;
    let mut rt = WorkerRuntime::new(spec);
    if let Some(registry) = registry {
        rt = rt.with_registry(registry);
    }
    if let Err(e) = rt.init() {
        shared.exited.store(true, Ordering::Release);
        shared.reports.report(WorkerReport::StartFailed(id, e));
        rt.exit();
        return;
    }
    shared.reports.report(WorkerReport::Ready(id));
    while let Ok(cmd) = shoal_core::wait::recv(&rx, None, shoal_core::wait::SPIN) {
        let Cmd::Job(job) = cmd else { break };
        let task = job.task;
        let outcome = rt.run(job);
        if shared.detached.load(Ordering::Acquire) {
            break;
        }
        shared.reports.report(match outcome {
            Ok(()) => WorkerReport::Done(id, task),
            Err(e) => WorkerReport::Failed(id, task, e),
        });
    }
    rt.exit();
    shared.exited(ExitCause::Stopped);
}

impl Backend for Threads {
    fn name(&self) -> &str {
        "threads"
    }

    fn accepts(&self, kind: WorkKind) -> bool {
        match kind {
            WorkKind::Local => !self.serialize_all,
            WorkKind::Named => self.registry.is_some(),
        }
    }

    fn start_worker(
        &mut self,
        spec: WorkerSpec,
        reports: Arc<dyn ReportSink>,
    ) -> Result<Box<dyn Worker>, String> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            id: spec.id,
            reports,
            detached: AtomicBool::new(false),
            exited: AtomicBool::new(false),
        });
        let mut builder = std::thread::Builder::new().name(format!("{}-{}", self.name, spec.id.0));
        if let Some(bytes) = self.stack_size {
            builder = builder.stack_size(bytes);
        }
        let pin = self.pin.then_some(spec.id.0 as usize);
        let thread_shared = shared.clone();
        let registry = self.registry.clone();
        builder
            .spawn(move || run_worker(spec, registry, rx, thread_shared, pin))
            .map_err(|e| format!("cannot spawn a worker thread: {e}"))?;
        Ok(Box::new(ThreadWorker { tx, shared }))
    }
}
