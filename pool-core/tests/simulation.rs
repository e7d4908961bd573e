//! Virtual-time simulation of the bare scheduler (no driver, no threads).
//!
//! A small deterministic driver keeps a queue of future events (a worker is
//! ready after its start delay, a task completes after its duration, a worker
//! crashes, the user submits, cancels, suspends, closes) and a virtual clock,
//! carries out every [`Command`] the scheduler emits, and calls `tick` at
//! `next_deadline()`. After every input and the commands it produced, it
//! checks the invariants of `pool-core/src/scheduler/README.md`:
//!
//! * (a) every accepted task gets exactly one `Finish`, of a kind that fits
//!   what happened to it;
//! * (b) while not suspended and a task is queued, no worker is idle;
//! * (c) live workers never exceed `max` (and stay at `min` or above while
//!   the pool is open and not broken);
//! * (d) after `close` the scheduler emits `Drained` once, when every worker
//!   exited and every task ended;
//! * (e) a task is never dispatched to two workers at once, and a worker
//!   never gets a second task.
//!
//! Then W2 (the 19 jobs of `shared/workloads/w2_jobs.json` on 8 workers) is
//! replayed to check that the scheduler is greedy list scheduling.
//!
//! Randomness comes from a tiny splitmix64 seeded per case, so every case is
//! reproducible from its seed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use shoal_core::scheduler::{
    Command, Config, Lifecycle, SchedEvent, Scheduler, StopReason, TaskOptions,
};
use shoal_core::{ExitCause, TaskError, TaskId, WorkerId};

/// Virtual time is counted in whole microseconds.
fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

fn to_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).expect("virtual time fits in u64")
}

const MS: u64 = 1000;

/// splitmix64: tiny, fast and good enough to pick scenarios.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi);
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// How the simulated workers and tasks behave.
#[derive(Clone, Debug)]
struct Knobs {
    /// A worker is ready this long after `StartWorker` (µs, inclusive range).
    start_delay: (u64, u64),
    /// A start fails (half `worker_start_failed`, half an exit while starting).
    p_start_fail: f64,
    /// A worker crashes during a dispatched task.
    p_crash_busy: f64,
    /// A worker crashes at some random time after it was started.
    p_crash_any: f64,
    /// An attempt fails with a panic.
    p_task_fail: f64,
    /// Attempt durations vary between 50% and 150% of the task's duration.
    jitter: bool,
    /// A stopped or killed worker exits within this long (µs).
    exit_delay: u64,
}

impl Knobs {
    fn calm(start_delay: (u64, u64)) -> Self {
        Knobs {
            start_delay,
            p_start_fail: 0.0,
            p_crash_busy: 0.0,
            p_crash_any: 0.0,
            p_task_fail: 0.0,
            jitter: false,
            exit_delay: 0,
        }
    }
}

#[derive(Debug)]
enum Ev {
    Ready(WorkerId),
    StartFailed(WorkerId),
    Crash(WorkerId),
    Complete { worker: WorkerId, task: TaskId, attempt: u32, ok: bool },
    Exit(WorkerId, ExitCause),
    Submit(TaskId),
    Cancel(TaskId),
    Suspend,
    Resume,
    Close,
    Terminate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Starting,
    Up,
    /// Asked to stop or killed; its exit is on the way.
    Leaving,
}

#[derive(Debug)]
struct SimWorker {
    phase: Phase,
    /// What the worker is physically running (it goes on after a kill until
    /// the worker exits, and may still report).
    running: Option<(TaskId, u32)>,
    /// Tasks it ran whose reports were current.
    ran: u64,
}

#[derive(Debug)]
struct SimTask {
    options: TaskOptions,
    /// µs per attempt (before jitter).
    duration: u64,
    accepted: bool,
    finishes: u32,
    result: Option<Result<(), TaskError>>,
    dispatches: u32,
    /// The worker the scheduler has it on, from `Dispatch` until that attempt
    /// ends (report, exit, kill).
    on: Option<WorkerId>,
    cancel_requested: bool,
}

