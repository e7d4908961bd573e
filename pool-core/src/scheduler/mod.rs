//! The scheduler: a sans-IO state machine. Read `README.md` beside this file
//! first; it states the protocol this code implements.
//!
//! Inputs are method calls (`submit`, `worker_ready`, `task_done`,
//! `worker_exited`, `tick`, ...), each carrying the driver's `now`. Outputs are
//! [`Command`]s, taken with [`Scheduler::poll_command`]. The scheduler never
//! blocks, starts no thread and reads no clock, so it runs the same under the
//! native driver, in the browser and in a virtual-time simulation.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::error::{ExitCause, TaskError};
use crate::ids::{TaskId, Time, WorkerId};
use core::time::Duration;

#[cfg(test)]
mod tests;

/// Sizing and recycling rules. Validated by the pool builder; the scheduler
/// trusts them (`1 <= max`, `min <= max`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Workers kept alive even when idle (startAt).
    pub min: usize,
    /// Workers at most (stretchTo).
    pub max: usize,
    /// An idle worker above `min` stops after this long.
    pub idle_timeout: Duration,
    /// Replace a worker after it ran this many tasks.
    pub lifespan: Option<u64>,
    /// Consecutive failed worker starts after which the pool is broken.
    pub max_start_failures: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min: 1,
            max: 1,
            idle_timeout: Duration::from_secs(10),
            lifespan: None,
            max_start_failures: 3,
        }
    }
}

/// Per-task options the scheduler acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskOptions {
    /// Fail (or retry) the task when one attempt runs longer than this.
    pub timeout: Option<Duration>,
    /// Run a failed attempt again this many times (not after `Cancelled`,
    /// `Serialization` or `Broken`).
    pub retries: u32,
}

/// Why a worker is asked to stop gracefully.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// It ran `lifespan` tasks.
    Lifespan,
    /// It was idle longer than `idle_timeout` and the pool is above `min`.
    Idle,
    /// The pool is shutting down.
    Shutdown,
}

/// A pool-level event for observers.
#[derive(Clone, Debug, PartialEq)]
pub enum SchedEvent {
    /// A worker finished starting and is ready for tasks.
    WorkerUp(WorkerId),
    /// A worker is gone.
    WorkerDown(WorkerId, ExitCause),
    /// A worker failed to start.
    WorkerStartFailed(WorkerId, String),
    /// Workers kept failing to start; queued tasks failed with `Broken`.
    Broken(String),
    /// After `close`: every task ended and every worker is gone.
    Drained,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Start a worker with this id.
    StartWorker(WorkerId),
    /// Send attempt `attempt` (1-based) of `task` to `worker`.
    Dispatch {
        /// The task.
        task: TaskId,
        /// The idle worker that takes it.
        worker: WorkerId,
        /// 1 for the first attempt.
        attempt: u32,
    },
    /// Ask a worker to exit after its current task (runs `worker_exit`).
    StopWorker(WorkerId, StopReason),
    /// Abort a worker now: its task was timed out or cancelled, or the pool
    /// terminates. The backend reports its exit later.
    KillWorker(WorkerId),
    /// The task ended: deliver this outcome. `Ok` means the worker's result
    /// stands (the driver already has it); `Err` is the terminal error.
    Finish(TaskId, Result<(), TaskError>),
    /// Tell observers.
    Event(SchedEvent),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TaskState {
    Queued,
    Running {
        worker: WorkerId,
        deadline: Option<Time>,
    },
    /// The worker returned it and moved on; its result is being decoded
    /// ([`Scheduler::task_returned`]). No deadline, nothing to kill.
    Returning {
        worker: WorkerId,
    },
}

#[derive(Clone, Debug)]
struct TaskSlot {
    state: TaskState,
    options: TaskOptions,
    attempts: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WorkerState {
    Starting,
    Idle {
        since: Time,
    },
    Busy(TaskId),
    /// Asked to stop or killed; its exit is pending.
    Leaving,
}

#[derive(Clone, Debug)]
struct WorkerSlot {
    state: WorkerState,
    tasks_run: u64,
}

/// The pool's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Accepting tasks.
    Open,
    /// `close` was called: no new tasks; queued and running ones finish.
    Closing,
    /// Closed and drained, or terminated: every worker is asked to leave.
    Stopped,
}

/// The scheduler. See the module docs and `README.md`.
#[derive(Debug)]
pub struct Scheduler {
    config: Config,
    tasks: HashMap<TaskId, TaskSlot>,
    queue: VecDeque<TaskId>,
    queued: usize,
    workers: BTreeMap<WorkerId, WorkerSlot>,
    /// Idle workers, most recently idle last (dispatch takes the last: warm
    /// caches, and the longest-idle ones shrink first).
    idle: Vec<WorkerId>,
    starting: usize,
    next_worker: u64,
    commands: VecDeque<Command>,
    lifecycle: Lifecycle,
    suspended: bool,
    start_failures: u32,
    broken: Option<String>,
    drained_sent: bool,
    /// After `terminate`: when the workers still leaving are killed (one
    /// stuck in its exit hook must not keep the pool from ending).
    kill_leaving_at: Option<Time>,
}

/// How long `terminate` lets idle workers stop on their own (running their
/// exit hooks) before it kills those still there.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(3);

impl Scheduler {
    /// A scheduler with no workers yet; call [`Scheduler::start`] to bring
    /// up `min` workers.
    pub fn new(config: Config) -> Self {
        Scheduler {
            config,
            tasks: HashMap::new(),
            queue: VecDeque::new(),
            queued: 0,
            workers: BTreeMap::new(),
            idle: Vec::new(),
            starting: 0,
            next_worker: 0,
            commands: VecDeque::new(),
            lifecycle: Lifecycle::Open,
            suspended: false,
            start_failures: 0,
            broken: None,
            drained_sent: false,
            kill_leaving_at: None,
        }
    }

