//! shoal's process backend: every worker is a child process, so a task that
//! crashes (segfault, `exit()`, SIGKILL from outside, out of memory) fails
//! only itself, and CPU-bound work uses every core whatever the language.
//!
//! # Naming functions
//!
//! A closure cannot cross into another process, so tasks name their function
//! with a [`Function`](shoal_core::function::Function). The same call site
//! runs on the threads backend (a direct call) and here (by name, argument
//! and result serialized with postcard):
//!
//! ```no_run
//! use shoal_core::Pool;
//! use shoal_core::function::{Function, Registry};
//! use shoal_process::Process;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//! static SQUARE: Function<u64, u64> = Function::new("square", square);
//!
//! fn registry() -> Registry {
//!     Registry::new().with(&SQUARE).unwrap()
//! }
//!
//! fn main() {
//!     // First line of main: in a worker process this runs the worker and
//!     // never returns; in the parent it returns at once.
//!     shoal_process::worker_main(&registry());
//!
//!     let pool = Pool::builder().workers(4).build(Process::new()).unwrap();
//!     assert_eq!(pool.map_fn(&SQUARE, 0..10u64).unwrap()[3], 9);
//! }
//! ```
//!
//! By default a worker re-executes the current program ([`Process::new`]);
//! [`Process::program`] runs another executable instead, which calls
//! [`worker_main`] with its own registry (this crate's
//! `shoal-testkit-worker` is one).
//!
//! # What the parent does
//!
//! Each worker is a child connected by a Unix socket pair (the child's end
//! is its fd 3) speaking [`shoal_core::wire`]. The parent runs a writer and
//! a reader thread per worker: the writer sends jobs, so a slow or stuck
//! child never blocks the pool's dispatcher; the reader turns frames into
//! results, messages and reports. Payloads above
//! [`Process::shm_threshold`] travel through shared memory instead of the
//! socket: through the connection's two *segments* (one memfd per
//! direction, mapped by both processes and reused for every payload, of
//! [`Process::segment_size`] bytes; wire protocol 1.1) when they fit, else
//! through one file per payload. When the socket closes, the reader reaps the child and
//! reports how it ended: exit code or signal, pid, worker id. A malformed
//! frame drops the worker (`ExitCause::Protocol`). `kill` (task timeout,
//! cancel, terminate) sends SIGTERM, then SIGKILL after the grace period.
//! Children die with the parent: they get `PR_SET_PDEATHSIG` (Linux) and
//! exit on the socket's EOF. A worker keeps the memory it frees for its
//! next chunk ([`keep_freed_memory`]).

mod child;
#[cfg(feature = "plugin-export")]
mod export;
mod latency;
mod launch;
pub mod library;
mod memory;
mod segment;
mod shm;
mod supervisor;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shoal_core::backend::{Backend, ReportSink, WorkKind, Worker, WorkerSpec};

pub use child::{WorkerHooks, worker_main, worker_main_with};
pub use launch::{Launch, Launcher};
pub use memory::{KEEP_FREED_BYTES, keep_freed_memory};

/// Where a worker's stdout and stderr go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// To the parent's stdout and stderr.
    #[default]
    Inherit,
    /// Discarded.
    Null,
    /// Read by the parent; each line becomes a `Log` message of the task
    /// running on that worker (`"[stdout] ..."`, `"[stderr] ..."`).
    Capture,
}

/// Changes the command of one worker before it starts (environment,
/// working directory, arguments ...).
pub type Configure = Arc<dyn Fn(shoal_core::WorkerId, &mut std::process::Command) + Send + Sync>;

/// The default of [`Process::shm_threshold`]: 64 KiB. Below it a payload
/// is cheaper in the frame (one `send`, no segment bookkeeping); above it
/// the socket's copies in and out of the kernel cost more than one copy
/// into the segment, and a payload beyond the socket's buffer (~200 KiB)
/// takes several wake-ups of both sides. P-W1's chunks of 10k-25k `u64`
/// (80-200 KB) went through the socket at the old 256 KiB: median of six
/// interleaved runs 0.75 ms there, 0.62 ms at 64 KiB, 0.64 ms at 16 KiB.
pub const DEFAULT_SHM_THRESHOLD: usize = 64 * 1024;

/// The default of [`Process::segment_size`]: 1 GiB.
pub const DEFAULT_SEGMENT_SIZE: usize = 1 << 30;