#[derive(Default, Debug, Clone)]
struct Stats {
    tasks: u64,
    rejected_after_close: u64,
    dispatches: u64,
    retries: u64,
    ok: u64,
    timeouts: u64,
    lost: u64,
    panics: u64,
    cancelled: u64,
    broken_tasks: u64,
    broken_pools: u64,
    late_reports: u64,
    kills: u64,
    stops_idle: u64,
    stops_lifespan: u64,
    stops_shutdown: u64,
    starts: u64,
    start_failures: u64,
    crashes: u64,
    ticks: u64,
    /// Ticks that timed out more than one task.
    multi_timeout_ticks: u64,
    suspended_checks: u64,
    /// FNV-1a over every command and its time: two runs of one case must
    /// agree on it.
    trace: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.tasks += o.tasks;
        self.rejected_after_close += o.rejected_after_close;
        self.dispatches += o.dispatches;
        self.retries += o.retries;
        self.ok += o.ok;
        self.timeouts += o.timeouts;
        self.lost += o.lost;
        self.panics += o.panics;
        self.cancelled += o.cancelled;
        self.broken_tasks += o.broken_tasks;
        self.broken_pools += o.broken_pools;
        self.late_reports += o.late_reports;
        self.kills += o.kills;
        self.stops_idle += o.stops_idle;
        self.stops_lifespan += o.stops_lifespan;
        self.stops_shutdown += o.stops_shutdown;
        self.starts += o.starts;
        self.start_failures += o.start_failures;
        self.crashes += o.crashes;
        self.ticks += o.ticks;
        self.multi_timeout_ticks += o.multi_timeout_ticks;
        self.suspended_checks += o.suspended_checks;
        self.trace = self.trace.rotate_left(5) ^ o.trace;
    }

    fn record(&mut self, now: u64, cmd: &Command) {
        let mut h = if self.trace == 0 { 0xcbf2_9ce4_8422_2325 } else { self.trace };
        for b in format!("{now} {cmd:?}").bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        self.trace = h;
    }
}

struct Sim {
    name: String,
    s: Scheduler,
    cfg: Config,
    rng: Rng,
    knobs: Knobs,
    /// The virtual clock, µs.
    now: u64,
    seq: u64,
    events: BTreeMap<(u64, u64), Ev>,
    workers: BTreeMap<WorkerId, SimWorker>,
    /// Scheduler's view: which worker runs which task.
    assigned: BTreeMap<WorkerId, TaskId>,
    tasks: BTreeMap<TaskId, SimTask>,
    last_worker: Option<WorkerId>,
    broken: bool,
    terminated: bool,
    drained: u32,
    /// The task whose current `task_done` is being reported (a `Finish(Ok)`
    /// is only valid then).
    just_done: Option<TaskId>,
    last_finish: u64,
    stats: Stats,
}

impl Sim {
    fn new(name: String, cfg: Config, knobs: Knobs, seed: u64) -> Self {
        let mut sim = Sim {
            name,
            s: Scheduler::new(cfg.clone()),
            cfg,
            rng: Rng::new(seed),
            knobs,
            now: 0,
            seq: 0,
            events: BTreeMap::new(),
            workers: BTreeMap::new(),
            assigned: BTreeMap::new(),
            tasks: BTreeMap::new(),
            last_worker: None,
            broken: false,
            terminated: false,
            drained: 0,
            just_done: None,
            last_finish: 0,
            stats: Stats::default(),
        };
        sim.s.start(us(0));
        sim.settle();
        sim
    }

    fn at(&mut self, time: u64, ev: Ev) {
        assert!(time >= self.now, "{}: event in the past", self.name);
        self.seq += 1;
        self.events.insert((time, self.seq), ev);
    }

    /// Declares a task the scenario may submit later.
    fn add_task(&mut self, id: TaskId, options: TaskOptions, duration: u64) {
        let task = SimTask {
            options,
            duration,
            accepted: false,
            finishes: 0,
            result: None,
            dispatches: 0,
            on: None,
            cancel_requested: false,
        };
        assert!(self.tasks.insert(id, task).is_none());
    }

    /// Takes every command the scheduler has, carries each out, then checks
    /// the invariants.
    fn settle(&mut self) {
        while let Some(cmd) = self.s.poll_command() {
            assert_eq!(self.drained, 0, "{}: {cmd:?} after Drained", self.name);
            self.stats.record(self.now, &cmd);
            self.carry_out(cmd);
        }
        self.just_done = None;
        self.check();
    }

