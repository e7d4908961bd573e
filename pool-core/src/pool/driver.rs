//! The native driver: one dispatcher thread per pool runs the scheduler.
//!
//! Everything that happens to the pool arrives on one channel as a [`Msg`]:
//! API calls (submit, cancel, close, ...) and worker reports. The thread
//! feeds each into the scheduler, then carries out the commands it emits,
//! sleeping until the next message or the scheduler's next deadline.
//! Results of in-process tasks do not pass through here: workers write them
//! into the task's handle and only report that they did.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::backend::{
    Backend, Job, LocalWork, ReportSink, TaskSink, Work, Worker, WorkerReport, WorkerSpec,
};
use crate::ids::{TaskId, Time, WorkerId};
use crate::scheduler::{Command, SchedEvent, Scheduler, TaskOptions};
use crate::stats::{Insights, StatsBook};

use super::events::{EventHub, PoolEvent};
use super::handle::TaskEnd;

/// How the driver gets the work of each attempt.
pub(crate) enum WorkSource {
    /// Runs once (`FnOnce`); no retries.
    Once(Option<LocalWork>),
    /// Can run again for a retry.
    Repeat(Arc<dyn Fn() + Send + Sync>),
    /// A named function and its serialized chunk of arguments.
    Named { function: &'static str, argument: Arc<Vec<u8>> },
}

pub(crate) struct Submission {
    pub id: TaskId,
    pub options: TaskOptions,
    pub work: WorkSource,
    pub end: Arc<dyn TaskEnd>,
}

pub(crate) enum Msg {
    Submit(Submission),
    Cancel(TaskId),
    /// Cancel only if still queued (lazy batches dropping unwanted chunks).
    CancelQueued(TaskId),
    Suspend,
    Resume,
    Close,
    Terminate,
    Report(WorkerReport),
    Insights(Sender<Insights>),
    LiveWorkers(Sender<usize>),
}

/// A cheap handle for sending to the driver.
#[derive(Clone)]
pub(crate) struct DriverLink {
    tx: Sender<Msg>,
}

impl DriverLink {
    pub(crate) fn send(&self, msg: Msg) {
        // The driver outlives every link that matters; after it drained,
        // there is nobody left to tell.
        let _ = self.tx.send(msg);
    }
    pub(crate) fn cancel(&self, task: TaskId) {
        self.send(Msg::Cancel(task));
    }
}

struct Reports(Sender<Msg>);

impl ReportSink for Reports {
    fn report(&self, report: WorkerReport) {
        let _ = self.0.send(Msg::Report(report));
    }
}

/// Set when the pool drained after close/terminate; `join` waits on it.
#[derive(Default)]
pub(crate) struct Latch {
    done: Mutex<bool>,
    cond: Condvar,
    flag: AtomicBool,
}

impl Latch {
    pub(crate) fn set(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.flag.store(true, Ordering::Release);
        self.cond.notify_all();
    }
    pub(crate) fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
    pub(crate) fn wait(&self) {
        let mut d = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while !*d {
            d = self.cond.wait(d).unwrap_or_else(|e| e.into_inner());
        }
    }
}

struct TaskEntry {
    work: WorkSource,
    end: Arc<dyn TaskEnd>,
}

pub(crate) struct Hooks {
    pub init: Option<crate::backend::InitHook>,
    pub exit: Option<crate::backend::ExitHook>,
}

pub(crate) struct Driver {
    sched: Scheduler,
    backend: Box<dyn Backend>,
    rx: Receiver<Msg>,
    reports: Arc<dyn ReportSink>,
    start: Instant,
    workers: HashMap<WorkerId, Box<dyn Worker>>,
    tasks: HashMap<TaskId, TaskEntry>,
    hooks: Hooks,
    stats: StatsBook,
    events: Arc<EventHub>,
    drained: Arc<Latch>,
    final_insights: Arc<Mutex<Option<Insights>>>,
    /// How long a wait for the next message spins (`Backend::spin`).
    spin: Duration,
}

/// Creates the channel and the link to it.
pub(crate) fn channel() -> (DriverLink, Sender<Msg>, Receiver<Msg>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    (DriverLink { tx: tx.clone() }, tx, rx)
}

/// How long the pool's threads spin in their waits for `backend`.
pub(crate) fn spin_of(backend: &dyn Backend) -> Duration {
    backend.spin().unwrap_or(super::wait::SPIN)
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        sched: Scheduler,
        backend: Box<dyn Backend>,
        tx: Sender<Msg>,
        rx: Receiver<Msg>,
        hooks: Hooks,
        events: Arc<EventHub>,
        drained: Arc<Latch>,
        final_insights: Arc<Mutex<Option<Insights>>>,
    ) -> Self {
        Driver {
            spin: spin_of(backend.as_ref()),
            sched,
            backend,
            rx,
            reports: Arc::new(Reports(tx)),
            start: Instant::now(),
            workers: HashMap::new(),
            tasks: HashMap::new(),
            hooks,
            stats: StatsBook::default(),
            events,
            drained,
            final_insights,
        }
    }

    fn now(&self) -> Time {
        self.start.elapsed()
    }

