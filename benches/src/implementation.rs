//! The implementations a workload can run on, and how to build them.

use std::fmt;

use shoal_core::Pool;
use shoal_threads::Threads;

/// One way to run a workload; [`Implementation::name`] is the benchmark id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Implementation {
    /// A plain loop on the caller's thread.
    Serial,
    /// A private `rayon::ThreadPool` (`install` + parallel iterators).
    Rayon,
    /// A shoal pool on the statically linked threads backend.
    Threads,
    /// A shoal pool on the threads backend loaded from its cdylib at run
    /// time (only with the `plugin` feature).
    ThreadsPlugin,
    /// A shoal pool on the process backend: workers re-execute the current
    /// program, which must call
    /// `shoal_process::worker_main(&named::registry())` first in `main`.
    /// Runs named functions only ([`crate::named`]).
    Process,
}

impl Implementation {
    /// Every implementation, whether built in or not.
    pub const ALL: [Implementation; 5] = [
        Implementation::Serial,
        Implementation::Rayon,
        Implementation::Threads,
        Implementation::ThreadsPlugin,
        Implementation::Process,
    ];

    /// The in-process implementations this build knows how to run (they
    /// run closures, so every workload of [`crate::workloads`]): all but
    /// `process`, and but `threads-plugin` unless the `plugin` feature is
    /// on. Whether the plugin library exists is only found out by
    /// [`Runner::new`].
    pub fn available() -> Vec<Implementation> {
        Self::ALL
            .into_iter()
            .filter(|i| *i != Implementation::Process)
            .filter(|i| *i != Implementation::ThreadsPlugin || cfg!(feature = "plugin"))
            .collect()
    }

    /// The name used as benchmark id and on command lines.
    pub fn name(self) -> &'static str {
        match self {
            Implementation::Serial => "serial",
            Implementation::Rayon => "rayon",
            Implementation::Threads => "threads",
            Implementation::ThreadsPlugin => "threads-plugin",
            Implementation::Process => "process",
        }
    }

    /// The implementation called `name`, if any.
    pub fn from_name(name: &str) -> Option<Implementation> {
        Self::ALL.into_iter().find(|i| i.name() == name)
    }

    /// Whether this implementation is a shoal pool.
    pub fn is_shoal(self) -> bool {
        matches!(
            self,
            Implementation::Threads | Implementation::ThreadsPlugin | Implementation::Process
        )
    }
}

impl fmt::Display for Implementation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an implementation cannot run here (feature off, plugin library
/// missing, pool failed to build); one line, meant for a notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// An implementation, built and ready to run workloads. Build it once and
/// reuse it: building starts threads.
pub enum Runner {
    /// Runs on the caller's thread.
    Serial,
    /// A private rayon pool.
    Rayon(rayon::ThreadPool),
    /// A shoal pool (`threads`, `threads-plugin` or `process`).
    Shoal(Pool),
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Runner::Serial => f.write_str("Serial"),
            Runner::Rayon(p) => {
                f.debug_struct("Rayon").field("threads", &p.current_num_threads()).finish()
            }
            Runner::Shoal(p) => f.debug_tuple("Shoal").field(p).finish(),
        }
    }
}

impl Runner {
    /// Builds `implementation` with `workers` workers (ignored by `serial`).
    /// `process` starts worker processes that re-execute this program (see
    /// [`Implementation::Process`]).
    pub fn new(implementation: Implementation, workers: usize) -> Result<Runner, Unavailable> {
        match implementation {
            Implementation::Serial => Ok(Runner::Serial),
            Implementation::Rayon => rayon_pool(workers).map(Runner::Rayon),
            Implementation::Threads => threads_pool(workers).map(Runner::Shoal),
            Implementation::ThreadsPlugin => plugin_pool(workers).map(Runner::Shoal),
            Implementation::Process => crate::named::process_pool(workers).map(Runner::Shoal),
        }
    }

    /// The shoal pool, if this is one.
    pub fn pool(&self) -> Option<&Pool> {
        match self {
            Runner::Shoal(pool) => Some(pool),
            _ => None,
        }
    }
}

/// A private rayon pool of `threads` threads (a library never calls
/// `build_global`, see DESIGN.md).
pub(crate) fn rayon_pool(threads: usize) -> Result<rayon::ThreadPool, Unavailable> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("rayon-{i}"))
        .build()
        .map_err(|e| Unavailable(format!("rayon: {e}")))
}

/// A shoal pool of `workers` on the statically linked threads backend.
pub(crate) fn threads_pool(workers: usize) -> Result<Pool, Unavailable> {
    Pool::builder()
        .workers(workers)
        .build(Threads::new())
        .map_err(|e| Unavailable(format!("threads: {e}")))
}

/// A shoal pool of `workers` on the threads backend loaded from its cdylib.
#[cfg(feature = "plugin")]
pub(crate) fn plugin_pool(workers: usize) -> Result<Pool, Unavailable> {
    let backend = crate::plugin::load()?;
    Pool::builder()
        .workers(workers)
        .build_boxed(backend)
        .map_err(|e| Unavailable(format!("threads-plugin: {e}")))
}

/// Without the `plugin` feature there is no `threads-plugin`.
#[cfg(not(feature = "plugin"))]
pub(crate) fn plugin_pool(_workers: usize) -> Result<Pool, Unavailable> {
    Err(Unavailable("threads-plugin: shoal-benches was built without the `plugin` feature".into()))
}