    fn carry_out(&mut self, cmd: Command) {
        let name = &self.name;
        let now = self.now;
        match cmd {
            Command::StartWorker(w) => {
                assert!(!self.broken, "{name}: StartWorker on a broken pool");
                assert!(self.last_worker.is_none_or(|l| w > l), "{name}: {w} reused");
                self.last_worker = Some(w);
                self.workers.insert(w, SimWorker { phase: Phase::Starting, running: None, ran: 0 });
                self.stats.starts += 1;
                let (lo, hi) = self.knobs.start_delay;
                let ready_at = now + self.rng.range(lo, hi);
                if self.rng.chance(self.knobs.p_start_fail) {
                    if self.rng.chance(0.5) {
                        self.at(ready_at, Ev::StartFailed(w));
                    } else {
                        self.at(ready_at, Ev::Exit(w, ExitCause::Code(1)));
                    }
                } else {
                    self.at(ready_at, Ev::Ready(w));
                }
                if self.rng.chance(self.knobs.p_crash_any) {
                    let when = now + self.rng.range(0, 30 * MS);
                    self.at(when, Ev::Crash(w));
                }
            }
            Command::Dispatch { task, worker, attempt } => {
                assert!(!self.s.is_suspended(), "{name}: dispatch while suspended");
                let wk = self.workers.get_mut(&worker).expect("dispatch to an unknown worker");
                assert_eq!(wk.phase, Phase::Up, "{name}: {task} dispatched to {worker}");
                assert!(
                    wk.running.is_none() && !self.assigned.contains_key(&worker),
                    "{name}: (e) {worker} got {task} while busy"
                );
                let tk = self.tasks.get_mut(&task).expect("dispatch of an unknown task");
                assert!(
                    tk.accepted && tk.finishes == 0,
                    "{name}: {task} dispatched after it ended"
                );
                assert_eq!(
                    tk.on, None,
                    "{name}: (e) {task} dispatched to {worker} while on a worker"
                );
                assert_eq!(attempt, tk.dispatches + 1, "{name}: {task} attempt number");
                assert!(attempt <= tk.options.retries + 1, "{name}: {task} retried too often");
                tk.dispatches = attempt;
                tk.on = Some(worker);
                wk.running = Some((task, attempt));
                self.assigned.insert(worker, task);
                self.stats.dispatches += 1;
                self.stats.retries += u64::from(attempt > 1);
                let base = tk.duration;
                let dur =
                    if self.knobs.jitter { self.rng.range(base / 2, base * 3 / 2) } else { base };
                let ok = !self.rng.chance(self.knobs.p_task_fail);
                self.at(now + dur, Ev::Complete { worker, task, attempt, ok });
                if self.rng.chance(self.knobs.p_crash_busy) {
                    let when = now + self.rng.range(0, dur);
                    self.at(when, Ev::Crash(worker));
                }
            }
            Command::StopWorker(w, reason) => {
                let live = self.workers.values().filter(|w| w.phase != Phase::Leaving).count();
                let wk = self.workers.get_mut(&w).expect("stop of an unknown worker");
                assert_ne!(wk.phase, Phase::Leaving, "{name}: {w} stopped twice");
                assert!(
                    wk.running.is_none() && !self.assigned.contains_key(&w),
                    "{name}: graceful stop of busy {w}"
                );
                match reason {
                    StopReason::Lifespan => {
                        assert_eq!(Some(wk.ran), self.cfg.lifespan, "{name}: lifespan stop");
                        self.stats.stops_lifespan += 1;
                    }
                    StopReason::Idle => {
                        assert_eq!(wk.phase, Phase::Up, "{name}: idle stop of a starting worker");
                        assert_ne!(self.s.lifecycle(), Lifecycle::Stopped);
                        assert!(live > self.cfg.min, "{name}: idle stop below min");
                        self.stats.stops_idle += 1;
                    }
                    StopReason::Shutdown => {
                        assert_eq!(
                            self.s.lifecycle(),
                            Lifecycle::Stopped,
                            "{name}: early shutdown"
                        );
                        self.stats.stops_shutdown += 1;
                    }
                }
                wk.phase = Phase::Leaving;
                let when = now + self.rng.range(0, self.knobs.exit_delay);
                self.at(when, Ev::Exit(w, ExitCause::Stopped));
            }
            Command::KillWorker(w) => {
                let wk = self.workers.get_mut(&w).expect("kill of an unknown worker");
                assert_ne!(wk.phase, Phase::Leaving, "{name}: {w} killed while leaving");
                wk.phase = Phase::Leaving;
                let task = self.assigned.remove(&w).expect("kill of a worker without a task");
                self.tasks.get_mut(&task).expect("known task").on = None;
                self.stats.kills += 1;
                let when = now + self.rng.range(0, self.knobs.exit_delay);
                self.at(when, Ev::Exit(w, ExitCause::Killed));
            }
            Command::Finish(task, result) => {
                let broken = self.broken;
                let terminated = self.terminated;
                let just_done = self.just_done;
                let tk = self.tasks.get_mut(&task).expect("Finish of a task never submitted");
                assert!(tk.accepted, "{name}: Finish of {task}, which was refused");
                tk.finishes += 1;
                assert_eq!(tk.finishes, 1, "{name}: (a) {task} finished twice: {result:?}");
                assert_eq!(tk.on, None, "{name}: {task} finished while still on a worker");
                let out_of_retries = tk.dispatches == tk.options.retries + 1 || broken;
                match &result {
                    Ok(()) => {
                        assert_eq!(just_done, Some(task), "{name}: Ok without a current result");
                        self.stats.ok += 1;
                    }
                    Err(e) if e.is_cancelled() => {
                        assert!(tk.cancel_requested || terminated, "{name}: {task} cancelled");
                        self.stats.cancelled += 1;
                    }
                    Err(e) if e.is_broken() => {
                        assert!(broken, "{name}: Broken before the pool broke");
                        // Queued (maybe a retry) when the pool broke.
                        self.stats.broken_tasks += 1;
                    }
                    Err(e) => {
                        assert!(e.is_timeout() || e.is_worker_lost() || e.is_panic(), "{e}");
                        assert!(
                            !e.is_timeout() || tk.options.timeout.is_some(),
                            "{name}: timeout without a timeout"
                        );
                        assert_eq!(e.attempts(), tk.dispatches, "{name}: {task} attempts");
                        assert!(out_of_retries, "{name}: {task} failed with retries left: {e}");
                        self.stats.timeouts += u64::from(e.is_timeout());
                        self.stats.lost += u64::from(e.is_worker_lost());
                        self.stats.panics += u64::from(e.is_panic());
                    }
                }
                tk.result = Some(result);
                self.last_finish = now;
            }
            Command::Event(ev) => match ev {
                SchedEvent::WorkerUp(w) => {
                    assert!(self.workers.contains_key(&w), "{name}: WorkerUp of unknown {w}");
                }
                SchedEvent::WorkerDown(w, _) => {
                    assert!(!self.workers.contains_key(&w), "{name}: WorkerDown of live {w}");
                }
                SchedEvent::WorkerStartFailed(..) => self.stats.start_failures += 1,
                SchedEvent::Broken(_) => {
                    assert!(!self.broken, "{name}: Broken twice");
                    self.broken = true;
                    self.stats.broken_pools += 1;
                }
                SchedEvent::Drained => {
                    self.drained += 1;
                    assert_eq!(self.s.lifecycle(), Lifecycle::Stopped, "{name}: Drained early");
                    assert!(self.workers.is_empty(), "{name}: (d) Drained with workers alive");
                    assert!(
                        self.tasks.values().all(|t| !t.accepted || t.finishes == 1),
                        "{name}: (d) Drained with tasks pending"
                    );
                }
            },
        }
    }