    /// The dispatcher thread's loop; returns once the pool drained.
    pub(crate) fn run(mut self) {
        let now = self.now();
        self.sched.start(now);
        self.run_commands();
        while !self.drained.is_set() {
            let deadline = self.sched.next_deadline().map(|d| self.start + d);
            let msg = match super::wait::recv(&self.rx, deadline, self.spin) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if let Some(m) = msg {
                self.handle(m);
                self.run_commands();
            }
            if let Some(d) = self.sched.next_deadline() {
                let now = self.now();
                if d <= now {
                    self.sched.tick(now);
                    self.run_commands();
                }
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        let now = self.now();
        match msg {
            Msg::Submit(s) => {
                let id = s.id;
                self.tasks.insert(id, TaskEntry { work: s.work, end: s.end });
                if !self.sched.submit(id, s.options, now)
                    && let Some(e) = self.tasks.remove(&id)
                {
                    e.end.fail(crate::error::TaskError::cancelled());
                }
            }
            Msg::Cancel(t) => {
                self.sched.cancel(t, now);
            }
            Msg::CancelQueued(t) => {
                self.sched.cancel_queued(t, now);
            }
            Msg::Suspend => self.sched.suspend(),
            Msg::Resume => self.sched.resume(now),
            Msg::Close => self.sched.close(now),
            Msg::Terminate => self.sched.terminate(now),
            Msg::Insights(reply) => {
                let _ = reply.send(self.stats.snapshot(now));
            }
            Msg::LiveWorkers(reply) => {
                let _ = reply.send(self.sched.live_workers());
            }
            Msg::Report(r) => match r {
                WorkerReport::Ready(w) => self.sched.worker_ready(w, now),
                WorkerReport::StartFailed(w, e) => self.sched.worker_start_failed(w, e, now),
                WorkerReport::Returned(w, t) => {
                    self.stats.task_ended(w, now);
                    self.sched.task_returned(w, t, now);
                }
                // After `Returned` the worker may be busy with its next task:
                // its busy time already ended.
                WorkerReport::Done(w, t) => {
                    if !self.sched.is_returning(t) {
                        self.stats.task_ended(w, now);
                    }
                    self.sched.task_done(w, t, now);
                }
                WorkerReport::Failed(w, t, e) => {
                    if !self.sched.is_returning(t) {
                        self.stats.task_ended(w, now);
                    }
                    self.sched.task_failed(w, t, e, now);
                }
                WorkerReport::Exited { worker, pid, cause } => {
                    self.sched.worker_exited(worker, pid, cause, now)
                }
            },
        }
    }

    fn run_commands(&mut self) {
        while let Some(cmd) = self.sched.poll_command() {
            let now = self.now();
            match cmd {
                Command::StartWorker(w) => {
                    self.stats.starting(w, now);
                    let spec = WorkerSpec {
                        id: w,
                        init: self.hooks.init.clone(),
                        exit: self.hooks.exit.clone(),
                    };
                    match self.backend.start_worker(spec, self.reports.clone()) {
                        Ok(worker) => {
                            self.workers.insert(w, worker);
                        }
                        Err(e) => {
                            self.stats.gone(w, now);
                            self.sched.worker_start_failed(w, e, now);
                        }
                    }
                }
                Command::Dispatch { task, worker, attempt } => self.dispatch(task, worker, attempt),
                Command::StopWorker(w, _) => {
                    if let Some(worker) = self.workers.get_mut(&w) {
                        worker.stop();
                    }
                }
                Command::KillWorker(w) => {
                    if let Some(worker) = self.workers.get_mut(&w) {
                        worker.kill();
                    }
                }
                Command::Finish(t, outcome) => {
                    if let Some(entry) = self.tasks.remove(&t)
                        && let Err(e) = &outcome
                    {
                        entry.end.fail(e.clone());
                    }
                    self.events.emit(|| PoolEvent::TaskFinished { task: t, ok: outcome.is_ok() });
                }
                Command::Event(e) => self.on_event(e, now),
            }
        }
    }

    fn dispatch(&mut self, task: TaskId, worker: WorkerId, attempt: u32) {
        let Some(entry) = self.tasks.get_mut(&task) else { return };
        let work: Work = match &mut entry.work {
            WorkSource::Once(w) => Work::Local(match w.take() {
                Some(w) => w,
                // A once-only task cannot run again; the scheduler never
                // retries it (retries = 0), so this is unreachable in
                // practice. Fail it rather than hang.
                None => Box::new(|| -> () { panic!("this task cannot run twice") }),
            }),
            WorkSource::Repeat(f) => {
                let f = f.clone();
                Work::Local(Box::new(move || f()))
            }
            WorkSource::Named { function, argument } => {
                // Shared until the task ends: a retry, or a worker that
                // retired before reading the job, needs them again.
                Work::Named { function: function.to_string(), argument: Arc::clone(argument) }
            }
        };
        entry.end.started(worker);
        let sink: Arc<dyn TaskSink> = entry.end.clone();
        self.stats.busy(worker, self.now());
        self.events.emit(|| PoolEvent::TaskStarted { task, worker });
        if let Some(w) = self.workers.get_mut(&worker) {
            w.send(Job { task, attempt, work, sink });
        }
    }

    fn on_event(&mut self, e: SchedEvent, now: Time) {
        match &e {
            SchedEvent::WorkerUp(w) => self.stats.ready(*w, now),
            SchedEvent::WorkerDown(w, _) => {
                self.stats.gone(*w, now);
                self.workers.remove(w);
            }
            SchedEvent::WorkerStartFailed(w, _) => {
                self.stats.gone(*w, now);
                self.workers.remove(w);
            }
            SchedEvent::Drained => {
                *self.final_insights.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(self.stats.snapshot(now));
                self.drained.set()
            }
            SchedEvent::Broken(_) => {}
        }
        self.events.emit(|| PoolEvent::from(e));
    }
}
