//! Pool-level events for observers (GUIs, loggers): workers coming and
//! going, tasks starting and ending, batch progress.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender};

use crate::error::ExitCause;
use crate::ids::{TaskId, WorkerId};
use crate::scheduler::SchedEvent;

/// Identifies one batch (`map`, `imap`, ...) of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchId(pub u64);

/// Something that happened in the pool.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum PoolEvent {
    /// A worker is ready.
    WorkerUp(WorkerId),
    /// A worker is gone.
    WorkerDown {
        /// The worker.
        worker: WorkerId,
        /// How it went.
        cause: ExitCause,
    },
    /// A worker failed to start.
    WorkerStartFailed {
        /// The worker.
        worker: WorkerId,
        /// Why.
        error: String,
    },
    /// A task (or a chunk of a batch) went to a worker.
    TaskStarted {
        /// The task.
        task: TaskId,
        /// The worker.
        worker: WorkerId,
    },
    /// A task (or chunk) ended.
    TaskFinished {
        /// The task.
        task: TaskId,
        /// Whether it returned a result.
        ok: bool,
    },
    /// One item of a batch ended (in completion order).
    BatchResult {
        /// The batch.
        batch: BatchId,
        /// The item's position in the input.
        index: usize,
        /// Whether it returned a result.
        ok: bool,
    },
    /// A batch advanced.
    BatchProgress {
        /// The batch.
        batch: BatchId,
        /// Items ended so far.
        done: usize,
        /// Items in the batch, when known.
        total: Option<usize>,
        /// `done / total` in `[0, 1]`, when the total is known.
        fraction: Option<f32>,
    },
    /// A batch ended: every item has its result or error.
    BatchFinished(BatchId),
    /// Workers kept failing to start; the pool fails tasks with `Broken`.
    Broken(String),
    /// After close or terminate: every task ended and every worker is gone.
    Finished,
}

impl From<SchedEvent> for PoolEvent {
    fn from(e: SchedEvent) -> Self {
        match e {
            SchedEvent::WorkerUp(w) => PoolEvent::WorkerUp(w),
            SchedEvent::WorkerDown(worker, cause) => PoolEvent::WorkerDown { worker, cause },
            SchedEvent::WorkerStartFailed(worker, error) => {
                PoolEvent::WorkerStartFailed { worker, error }
            }
            SchedEvent::Broken(e) => PoolEvent::Broken(e),
            SchedEvent::Drained => PoolEvent::Finished,
        }
    }
}

/// Fans events out to subscribers; costs one atomic load when nobody
/// listens.
#[derive(Default)]
pub(crate) struct EventHub {
    active: AtomicBool,
    subscribers: Mutex<Vec<Sender<PoolEvent>>>,
}

impl EventHub {
    pub(crate) fn subscribe(&self) -> Receiver<PoolEvent> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.push(tx);
        self.active.store(true, Ordering::Release);
        rx
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Sends the event made by `make` to every live subscriber.
    pub(crate) fn emit(&self, make: impl FnOnce() -> PoolEvent) {
        if !self.is_active() {
            return;
        }
        let event = make();
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| s.send(event.clone()).is_ok());
        if subs.is_empty() {
            self.active.store(false, Ordering::Release);
        }
    }
}