    /// Invariants that hold between inputs.
    fn check(&mut self) {
        let name = &self.name;
        let s = &self.s;
        // (b) no worker idles while a task waits.
        if s.queued_tasks() > 0 {
            if s.is_suspended() {
                self.stats.suspended_checks += 1;
            } else {
                for (w, wk) in &self.workers {
                    assert!(
                        wk.phase != Phase::Up || self.assigned.contains_key(w),
                        "{name} t={}us: (b) {w} idle while {} tasks are queued",
                        self.now,
                        s.queued_tasks()
                    );
                }
            }
        }
        // (c) live workers within bounds; the scheduler agrees with the driver.
        let live = self.workers.values().filter(|w| w.phase != Phase::Leaving).count();
        assert_eq!(live, s.live_workers(), "{name}: live workers disagree");
        assert_eq!(self.workers.len(), s.all_workers(), "{name}: workers disagree");
        assert!(live <= self.cfg.max, "{name}: (c) {live} live workers > max {}", self.cfg.max);
        if s.lifecycle() != Lifecycle::Stopped && !self.broken {
            assert!(live >= self.cfg.min, "{name}: {live} live workers < min {}", self.cfg.min);
        }
        // Task accounting.
        let pending = self.tasks.values().filter(|t| t.accepted && t.finishes == 0).count();
        assert_eq!(pending, s.pending_tasks(), "{name}: pending tasks disagree");
        assert_eq!(
            s.pending_tasks(),
            s.queued_tasks() + self.assigned.len(),
            "{name}: pending != queued + running"
        );
    }

    fn submit_now(&mut self, task: TaskId) {
        let open = self.s.lifecycle() == Lifecycle::Open;
        let options = self.tasks[&task].options;
        let accepted = self.s.submit(task, options, us(self.now));
        assert_eq!(
            accepted,
            open,
            "{}: submit of {task} while {:?}",
            self.name,
            self.s.lifecycle()
        );
        self.tasks.get_mut(&task).expect("declared").accepted = accepted;
        if accepted {
            self.stats.tasks += 1;
        } else {
            self.stats.rejected_after_close += 1;
        }
        self.settle();
    }

