//! Identifiers and the scheduler's notion of time.

use core::fmt;
use core::time::Duration;

/// Identifies one worker of a pool. Ids are never reused within a pool, so a
/// replacement worker has a new id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerId(pub u64);

/// Identifies one task of a pool. Ids are never reused within a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub u64);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker {}", self.0)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}", self.0)
    }
}

/// A point in time as the driver sees it: the time elapsed since the pool
/// started. The scheduler has no clock of its own; every input carries `now`.
/// Natively the driver reads `Instant`; in the browser, `performance.now()`;
/// in simulations, a virtual clock.
pub type Time = Duration;