    /// The next command for the driver, if any.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// Brings the pool up to `min` workers.
    pub fn start(&mut self, now: Time) {
        self.pump(now);
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where the pool is in its lifecycle.
    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle
    }

    /// Tasks accepted and not yet ended.
    pub fn pending_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Tasks waiting for a worker.
    pub fn queued_tasks(&self) -> usize {
        self.queued
    }

    /// Workers that are starting, idle or busy (not leaving).
    pub fn live_workers(&self) -> usize {
        self.workers.values().filter(|w| w.state != WorkerState::Leaving).count()
    }

    /// Workers that exist in any state, including those leaving.
    pub fn all_workers(&self) -> usize {
        self.workers.len()
    }

    /// Whether tasks may go to workers (false between `suspend` and `resume`).
    pub fn is_suspended(&self) -> bool {
        self.suspended
    }

    /// Accepts a task with a driver-chosen id (ids must be unique). Returns
    /// false, and does nothing, once the pool is closing or stopped.
    pub fn submit(&mut self, task: TaskId, options: TaskOptions, now: Time) -> bool {
        if self.lifecycle != Lifecycle::Open {
            return false;
        }
        if let Some(why) = &self.broken {
            let err = TaskError::broken(why.clone());
            self.commands.push_back(Command::Finish(task, Err(err)));
            return true;
        }
        self.tasks.insert(task, TaskSlot { state: TaskState::Queued, options, attempts: 0 });
        self.queue.push_back(task);
        self.queued += 1;
        self.pump(now);
        true
    }

    /// A worker finished starting (`worker_init` done).
    pub fn worker_ready(&mut self, worker: WorkerId, now: Time) {
        let Some(slot) = self.workers.get_mut(&worker) else { return };
        if slot.state != WorkerState::Starting {
            return;
        }
        self.starting -= 1;
        self.start_failures = 0;
        slot.state = WorkerState::Idle { since: now };
        self.idle.push(worker);
        self.commands.push_back(Command::Event(SchedEvent::WorkerUp(worker)));
        if self.lifecycle == Lifecycle::Stopped {
            self.stop_worker(worker, StopReason::Shutdown);
        }
        self.pump(now);
    }

    /// A worker could not start. After `max_start_failures` in a row the pool
    /// is broken: queued and later tasks fail with `Broken`, and no more
    /// starts are tried (no respawn storm). A broken pool stays broken.
    pub fn worker_start_failed(&mut self, worker: WorkerId, error: String, now: Time) {
        let Some(slot) = self.workers.remove(&worker) else { return };
        if slot.state == WorkerState::Starting {
            self.starting -= 1;
        }
        self.idle.retain(|w| *w != worker);
        self.commands
            .push_back(Command::Event(SchedEvent::WorkerStartFailed(worker, error.clone())));
        self.start_failures += 1;
        if self.start_failures >= self.config.max_start_failures && self.broken.is_none() {
            self.break_pool(error);
        }
        self.pump(now);
    }