    /// Reports that `worker` is gone.
    fn exit(&mut self, worker: WorkerId, cause: ExitCause) {
        if self.workers.remove(&worker).is_none() {
            return; // already gone (crashed before its stop took effect, ...)
        }
        if let Some(task) = self.assigned.remove(&worker) {
            self.tasks.get_mut(&task).expect("known task").on = None;
        }
        let pid = u32::try_from(worker.0).ok().map(|n| 10_000 + n);
        self.s.worker_exited(worker, pid, cause, us(self.now));
        self.settle();
    }

    fn apply(&mut self, ev: Ev) {
        let now = us(self.now);
        match ev {
            Ev::Ready(w) => {
                let Some(wk) = self.workers.get_mut(&w) else { return };
                if wk.phase == Phase::Starting {
                    wk.phase = Phase::Up;
                }
                self.s.worker_ready(w, now);
                self.settle();
            }
            Ev::StartFailed(w) => {
                if self.workers.remove(&w).is_none() {
                    return;
                }
                self.s.worker_start_failed(w, "worker_init failed".to_string(), now);
                self.settle();
            }
            Ev::Crash(w) => {
                if self.workers.contains_key(&w) {
                    self.stats.crashes += 1;
                }
                self.exit(w, ExitCause::Signal(9));
            }
            Ev::Exit(w, cause) => self.exit(w, cause),
            Ev::Complete { worker, task, attempt, ok } => {
                let Some(wk) = self.workers.get_mut(&worker) else { return };
                if wk.running != Some((task, attempt)) {
                    return;
                }
                wk.running = None;
                let current = self.assigned.get(&worker) == Some(&task);
                if current {
                    wk.ran += 1;
                    self.assigned.remove(&worker);
                    self.tasks.get_mut(&task).expect("known task").on = None;
                } else {
                    self.stats.late_reports += 1;
                }
                if ok {
                    self.just_done = current.then_some(task);
                    self.s.task_done(worker, task, now);
                } else {
                    self.s.task_failed(worker, task, TaskError::panic("simulated panic"), now);
                }
                self.settle();
            }
            Ev::Submit(task) => self.submit_now(task),
            Ev::Cancel(task) => {
                let tk = self.tasks.get_mut(&task).expect("known task");
                let pending = tk.accepted && tk.finishes == 0;
                tk.cancel_requested |= pending;
                let cancelled = self.s.cancel(task, now);
                assert_eq!(cancelled, pending, "{}: cancel({task})", self.name);
                self.settle();
                let tk = &self.tasks[&task];
                if pending {
                    assert!(
                        matches!(&tk.result, Some(Err(e)) if e.is_cancelled()),
                        "{}: cancelled {task} did not finish Cancelled",
                        self.name
                    );
                }
            }
            Ev::Suspend => {
                self.s.suspend();
                self.settle();
            }
            Ev::Resume => {
                self.s.resume(now);
                self.settle();
            }
            Ev::Close => {
                self.s.close(now);
                assert_ne!(self.s.lifecycle(), Lifecycle::Open);
                self.settle();
            }
            Ev::Terminate => {
                self.terminated = true;
                self.s.terminate(now);
                assert_eq!(self.s.lifecycle(), Lifecycle::Stopped);
                self.settle();
                assert_eq!(self.s.pending_tasks(), 0, "{}: terminate left tasks", self.name);
            }
        }
    }

    /// Runs until nothing is left to happen; ticks at `next_deadline()`.
    fn run(&mut self) {
        let mut steps = 0u64;
        loop {
            steps += 1;
            assert!(steps < 1_000_000, "{}: livelock", self.name);
            let tick_at = self.s.next_deadline().map(to_us);
            let next_event = self.events.first_key_value().map(|(k, _)| k.0);
            match (tick_at, next_event) {
                (None, None) => break,
                (Some(t), e) if e.is_none_or(|e| t <= e) => {
                    self.now = self.now.max(t);
                    self.stats.ticks += 1;
                    let kills = self.stats.kills;
                    self.s.tick(us(self.now));
                    self.settle();
                    self.stats.multi_timeout_ticks += u64::from(self.stats.kills > kills + 1);
                    if let Some(d) = self.s.next_deadline() {
                        assert!(to_us(d) > self.now, "{}: tick left a due deadline", self.name);
                    }
                }
                _ => {
                    let ((t, _), ev) = self.events.pop_first().expect("an event");
                    self.now = t;
                    self.apply(ev);
                }
            }
        }
    }

