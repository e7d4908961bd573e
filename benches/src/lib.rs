//! The workloads of DESIGN.md ("Workloads that every benchmark uses") as
//! plain functions, shared by the criterion suite (`benches/workloads.rs`)
//! and the W6 memory probe (`src/bin/w6-memory.rs`).
//!
//! Every workload takes a [`Runner`]: one *implementation* ready to run it.
//!
//! | implementation | what runs the work |
//! |---|---|
//! | `serial` | a plain loop on the caller's thread |
//! | `rayon` | a private `rayon::ThreadPool` (never the global one), `install` + parallel iterators |
//! | `threads` | a shoal [`Pool`](shoal_core::Pool) on [`shoal_threads::Threads`] |
//! | `threads-plugin` | a shoal pool on the threads backend loaded from its cdylib (feature `plugin`) |
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

mod implementation;
#[cfg(feature = "plugin")]
pub mod plugin;
pub mod workloads;

pub use implementation::{Implementation, Runner, Unavailable};