    fn break_pool(&mut self, error: String) {
        self.commands.push_back(Command::Event(SchedEvent::Broken(error.clone())));
        while let Some(task) = self.queue.pop_front() {
            if self.tasks.get(&task).is_some_and(|slot| slot.state == TaskState::Queued) {
                self.tasks.remove(&task);
                self.queued -= 1;
                let err = TaskError::broken(error.clone());
                self.commands.push_back(Command::Finish(task, Err(err)));
            }
        }
        self.broken = Some(error);
    }

    /// The worker returned its task and takes the next one; the task's
    /// `task_done` or `task_failed` follows once its result was decoded.
    pub fn task_returned(&mut self, worker: WorkerId, task: TaskId, now: Time) {
        let running = matches!(
            self.tasks.get(&task),
            Some(TaskSlot { state: TaskState::Running { worker: w, .. }, .. }) if *w == worker
        );
        if running
            && self.release(worker, task, now)
            && let Some(slot) = self.tasks.get_mut(&task)
        {
            slot.state = TaskState::Returning { worker };
        }
        self.pump(now);
    }

    /// Whether `task` was returned and its result is being decoded.
    pub fn is_returning(&self, task: TaskId) -> bool {
        self.tasks.get(&task).is_some_and(|t| matches!(t.state, TaskState::Returning { .. }))
    }

    /// The worker's task returned a result.
    pub fn task_done(&mut self, worker: WorkerId, task: TaskId, now: Time) {
        if self.release(worker, task, now) {
            self.tasks.remove(&task);
            self.commands.push_back(Command::Finish(task, Ok(())));
        }
        self.pump(now);
    }

    /// The worker's task failed (panic, serialization, ...); the worker lives.
    pub fn task_failed(&mut self, worker: WorkerId, task: TaskId, error: TaskError, now: Time) {
        if self.release(worker, task, now) {
            self.fail_or_retry(task, error);
        }
        self.pump(now);
    }

    /// Frees `worker` from `task`. Returns whether the report is current (the
    /// task is still running on that worker, or was returned by it); a late
    /// report after a timeout or cancel is ignored.
    fn release(&mut self, worker: WorkerId, task: TaskId, now: Time) -> bool {
        let current = matches!(
            self.tasks.get(&task),
            Some(TaskSlot {
                state: TaskState::Running { worker: w, .. } | TaskState::Returning { worker: w },
                ..
            }) if *w == worker
        );
        if let Some(slot) = self.workers.get_mut(&worker)
            && slot.state == WorkerState::Busy(task)
        {
            {
                slot.tasks_run += 1;
                let expired = self.config.lifespan.is_some_and(|n| slot.tasks_run >= n);
                if expired {
                    self.stop_worker(worker, StopReason::Lifespan);
                } else if self.lifecycle == Lifecycle::Stopped {
                    self.stop_worker(worker, StopReason::Shutdown);
                } else {
                    slot.state = WorkerState::Idle { since: now };
                    self.idle.push(worker);
                }
            }
        }
        current
    }

    fn fail_or_retry(&mut self, task: TaskId, error: TaskError) {
        let Some(slot) = self.tasks.get_mut(&task) else { return };
        let attempts = slot.attempts;
        if error.is_retryable() && attempts <= slot.options.retries && self.broken.is_none() {
            slot.state = TaskState::Queued;
            self.queue.push_front(task);
            self.queued += 1;
        } else {
            self.tasks.remove(&task);
            self.commands.push_back(Command::Finish(task, Err(error.with_attempts(attempts))));
        }
    }

    /// A worker is gone: it stopped as asked, crashed, was killed or detached.
    /// Its in-flight task (if any) fails with `WorkerLost` or is retried.
    pub fn worker_exited(
        &mut self,
        worker: WorkerId,
        pid: Option<u32>,
        cause: ExitCause,
        now: Time,
    ) {
        let Some(slot) = self.workers.remove(&worker) else { return };
        self.idle.retain(|w| *w != worker);
        match slot.state {
            WorkerState::Starting => {
                self.starting -= 1;
                self.start_failures += 1;
                let why = format!("{worker} exited while starting: {cause}");
                self.commands
                    .push_back(Command::Event(SchedEvent::WorkerStartFailed(worker, why.clone())));
                if self.start_failures >= self.config.max_start_failures && self.broken.is_none() {
                    self.break_pool(why);
                }
            }
            // A worker that left cleanly (it retired itself, e.g. over its
            // memory cap, as the task was sent) never ran the task: it goes
            // back to the front of the queue, no attempt counted.
            WorkerState::Busy(task) if cause == ExitCause::Stopped => {
                if let Some(slot) = self.tasks.get_mut(&task) {
                    slot.attempts = slot.attempts.saturating_sub(1);
                    slot.state = TaskState::Queued;
                    self.queue.push_front(task);
                    self.queued += 1;
                }
            }
            WorkerState::Busy(task) => {
                let err = TaskError::worker_lost(worker, pid, cause.clone());
                self.fail_or_retry(task, err);
            }
            WorkerState::Idle { .. } | WorkerState::Leaving => {}
        }
        self.commands.push_back(Command::Event(SchedEvent::WorkerDown(worker, cause)));
        self.pump(now);
    }