    /// The end state after `close`/`terminate`: (a) and (d).
    fn check_end(&self) {
        let name = &self.name;
        for (id, t) in &self.tasks {
            if t.accepted {
                assert_eq!(t.finishes, 1, "{name}: (a) {id} finished {} times", t.finishes);
            } else {
                assert_eq!(t.finishes, 0, "{name}: refused {id} finished");
            }
        }
        assert_eq!(self.drained, 1, "{name}: (d) no Drained");
        assert!(self.workers.is_empty(), "{name}: (d) workers left: {:?}", self.workers);
        assert_eq!(self.s.all_workers(), 0, "{name}: (d) scheduler still has workers");
        assert_eq!(self.s.pending_tasks(), 0);
        assert_eq!(self.s.queued_tasks(), 0);
        assert_eq!(self.s.lifecycle(), Lifecycle::Stopped);
        assert_eq!(self.s.next_deadline(), None);
    }
}

/// One random scenario: sizes, recycling, timeouts, retries, crashes, start
/// failures, cancels, bursts of submits, suspend/resume, then close (and
/// sometimes terminate).
fn random_case(seed: u64) -> Stats {
    let mut rng = Rng::new(seed);
    let max = rng.range(1, 8) as usize;
    let min = rng.range(0, max as u64) as usize;
    let cfg = Config {
        min,
        max,
        idle_timeout: us(rng.range(1, 50) * MS),
        lifespan: if rng.chance(0.3) { Some(rng.range(1, 5)) } else { None },
        max_start_failures: rng.range(1, 4) as u32,
    };
    let harsh = rng.chance(0.1);
    // Lockstep cases: whole-millisecond durations, one timeout for all timed
    // tasks and no start delay, so events coincide (several timeouts in one
    // tick, a result at the very deadline, ...).
    let lockstep = rng.chance(0.3);
    let knobs = Knobs {
        start_delay: (0, if lockstep { 0 } else { rng.range(0, 5 * MS) }),
        p_start_fail: if harsh {
            0.6
        } else if rng.chance(0.4) {
            0.03
        } else {
            0.0
        },
        p_crash_busy: [0.0, 0.02, 0.1, 0.3][rng.range(0, 3) as usize],
        p_crash_any: [0.0, 0.05, 0.2][rng.range(0, 2) as usize],
        p_task_fail: [0.0, 0.05, 0.2][rng.range(0, 2) as usize],
        jitter: !lockstep && rng.chance(0.7),
        exit_delay: rng.range(0, 2 * MS),
    };
    let name = format!("case {seed} ({cfg:?}, {knobs:?})");
    let mut sim = Sim::new(name, cfg, knobs, rng.next_u64());

    // Bursts of submits at random times; some may come after close.
    let case_timeout = rng.range(1, 10) * MS;
    let mut next_id = 0u64;
    let mut last_burst = 0;
    for _ in 0..rng.range(1, 6) {
        let at = rng.range(0, 100 * MS);
        last_burst = last_burst.max(at);
        for _ in 0..rng.range(1, 20) {
            let id = TaskId(next_id);
            next_id += 1;
            let options = TaskOptions {
                timeout: match (rng.chance(0.3), lockstep) {
                    (false, _) => None,
                    (true, false) => Some(us(rng.range(1, 15) * MS)),
                    (true, true) => Some(us(case_timeout)),
                },
                retries: if rng.chance(0.5) { rng.range(0, 3) as u32 } else { 0 },
            };
            let duration = match (rng.chance(0.1), lockstep) {
                (true, _) => 0,
                (false, false) => rng.range(1, 10 * MS),
                (false, true) => rng.range(1, 10) * MS,
            };
            sim.add_task(id, options, duration);
            sim.at(at, Ev::Submit(id));
            if rng.chance(0.1) {
                // Before, at or after its submit: queued, running or ended.
                let when = (at + rng.range(0, 20 * MS)).saturating_sub(2 * MS);
                sim.at(when, Ev::Cancel(id));
            }
        }
    }
    for _ in 0..rng.range(0, 3) {
        let from = rng.range(0, 120 * MS);
        sim.at(from, Ev::Suspend);
        sim.at(from + rng.range(0, 30 * MS), Ev::Resume);
    }
    // Mostly after the last burst; sometimes earlier, refusing later submits.
    let close_at =
        if rng.chance(0.7) { last_burst + rng.range(0, 50 * MS) } else { rng.range(0, 150 * MS) };
    sim.at(close_at, Ev::Close);
    if rng.chance(0.15) {
        sim.at(rng.range(0, 200 * MS), Ev::Terminate);
    }
    sim.run();
    sim.check_end();
    sim.stats
}

