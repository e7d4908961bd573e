//! shoal's scheduling core.
//!
//! * [`scheduler`]: the sans-IO state machine that decides which worker runs
//!   which task (builds for `wasm32-unknown-unknown`).
//! * [`backend`]: the object-safe traits every backend implements (threads,
//!   processes, Web Workers), and how each kind maps onto them.
//! * [`Pool`] (feature `native`): the pool users hold, driven by one
//!   dispatcher thread; tasks, handles, batches, scopes, events, insights.
//! * [`task`]: what a running task can ask and tell (worker id, state,
//!   progress, log, data).
//! * [`testkit`] (feature `testkit`): the conformance suite every backend
//!   runs with one call.
//! * [`plugin`] (feature `plugin`): load a backend from a cdylib at run time.
//!
//! ```
//! use shoal_core::Pool;
//! use shoal_threads::Threads;
//!
//! let pool = Pool::builder().workers(2).build(Threads::new()).unwrap();
//! let squares = pool.map(0..1000u64, |x| x * x).unwrap();
//! assert_eq!(squares[999], 998_001);
//! let handle = pool.submit(|| "done").unwrap();
//! assert_eq!(handle.wait().unwrap(), "done");
//! ```

pub mod backend;
pub mod chunking;
pub mod error;
pub mod function;
pub mod ids;
pub mod scheduler;
pub mod stats;
pub mod task;
pub mod wire;
pub mod worker;

#[cfg(feature = "native")]
mod pool;
#[cfg(feature = "native")]
pub use pool::wait;
#[cfg(feature = "native")]
pub use pool::{
    BatchBuilder, BatchId, ChunkFn, ChunkOutcome, Chunks, Codec, DecodeChunk, EncodeChunk, Feeder,
    INPUT_BUDGET, Imap, LAZY_CHUNK_CAP, MapUnordered, Message, Messages, OnMessage, OpenItems,
    Pool, PoolBuilder, PoolEvent, Scope, ScopedHandle, TaskHandle,
};

#[cfg(feature = "testkit")]
pub mod testkit;

#[cfg(feature = "plugin")]
pub mod plugin;

pub use error::{
    BatchError, BuildError, ExitCause, SubmitError, SubmitRefusal, TaskError, TaskErrorKind,
};
pub use ids::{TaskId, Time, WorkerId};
pub use scheduler::TaskOptions;
pub use stats::{Insights, WorkerInsight};

/// The README's Rust code, run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