    /// Cancels a task. A queued task is removed without touching a worker; a
    /// running one ends `Cancelled` and its worker is killed (and replaced).
    /// Returns false when the task already ended.
    pub fn cancel(&mut self, task: TaskId, now: Time) -> bool {
        let Some(slot) = self.tasks.remove(&task) else { return false };
        match slot.state {
            TaskState::Queued => self.queued -= 1,
            TaskState::Running { worker, .. } => self.kill_worker(worker),
            TaskState::Returning { .. } => {}
        }
        self.commands.push_back(Command::Finish(task, Err(TaskError::cancelled())));
        self.pump(now);
        true
    }

    /// Cancels a task only if it is still queued (no worker is touched);
    /// returns whether it was. Lazy batches use it for chunks nobody wants.
    pub fn cancel_queued(&mut self, task: TaskId, now: Time) -> bool {
        if self.tasks.get(&task).is_some_and(|t| t.state == TaskState::Queued) {
            self.cancel(task, now)
        } else {
            false
        }
    }

    /// Time passed: time out tasks past their deadline, shrink idle workers.
    pub fn tick(&mut self, now: Time) {
        if self.kill_leaving_at.is_some_and(|at| at <= now) {
            self.kill_leaving_at = None;
            let leaving: Vec<WorkerId> = self
                .workers
                .iter()
                .filter(|(_, s)| s.state == WorkerState::Leaving)
                .map(|(w, _)| *w)
                .collect();
            for w in leaving {
                self.commands.push_back(Command::KillWorker(w));
            }
        }
        let mut expired: Vec<(TaskId, WorkerId, Duration)> = self
            .running()
            .filter_map(|(id, t)| match t.state {
                TaskState::Running { worker, deadline: Some(d) } if d <= now => {
                    Some((id, worker, t.options.timeout.unwrap_or_default()))
                }
                _ => None,
            })
            .collect();
        // Handle them in task order (deterministic replays).
        expired.sort_unstable_by_key(|(task, ..)| *task);
        for (task, worker, after) in expired {
            self.kill_worker(worker);
            self.fail_or_retry(task, TaskError::timeout(after));
        }
        // Retried tasks take idle workers before those are shrunk.
        self.pump(now);
        let mut live = self.live_workers();
        let idle_timeout = self.config.idle_timeout;
        let mut i = 0;
        // `idle` is ordered oldest-idle first.
        while i < self.idle.len() && live > self.config.min {
            let w = self.idle[i];
            match self.workers.get(&w).map(|s| s.state) {
                Some(WorkerState::Idle { since }) if since + idle_timeout <= now => {
                    self.stop_worker(w, StopReason::Idle);
                    live -= 1;
                }
                _ => i += 1,
            }
        }
        self.pump(now);
    }

    /// The running tasks, found through the busy workers: O(workers), not
    /// O(tasks), so a long queue costs nothing here.
    fn running(&self) -> impl Iterator<Item = (TaskId, &TaskSlot)> + '_ {
        self.workers.values().filter_map(|w| match w.state {
            WorkerState::Busy(task) => self.tasks.get(&task).map(|t| (task, t)),
            _ => None,
        })
    }

    /// When the driver should call [`Scheduler::tick`] next, if ever.
    pub fn next_deadline(&self) -> Option<Time> {
        let task_deadline = self
            .running()
            .filter_map(|(_, t)| match t.state {
                TaskState::Running { deadline, .. } => deadline,
                TaskState::Queued | TaskState::Returning { .. } => None,
            })
            .min();
        let shrink = if self.live_workers() > self.config.min {
            self.idle
                .iter()
                .filter_map(|w| match self.workers.get(w).map(|s| s.state) {
                    Some(WorkerState::Idle { since }) => Some(since + self.config.idle_timeout),
                    _ => None,
                })
                .min()
        } else {
            None
        };
        [task_deadline, shrink, self.kill_leaving_at].into_iter().flatten().min()
    }

    /// Stops dispatching; running tasks finish, queued ones wait.
    pub fn suspend(&mut self) {
        self.suspended = true;
    }