/// The process backend and its options.
#[derive(Clone)]
pub struct Process {
    pub(crate) program: Option<PathBuf>,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) current_dir: Option<PathBuf>,
    pub(crate) configure: Option<Configure>,
    pub(crate) launcher: Option<Arc<dyn Launcher>>,
    pub(crate) output: Output,
    pub(crate) pin: bool,
    pub(crate) grace: Duration,
    pub(crate) shm_threshold: usize,
    pub(crate) segment_size: usize,
    pub(crate) max_frame: u32,
    pub(crate) max_memory: Option<u64>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("program", &self.program)
            .field("output", &self.output)
            .field("pin", &self.pin)
            .field("grace", &self.grace)
            .field("shm_threshold", &self.shm_threshold)
            .field("segment_size", &self.segment_size)
            .finish_non_exhaustive()
    }
}

impl Default for Process {
    fn default() -> Self {
        Process {
            program: None,
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
            configure: None,
            launcher: None,
            output: Output::Inherit,
            pin: false,
            grace: Duration::from_millis(500),
            shm_threshold: DEFAULT_SHM_THRESHOLD,
            segment_size: DEFAULT_SEGMENT_SIZE,
            max_frame: shoal_core::wire::DEFAULT_MAX_FRAME,
            max_memory: None,
        }
    }
}

impl Process {
    /// Workers re-execute the current program, which must call
    /// [`worker_main`] first thing in `main`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Workers run this executable instead (it calls [`worker_main`]).
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = Some(path.into());
        self
    }

    /// Extra command-line arguments for every worker.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// An environment variable for every worker.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The working directory of every worker.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Adjusts each worker's command (per-worker environment, directory,
    /// arguments); runs in the parent before the worker starts.
    pub fn configure(
        mut self,
        f: impl Fn(shoal_core::WorkerId, &mut std::process::Command) + Send + Sync + 'static,
    ) -> Self {
        self.configure = Some(Arc::new(f));
        self
    }

    /// Starts workers with `launcher` instead of running the program (see
    /// [`Launcher`]). Output capture and `configure` need the program.
    pub fn launcher(mut self, launcher: Arc<dyn Launcher>) -> Self {
        self.launcher = Some(launcher);
        self
    }

    /// Where workers' stdout and stderr go.
    pub fn output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }

    /// Pins worker `i` to CPU core `i mod cores`.
    pub fn pin_cores(mut self, on: bool) -> Self {
        self.pin = on;
        self
    }

    /// How long a worker gets between SIGTERM and SIGKILL.
    pub fn grace_period(mut self, d: Duration) -> Self {
        self.grace = d;
        self
    }

    /// Payloads of at least this many bytes travel through shared memory
    /// (default [`DEFAULT_SHM_THRESHOLD`]).
    pub fn shm_threshold(mut self, bytes: usize) -> Self {
        self.shm_threshold = bytes;
        self
    }

    /// The size of each of a worker's two shared-memory segments (one for
    /// arguments, one for results; default 1 GiB of address space, backed
    /// only by the pages payloads use, and at most 8 MiB of them kept after
    /// a larger payload). Payloads of at least [`shm_threshold`] bytes that
    /// fit go through a segment, larger ones through a file each. 0 turns
    /// segments off. Linux only (memfds); elsewhere files are used.
    ///
    /// [`shm_threshold`]: Self::shm_threshold
    pub fn segment_size(mut self, bytes: usize) -> Self {
        self.segment_size = bytes;
        self
    }

    /// Recycles a worker whose resident memory exceeds `bytes` after a task
    /// (RELIABILITY row 15): it finishes the task, exits cleanly, and a
    /// fresh worker takes its place. Linux only (`/proc/self/statm`).
    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// The largest frame accepted from a worker (a bigger one drops it).
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.max_frame = bytes;
        self
    }
}

impl Backend for Process {
    fn name(&self) -> &str {
        "process"
    }

    fn accepts(&self, kind: WorkKind) -> bool {
        kind == WorkKind::Named
    }

    fn start_worker(
        &mut self,
        spec: WorkerSpec,
        reports: Arc<dyn ReportSink>,
    ) -> Result<Box<dyn Worker>, String> {
        if spec.init.is_some() || spec.exit.is_some() {
            return Err("worker_init and worker_exit closures cannot run in worker processes; \
                 the process backend runs named functions only"
                .to_string());
        }
        supervisor::start(self, spec.id, reports).map(|w| Box::new(w) as Box<dyn Worker>)
    }

    /// No spin: the pool's spinning threads took cores from the worker
    /// processes (py-W1 4% and py-W6 5% faster without, the parent's CPU
    /// 8-12% less; 8 interleaved rounds each).
    fn spin(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::ZERO)
    }
}
