//! Per-worker insights: tasks run, time starting, busy and idle, and the
//! classic "total time spent in each worker" table.

use core::fmt;
use core::time::Duration;

use crate::ids::{Time, WorkerId};

/// What one worker did.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerInsight {
    /// The worker.
    pub worker: WorkerId,
    /// Tasks (or chunks) it ran to an end.
    pub tasks: u64,
    /// Time from its start command to ready (`worker_init`).
    pub init: Duration,
    /// Time running tasks.
    pub busy: Duration,
    /// Time ready without a task.
    pub idle: Duration,
    /// Whether it is still alive.
    pub alive: bool,
}

impl WorkerInsight {
    /// `busy / (busy + idle)`, in `[0, 1]`.
    pub fn utilisation(&self) -> f64 {
        let total = (self.busy + self.idle).as_secs_f64();
        if total == 0.0 { 0.0 } else { self.busy.as_secs_f64() / total }
    }
}

/// Insights of a pool: one row per worker it ever had.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Insights {
    /// The workers, by id.
    pub workers: Vec<WorkerInsight>,
}

impl Insights {
    /// Tasks run by all workers.
    pub fn total_tasks(&self) -> u64 {
        self.workers.iter().map(|w| w.tasks).sum()
    }
    /// Busy time of all workers over their busy + idle time.
    pub fn utilisation(&self) -> f64 {
        let busy: f64 = self.workers.iter().map(|w| w.busy.as_secs_f64()).sum();
        let idle: f64 = self.workers.iter().map(|w| w.idle.as_secs_f64()).sum();
        if busy + idle == 0.0 { 0.0 } else { busy / (busy + idle) }
    }
}

impl fmt::Display for Insights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>8} {:>8} {:>12} {:>12} {:>12} {:>7}  state",
            "worker", "tasks", "init", "busy", "idle", "util"
        )?;
        for w in &self.workers {
            writeln!(
                f,
                "{:>8} {:>8} {:>12.3?} {:>12.3?} {:>12.3?} {:>6.1}%  {}",
                w.worker.0,
                w.tasks,
                w.init,
                w.busy,
                w.idle,
                100.0 * w.utilisation(),
                if w.alive { "alive" } else { "gone" }
            )?;
        }
        write!(
            f,
            "total: {} tasks on {} workers, utilisation {:.1}%",
            self.total_tasks(),
            self.workers.len(),
            100.0 * self.utilisation()
        )
    }
}

/// Accumulates insights from the driver's timeline (sans-IO: times come in).
#[derive(Debug, Default)]
pub struct StatsBook {
    rows: std::collections::BTreeMap<WorkerId, Row>,
}

#[derive(Debug)]
struct Row {
    insight: WorkerInsight,
    since: Time,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Starting,
    Idle,
    Busy,
    Gone,
}

impl StatsBook {
    /// A worker was asked to start.
    pub fn starting(&mut self, worker: WorkerId, now: Time) {
        let insight = WorkerInsight {
            worker,
            tasks: 0,
            init: Duration::ZERO,
            busy: Duration::ZERO,
            idle: Duration::ZERO,
            alive: true,
        };
        self.rows.insert(worker, Row { insight, since: now, phase: Phase::Starting });
    }

    fn switch(&mut self, worker: WorkerId, to: Phase, now: Time) -> Option<&mut WorkerInsight> {
        let row = self.rows.get_mut(&worker)?;
        let spent = now.saturating_sub(row.since);
        match row.phase {
            Phase::Starting => row.insight.init += spent,
            Phase::Idle => row.insight.idle += spent,
            Phase::Busy => row.insight.busy += spent,
            Phase::Gone => return None,
        }
        row.since = now;
        row.phase = to;
        Some(&mut row.insight)
    }

    /// The worker is ready.
    pub fn ready(&mut self, worker: WorkerId, now: Time) {
        self.switch(worker, Phase::Idle, now);
    }
    /// The worker took a task.
    pub fn busy(&mut self, worker: WorkerId, now: Time) {
        self.switch(worker, Phase::Busy, now);
    }
    /// The worker's task ended.
    pub fn task_ended(&mut self, worker: WorkerId, now: Time) {
        let busy = self.rows.get(&worker).is_some_and(|r| r.phase == Phase::Busy);
        if busy && let Some(i) = self.switch(worker, Phase::Idle, now) {
            i.tasks += 1;
        }
    }
    /// The worker is gone.
    pub fn gone(&mut self, worker: WorkerId, now: Time) {
        if let Some(i) = self.switch(worker, Phase::Gone, now) {
            i.alive = false;
        }
    }
    /// A snapshot as of `now`.
    pub fn snapshot(&self, now: Time) -> Insights {
        let workers = self
            .rows
            .values()
            .map(|r| {
                let mut i = r.insight.clone();
                let spent = now.saturating_sub(r.since);
                match r.phase {
                    Phase::Starting => i.init += spent,
                    Phase::Idle => i.idle += spent,
                    Phase::Busy => i.busy += spent,
                    Phase::Gone => {}
                }
                i
            })
            .collect();
        Insights { workers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn book_accounts_every_phase() {
        let mut b = StatsBook::default();
        let w = WorkerId(0);
        b.starting(w, ms(0));
        b.ready(w, ms(10));
        b.busy(w, ms(15));
        b.task_ended(w, ms(45));
        b.gone(w, ms(50));
        let i = b.snapshot(ms(100));
        let row = &i.workers[0];
        assert_eq!((row.tasks, row.init, row.busy, row.idle), (1, ms(10), ms(30), ms(10)));
        assert!(!row.alive);
        assert!((row.utilisation() - 0.75).abs() < 1e-9);
        let table = i.to_string();
        assert!(table.contains("total: 1 tasks on 1 workers"), "{table}");
    }
}