#[test]
fn random_mixes_keep_every_invariant() {
    const CASES: u64 = 500;
    let mut total = Stats::default();
    for seed in 0..CASES {
        total.add(&random_case(seed));
    }
    println!("{CASES} cases: {total:#?}");
    // The generator must reach every path it claims to test.
    let s = &total;
    for (what, n) in [
        ("tasks", s.tasks),
        ("submits refused after close", s.rejected_after_close),
        ("retries", s.retries),
        ("successes", s.ok),
        ("timeouts", s.timeouts),
        ("lost workers", s.lost),
        ("panics", s.panics),
        ("cancels", s.cancelled),
        ("Broken tasks", s.broken_tasks),
        ("broken pools", s.broken_pools),
        ("late reports", s.late_reports),
        ("kills", s.kills),
        ("idle shrinks", s.stops_idle),
        ("lifespan stops", s.stops_lifespan),
        ("shutdown stops", s.stops_shutdown),
        ("start failures", s.start_failures),
        ("crashes", s.crashes),
        ("ticks", s.ticks),
        ("ticks timing out several tasks", s.multi_timeout_ticks),
        ("checks while suspended", s.suspended_checks),
    ] {
        assert!(n > 0, "no {what} in {CASES} cases: {total:#?}");
    }
}

#[test]
fn random_mixes_are_deterministic() {
    // Each run builds new hash maps with new random keys: the commands must
    // not depend on them.
    for seed in 0..100 {
        let a = random_case(seed).trace;
        let b = random_case(seed).trace;
        assert_eq!(a, b, "case {seed} replays differently");
    }
}

// ---- W2: makespan ------------------------------------------------------------

/// The `jobs` array of `shared/workloads/w2_jobs.json`, in seconds.
fn w2_jobs() -> Vec<f64> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/workloads/w2_jobs.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let start = text.find("\"jobs\"").expect("a jobs key");
    let open = start + text[start..].find('[').expect("a jobs array");
    let close = open + text[open..].find(']').expect("the end of the jobs array");
    text[open + 1..close]
        .split(',')
        .map(|x| x.trim().parse::<f64>().unwrap_or_else(|e| panic!("job {x:?}: {e}")))
        .collect()
}

/// Greedy list scheduling: jobs in order, each to the machine that is free
/// first; machine `i` is available from `ready[i]`. Returns the makespan.
fn greedy<T: Copy + PartialOrd + std::ops::Add<Output = T>>(jobs: &[T], ready: &[T]) -> T {
    let mut free = ready.to_vec();
    let mut makespan: Option<T> = None;
    for &job in jobs {
        let mut best = 0;
        for i in 1..free.len() {
            if free[i] < free[best] {
                best = i;
            }
        }
        free[best] = free[best] + job;
        if makespan.is_none_or(|m| free[best] > m) {
            makespan = Some(free[best]);
        }
    }
    makespan.expect("at least one job")
}

/// Runs W2 on a calm pool (no failures): every job submitted at t=0, then
/// close. Returns the makespan (µs) and the ready time of each worker (µs).
fn run_w2(cfg: Config, start_delay: (u64, u64), seed: u64) -> (u64, Vec<u64>, Stats) {
    let jobs = w2_jobs();
    let name = format!("W2 seed {seed} {cfg:?} start delay {start_delay:?}");
    let mut sim = Sim::new(name, cfg, Knobs::calm(start_delay), seed);
    for (i, secs) in jobs.iter().enumerate() {
        let id = TaskId(i as u64);
        sim.add_task(id, TaskOptions::default(), (secs * 1e6).round() as u64);
        sim.submit_now(id);
    }
    sim.s.close(us(0));
    sim.settle();
    // Ready times: the Ready events already queued, in worker order.
    let ready: Vec<u64> = sim
        .events
        .iter()
        .filter_map(|((t, _), ev)| matches!(ev, Ev::Ready(_)).then_some(*t))
        .collect();
    sim.run();
    sim.check_end();
    (sim.last_finish, ready, sim.stats)
}

#[test]
fn w2_jobs_file_matches_design() {
    let jobs = w2_jobs();
    assert_eq!(jobs.len(), 19);
    let sum: f64 = jobs.iter().sum();
    let longest = jobs.iter().copied().fold(0.0, f64::max);
    let lower = (sum / 8.0).max(longest);
    let g = greedy(&jobs, &[0.0; 8]);
    assert!((lower - 0.529).abs() < 0.0005, "lower bound {lower}");
    assert!((g - 0.644).abs() < 0.0005, "greedy {g}");
}

