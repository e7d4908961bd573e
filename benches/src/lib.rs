//! The workloads of DESIGN.md ("Workloads that every benchmark uses") as
//! plain functions, shared by the criterion suites (`benches/workloads.rs`
//! in-process, `benches/process.rs` across processes), the W6 memory probe
//! (`src/bin/w6-memory.rs`), the chaos run (`src/bin/chaos.rs`) and `ab`
//! (`src/bin/ab.rs`), which times shoal and its peer in alternating rounds
//! and reports the median of the per-round ratios, steadier than separate
//! criterion groups when other programs share the cores.
//!
//! Every workload takes a [`Runner`]: one *implementation* ready to run it.
//!
//! | implementation | what runs the work |
//! |---|---|
//! | `serial` | a plain loop on the caller's thread |
//! | `rayon` | a private `rayon::ThreadPool` (never the global one), `install` + parallel iterators |
//! | `threads` | a shoal [`Pool`](shoal_core::Pool) on [`shoal_threads::Threads`] |
//! | `threads-plugin` | a shoal pool on the threads backend loaded from its cdylib (feature `plugin`) |
//! | `process` | a shoal pool on [`shoal_process::Process`]: worker processes running named functions |
//!
//! [`workloads`] runs closures, so every in-process implementation
//! ([`Implementation::available`]); [`named`] runs the same work through
//! named functions (`map_fn`, `imap_fn`, `submit_fn`), which is what the
//! process backend can run, and runs on every implementation. A program
//! that starts `process` pools calls
//! `shoal_process::worker_main(&named::registry())` first in `main`
//! (`benches/process.rs`, the `w6-memory` and `chaos` binaries).
//!
//! ```
//! use shoal_benches::{Implementation, Runner, workloads};
//!
//! let input = workloads::w1_input(1000);
//! for imp in Implementation::available() {
//!     let Ok(runner) = Runner::new(imp, 2) else { continue };
//!     assert_eq!(workloads::w1(&runner, &input)[999], 999 * 999);
//! }
//! ```

pub mod chaos;
mod implementation;
pub mod named;
#[cfg(feature = "plugin")]
pub mod plugin;
pub mod workloads;

pub use implementation::{Implementation, Runner, Unavailable};