    /// Dispatches again after [`Scheduler::suspend`].
    pub fn resume(&mut self, now: Time) {
        self.suspended = false;
        self.pump(now);
    }

    /// No new tasks; the queued and running ones finish, then every worker
    /// stops and [`SchedEvent::Drained`] is emitted.
    pub fn close(&mut self, now: Time) {
        if self.lifecycle == Lifecycle::Open {
            self.lifecycle = Lifecycle::Closing;
        }
        self.pump(now);
    }

    /// Cancels every queued and running task, kills busy workers and stops
    /// idle ones. Every pending task ends `Cancelled`.
    pub fn terminate(&mut self, now: Time) {
        self.lifecycle = Lifecycle::Stopped;
        self.kill_leaving_at.get_or_insert(now + TERMINATE_GRACE);
        let mut ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        ids.sort();
        for task in ids {
            if let Some(slot) = self.tasks.remove(&task) {
                match slot.state {
                    TaskState::Queued => self.queued -= 1,
                    TaskState::Running { worker, .. } => self.kill_worker(worker),
                    TaskState::Returning { .. } => {}
                }
                self.commands.push_back(Command::Finish(task, Err(TaskError::cancelled())));
            }
        }
        self.queue.clear();
        self.pump(now);
    }

    fn stop_worker(&mut self, worker: WorkerId, reason: StopReason) {
        if let Some(slot) = self.workers.get_mut(&worker) {
            if slot.state == WorkerState::Leaving {
                return;
            }
            if slot.state == WorkerState::Starting {
                self.starting -= 1;
            }
            slot.state = WorkerState::Leaving;
            self.idle.retain(|w| *w != worker);
            self.commands.push_back(Command::StopWorker(worker, reason));
        }
    }

    fn kill_worker(&mut self, worker: WorkerId) {
        if let Some(slot) = self.workers.get_mut(&worker) {
            if slot.state == WorkerState::Starting {
                self.starting -= 1;
            }
            slot.state = WorkerState::Leaving;
            self.idle.retain(|w| *w != worker);
            self.commands.push_back(Command::KillWorker(worker));
        }
    }

    /// Dispatch, grow, and finish a close. Called after every input.
    fn pump(&mut self, now: Time) {
        // Dispatch: any idle worker takes the oldest queued task.
        while !self.suspended && self.queued > 0 && !self.idle.is_empty() {
            let Some(task) = self.queue.pop_front() else { break };
            let Some(slot) = self.tasks.get_mut(&task) else { continue };
            if slot.state != TaskState::Queued {
                continue;
            }
            let worker = self.idle.pop().expect("checked non-empty");
            self.queued -= 1;
            slot.attempts += 1;
            let deadline = slot.options.timeout.map(|t| now + t);
            slot.state = TaskState::Running { worker, deadline };
            let attempt = slot.attempts;
            if let Some(w) = self.workers.get_mut(&worker) {
                w.state = WorkerState::Busy(task);
            }
            self.commands.push_back(Command::Dispatch { task, worker, attempt });
        }
        // Keep the queue from holding cancelled ids forever.
        if self.queue.len() > 64 && self.queue.len() > 2 * self.queued {
            let tasks = &self.tasks;
            self.queue.retain(|t| tasks.get(t).is_some_and(|s| s.state == TaskState::Queued));
        }
        if self.lifecycle == Lifecycle::Closing && self.tasks.is_empty() {
            self.lifecycle = Lifecycle::Stopped;
        }
        if self.lifecycle == Lifecycle::Stopped {
            let idle: Vec<WorkerId> = self.idle.drain(..).collect();
            for w in idle {
                self.stop_worker(w, StopReason::Shutdown);
            }
            if self.workers.is_empty() && self.tasks.is_empty() && !self.drained_sent {
                self.drained_sent = true;
                self.commands.push_back(Command::Event(SchedEvent::Drained));
            }
            return;
        }
        if self.broken.is_some() {
            return;
        }
        // Grow: keep `min` workers, and start more (up to `max`) while tasks
        // wait that no starting worker will take.
        let live = self.live_workers();
        let waiting = if self.suspended { 0 } else { self.queued };
        let want = self.config.min.max(live - self.starting + waiting.min(self.config.max));
        let want = want.min(self.config.max);
        let mut live = live;
        while live < want {
            let worker = WorkerId(self.next_worker);
            self.next_worker += 1;
            self.workers.insert(worker, WorkerSlot { state: WorkerState::Starting, tasks_run: 0 });
            self.starting += 1;
            live += 1;
            self.commands.push_back(Command::StartWorker(worker));
        }
    }
}