fn w2_bounds(start_delay_max: u64) -> (f64, f64) {
    let jobs = w2_jobs();
    let sum: f64 = jobs.iter().sum();
    let longest = jobs.iter().copied().fold(0.0, f64::max);
    let lower = (sum / 8.0).max(longest) * 1e6;
    let g = greedy(&jobs, &[0.0; 8]) * 1e6;
    (lower, 1.05 * (g + start_delay_max as f64))
}

fn w2_jobs_us() -> Vec<u64> {
    w2_jobs().iter().map(|s| (s * 1e6).round() as u64).collect()
}

#[test]
fn w2_makespan_is_greedy_list_scheduling_on_8_workers() {
    let cfg = Config { min: 8, max: 8, ..Config::default() };
    let (makespan, ready, stats) = run_w2(cfg, (0, 0), 1);
    assert_eq!(ready, vec![0; 8]);
    assert_eq!(stats.starts, 8);
    assert_eq!(makespan, greedy(&w2_jobs_us(), &[0; 8]), "exactly greedy list scheduling");
    let (lower, upper) = w2_bounds(0);
    let m = makespan as f64;
    assert!(m >= lower && m <= upper, "makespan {m}us outside [{lower}, {upper}]");
}

#[test]
fn w2_makespan_with_random_start_delays() {
    let cfg = Config { min: 8, max: 8, ..Config::default() };
    for seed in 0..50 {
        let max_delay = [1, 10, 50, 200][seed as usize % 4] * MS;
        let (makespan, ready, stats) = run_w2(cfg.clone(), (0, max_delay), seed);
        assert_eq!(ready.len(), 8);
        assert_eq!(stats.starts, 8);
        // Greedy list scheduling on machines that become free at their
        // ready times.
        assert_eq!(makespan, greedy(&w2_jobs_us(), &ready), "seed {seed}: not greedy");
        let (lower, upper) = w2_bounds(max_delay);
        let m = makespan as f64;
        assert!(m >= lower, "seed {seed}: makespan {m}us below the lower bound {lower}");
        assert!(m <= upper, "seed {seed}: makespan {m}us above greedy + start delay ({upper})");
    }
}

#[test]
fn w2_makespan_when_growing_on_demand() {
    let cfg = Config { min: 1, max: 8, ..Config::default() };
    let (makespan, ready, stats) = run_w2(cfg.clone(), (0, 0), 7);
    assert_eq!(ready, vec![0; 8], "grew to 8 workers at once");
    assert_eq!(stats.starts, 8, "never more than max workers");
    assert_eq!(makespan, greedy(&w2_jobs_us(), &[0; 8]));
    let (lower, upper) = w2_bounds(0);
    let m = makespan as f64;
    assert!(m >= lower && m <= upper, "makespan {m}us outside [{lower}, {upper}]");

    for seed in 0..20 {
        let max_delay = [5, 50][seed as usize % 2] * MS;
        let (makespan, ready, stats) = run_w2(cfg.clone(), (0, max_delay), seed);
        assert_eq!(ready.len(), 8);
        assert_eq!(stats.starts, 8);
        assert_eq!(makespan, greedy(&w2_jobs_us(), &ready), "seed {seed}: not greedy");
        let (lower, upper) = w2_bounds(max_delay);
        let m = makespan as f64;
        assert!(m >= lower && m <= upper, "seed {seed}: makespan {m}us outside [{lower}, {upper}]");
    }
}

#[test]
fn w2_tasks_end_once_each_and_workers_leave() {
    // The W2 runs above also went through `check_end`; this one checks the
    // set of finished tasks explicitly.
    let cfg = Config { min: 2, max: 8, ..Config::default() };
    let jobs = w2_jobs();
    let mut sim = Sim::new("W2 explicit".into(), cfg, Knobs::calm((0, 3 * MS)), 11);
    for (i, secs) in jobs.iter().enumerate() {
        let id = TaskId(i as u64);
        sim.add_task(id, TaskOptions::default(), (secs * 1e6).round() as u64);
        sim.submit_now(id);
    }
    sim.s.close(us(0));
    sim.settle();
    sim.run();
    sim.check_end();
    let ok: BTreeSet<TaskId> =
        sim.tasks.iter().filter(|(_, t)| t.result == Some(Ok(()))).map(|(id, _)| *id).collect();
    assert_eq!(ok, (0..19).map(TaskId).collect());
}
