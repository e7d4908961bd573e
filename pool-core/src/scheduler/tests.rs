//! One test per row of the input table in `README.md` and per invariant.
//! Every test drives the scheduler by hand with explicit times and checks the
//! exact commands it emits. The randomized checks live in
//! `pool-core/tests/simulation.rs`.

use super::*;
use crate::error::*;
use crate::ids::*;

const T0: Duration = Duration::ZERO;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn t(n: u64) -> TaskId {
    TaskId(n)
}

fn w(n: u64) -> WorkerId {
    WorkerId(n)
}

fn config(min: usize, max: usize) -> Config {
    Config { min, max, ..Config::default() }
}

fn opts(timeout: Option<Duration>, retries: u32) -> TaskOptions {
    TaskOptions { timeout, retries }
}

fn dispatch(task: TaskId, worker: WorkerId, attempt: u32) -> Command {
    Command::Dispatch { task, worker, attempt }
}

fn drain(s: &mut Scheduler) -> Vec<Command> {
    std::iter::from_fn(|| s.poll_command()).collect()
}

fn started(cmds: &[Command]) -> Vec<WorkerId> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::StartWorker(w) => Some(*w),
            _ => None,
        })
        .collect()
}

fn finishes(cmds: &[Command]) -> Vec<(TaskId, Result<(), TaskError>)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Finish(t, r) => Some((*t, r.clone())),
            _ => None,
        })
        .collect()
}

/// A started scheduler whose `min` workers (ids 0..min) are ready at time 0.
fn pool(config: Config) -> Scheduler {
    let mut s = Scheduler::new(config);
    s.start(T0);
    for w in started(&drain(&mut s)) {
        s.worker_ready(w, T0);
    }
    drain(&mut s);
    s
}

// ---- dispatch -------------------------------------------------------------

#[test]
fn submit_dispatches_to_an_idle_worker() {
    let mut s = pool(config(1, 1));
    assert!(s.submit(t(1), TaskOptions::default(), ms(1)));
    assert_eq!(drain(&mut s), vec![dispatch(t(1), w(0), 1)]);
    assert_eq!(s.queued_tasks(), 0);
    assert_eq!(s.pending_tasks(), 1);
}

#[test]
fn submit_queues_at_the_back_and_tasks_run_in_order() {
    let mut s = pool(config(1, 1));
    for i in 1..=3 {
        assert!(s.submit(t(i), TaskOptions::default(), T0));
    }
    assert_eq!(drain(&mut s), vec![dispatch(t(1), w(0), 1)]);
    assert_eq!(s.queued_tasks(), 2);
    s.task_done(w(0), t(1), ms(1));
    assert_eq!(drain(&mut s), vec![Command::Finish(t(1), Ok(())), dispatch(t(2), w(0), 1)]);
    s.task_done(w(0), t(2), ms(2));
    assert_eq!(drain(&mut s), vec![Command::Finish(t(2), Ok(())), dispatch(t(3), w(0), 1)]);
    s.task_done(w(0), t(3), ms(3));
    assert_eq!(drain(&mut s), vec![Command::Finish(t(3), Ok(()))]);
    assert_eq!(s.pending_tasks(), 0);
}

#[test]
fn dispatch_takes_the_most_recently_idle_worker() {
    let mut s = pool(config(2, 2));
    s.submit(t(1), TaskOptions::default(), T0);
    s.submit(t(2), TaskOptions::default(), T0);
    // w1 became ready last, so it takes the first task.
    assert_eq!(drain(&mut s), vec![dispatch(t(1), w(1), 1), dispatch(t(2), w(0), 1)]);
    s.task_done(w(1), t(1), ms(1));
    s.task_done(w(0), t(2), ms(2));
    drain(&mut s);
    s.submit(t(3), TaskOptions::default(), ms(3));
    assert_eq!(drain(&mut s), vec![dispatch(t(3), w(0), 1)]);
}

#[test]
fn worker_ready_emits_worker_up_and_takes_a_queued_task() {
    let mut s = Scheduler::new(config(1, 1));
    s.start(T0);
    assert_eq!(drain(&mut s), vec![Command::StartWorker(w(0))]);
    s.submit(t(1), TaskOptions::default(), T0);
    assert_eq!(drain(&mut s), vec![], "the starting worker will take it");
    assert_eq!(s.queued_tasks(), 1);
    s.worker_ready(w(0), ms(5));
    assert_eq!(
        drain(&mut s),
        vec![Command::Event(SchedEvent::WorkerUp(w(0))), dispatch(t(1), w(0), 1)]
    );
    assert_eq!(s.queued_tasks(), 0);
}

#[test]
fn invariant_no_worker_idles_while_a_task_is_queued() {
    // Tasks submitted before any worker is up go out as workers come up,
    // oldest first, and nothing is left queued beside an idle worker.
    let mut s = Scheduler::new(config(3, 3));
    s.start(T0);
    drain(&mut s);
    for i in 1..=5 {
        s.submit(t(i), TaskOptions::default(), T0);
    }
    assert_eq!(drain(&mut s), vec![]);
    for (k, i) in [(0, 1), (1, 2), (2, 3)] {
        s.worker_ready(w(k), ms(1));
        assert_eq!(drain(&mut s)[1], dispatch(t(i), w(k), 1));
    }
    assert_eq!(s.queued_tasks(), 2);
    s.task_done(w(1), t(2), ms(2));
    assert_eq!(drain(&mut s)[1], dispatch(t(4), w(1), 1));
    s.task_done(w(0), t(1), ms(2));
    assert_eq!(drain(&mut s)[1], dispatch(t(5), w(0), 1));
    assert_eq!(s.queued_tasks(), 0);
}

// ---- sizing ----------------------------------------------------------------

#[test]
fn grows_up_to_max_while_tasks_wait() {
    let mut s = Scheduler::new(Config { min: 1, max: 3, ..Config::default() });
    s.start(T0);
    assert_eq!(drain(&mut s), vec![Command::StartWorker(w(0))]);
    s.submit(t(1), TaskOptions::default(), T0);
    assert_eq!(drain(&mut s), vec![], "w0 is starting and will take t1");
    s.submit(t(2), TaskOptions::default(), T0);
    assert_eq!(drain(&mut s), vec![Command::StartWorker(w(1))]);
    s.submit(t(3), TaskOptions::default(), T0);
    assert_eq!(drain(&mut s), vec![Command::StartWorker(w(2))]);
    for i in 4..=10 {
        s.submit(t(i), TaskOptions::default(), T0);
    }
    assert_eq!(drain(&mut s), vec![], "never beyond max");
    assert_eq!(s.live_workers(), 3);
    // A busy pool at max stays at max as tasks finish and others wait.
    for k in 0..3 {
        s.worker_ready(w(k), ms(1));
    }
    drain(&mut s);
    s.task_done(w(0), t(1), ms(2));
    assert!(started(&drain(&mut s)).is_empty());
    assert_eq!(s.live_workers(), 3);
}

#[test]
fn grows_only_as_many_workers_as_tasks_wait() {
    let mut s = Scheduler::new(config(0, 8));
    s.start(T0);
    assert_eq!(drain(&mut s), vec![]);
    s.submit(t(1), TaskOptions::default(), T0);
    s.submit(t(2), TaskOptions::default(), T0);
    assert_eq!(drain(&mut s), vec![Command::StartWorker(w(0)), Command::StartWorker(w(1))]);
    // A busy worker does not count as one that will take a queued task.
    s.worker_ready(w(0), ms(1));
    s.worker_ready(w(1), ms(1));
    drain(&mut s);
    s.submit(t(3), TaskOptions::default(), ms(2));
    assert_eq!(drain(&mut s), vec![Command::StartWorker(w(2))]);
}

#[test]
fn start_brings_up_min_workers_and_min_is_kept() {
    let mut s =
        Scheduler::new(Config { min: 2, max: 4, idle_timeout: ms(10), ..Config::default() });
    s.start(T0);
    assert_eq!(drain(&mut s), vec![Command::StartWorker(w(0)), Command::StartWorker(w(1))]);
    s.worker_ready(w(0), T0);
    s.worker_ready(w(1), T0);
    drain(&mut s);
    // Idle at min: nothing to shrink, no deadline.
    assert_eq!(s.next_deadline(), None);
    s.tick(Duration::from_secs(100));
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.live_workers(), 2);
    // An idle worker that dies is replaced; no task fails.
    s.worker_exited(w(0), Some(7), ExitCause::Signal(9), ms(200));
    assert_eq!(
        drain(&mut s),
        vec![
            Command::Event(SchedEvent::WorkerDown(w(0), ExitCause::Signal(9))),
            Command::StartWorker(w(2)),
        ]
    );
    assert_eq!(s.live_workers(), 2);
}

#[test]
fn shrinks_idle_workers_above_min_after_idle_timeout() {
    let idle_timeout = Duration::from_secs(1);
    let mut s = Scheduler::new(Config { min: 1, max: 3, idle_timeout, ..Config::default() });
    s.start(T0);
    for i in 1..=3 {
        s.submit(t(i), TaskOptions::default(), T0);
    }
    assert_eq!(started(&drain(&mut s)), vec![w(0), w(1), w(2)]);
    for k in 0..3 {
        s.worker_ready(w(k), T0);
    }
    drain(&mut s);
    assert_eq!(s.next_deadline(), None, "all busy, no timeouts");
    s.task_done(w(0), t(1), ms(10));
    s.task_done(w(1), t(2), ms(20));
    s.task_done(w(2), t(3), ms(30));
    drain(&mut s);
    assert_eq!(s.next_deadline(), Some(ms(10) + idle_timeout));
    s.tick(ms(1009));
    assert_eq!(drain(&mut s), vec![]);
    s.tick(ms(1010));
    assert_eq!(drain(&mut s), vec![Command::StopWorker(w(0), StopReason::Idle)]);
    assert_eq!(s.next_deadline(), Some(ms(20) + idle_timeout));
    // Long after: only down to min, the longest idle first.
    s.tick(Duration::from_secs(60));
    assert_eq!(drain(&mut s), vec![Command::StopWorker(w(1), StopReason::Idle)]);
    assert_eq!(s.live_workers(), 1);
    assert_eq!(s.next_deadline(), None);
    // Their exits start nothing new.
    s.worker_exited(w(0), None, ExitCause::Stopped, Duration::from_secs(61));
    s.worker_exited(w(1), None, ExitCause::Stopped, Duration::from_secs(61));
    assert!(started(&drain(&mut s)).is_empty());
    assert_eq!(s.all_workers(), 1);
}

#[test]
fn lifespan_stops_the_worker_and_starts_a_replacement() {
    let mut s = pool(Config { min: 1, max: 1, lifespan: Some(2), ..Config::default() });
    s.submit(t(1), TaskOptions::default(), T0);
    s.submit(t(2), TaskOptions::default(), T0);
    s.submit(t(3), TaskOptions::default(), T0);
    assert_eq!(drain(&mut s), vec![dispatch(t(1), w(0), 1)]);
    s.task_done(w(0), t(1), ms(1));
    assert_eq!(drain(&mut s), vec![Command::Finish(t(1), Ok(())), dispatch(t(2), w(0), 1)]);
    s.task_done(w(0), t(2), ms(2));
    assert_eq!(
        drain(&mut s),
        vec![
            Command::StopWorker(w(0), StopReason::Lifespan),
            Command::Finish(t(2), Ok(())),
            Command::StartWorker(w(1)),
        ]
    );
    s.worker_exited(w(0), None, ExitCause::Stopped, ms(3));
    assert_eq!(
        drain(&mut s),
        vec![Command::Event(SchedEvent::WorkerDown(w(0), ExitCause::Stopped))]
    );
    s.worker_ready(w(1), ms(4));
    assert_eq!(
        drain(&mut s),
        vec![Command::Event(SchedEvent::WorkerUp(w(1))), dispatch(t(3), w(1), 1)]
    );
}

#[test]
fn lifespan_counts_failed_tasks_too() {
    let mut s = pool(Config { min: 1, max: 1, lifespan: Some(1), ..Config::default() });
    s.submit(t(1), TaskOptions::default(), T0);
    drain(&mut s);
    s.task_failed(w(0), t(1), TaskError::panic("boom"), ms(1));
    let cmds = drain(&mut s);
    assert_eq!(cmds[0], Command::StopWorker(w(0), StopReason::Lifespan));
    assert_eq!(started(&cmds), vec![w(1)]);
}

// ---- failures and retries ----------------------------------------------------

#[test]
fn task_failed_is_retried_at_the_front_of_the_queue() {
    let mut s = pool(config(1, 1));
    s.submit(t(1), opts(None, 1), T0);
    s.submit(t(2), TaskOptions::default(), T0);
    assert_eq!(drain(&mut s), vec![dispatch(t(1), w(0), 1)]);
    s.task_failed(w(0), t(1), TaskError::panic("boom"), ms(1));
    assert_eq!(drain(&mut s), vec![dispatch(t(1), w(0), 2)], "retried before t2");
    s.task_failed(w(0), t(1), TaskError::panic("boom again"), ms(2));
    let cmds = drain(&mut s);
    assert_eq!(
        cmds,
        vec![
            Command::Finish(t(1), Err(TaskError::panic("boom again").with_attempts(2))),
            dispatch(t(2), w(0), 1),
        ]
    );
    let (_, Err(err)) = &finishes(&cmds)[0] else { panic!("expected an error") };
    assert!(err.is_panic());
    assert_eq!(err.attempts(), 2);
}

#[test]
fn task_failed_without_retries_finishes_with_the_error() {
    let mut s = pool(config(1, 1));
    s.submit(t(1), TaskOptions::default(), T0);
    drain(&mut s);
    s.task_failed(w(0), t(1), TaskError::panic("boom"), ms(1));
    assert_eq!(drain(&mut s), vec![Command::Finish(t(1), Err(TaskError::panic("boom")))]);
    // The worker lives on and takes the next task.
    s.submit(t(2), TaskOptions::default(), ms(2));
    assert_eq!(drain(&mut s), vec![dispatch(t(2), w(0), 1)]);
}

#[test]
fn worker_lost_is_retried_on_another_worker() {
    let mut s = pool(config(2, 2));
    s.submit(t(1), opts(None, 1), T0);
    s.submit(t(2), TaskOptions::default(), T0);
    assert_eq!(drain(&mut s), vec![dispatch(t(1), w(1), 1), dispatch(t(2), w(0), 1)]);
    s.worker_exited(w(1), Some(42), ExitCause::Signal(9), ms(1));
    assert_eq!(
        drain(&mut s),
        vec![
            Command::Event(SchedEvent::WorkerDown(w(1), ExitCause::Signal(9))),
            Command::StartWorker(w(2)),
        ]
    );
    assert_eq!(s.queued_tasks(), 1);
    s.worker_ready(w(2), ms(2));
    assert_eq!(
        drain(&mut s),
        vec![Command::Event(SchedEvent::WorkerUp(w(2))), dispatch(t(1), w(2), 2)]
    );
    // Lost again: out of retries.
    s.worker_exited(w(2), Some(43), ExitCause::Code(1), ms(3));
    let cmds = drain(&mut s);
    let expected = TaskError::worker_lost(w(2), Some(43), ExitCause::Code(1)).with_attempts(2);
    assert_eq!(cmds[0], Command::Finish(t(1), Err(expected)));
    let (_, Err(err)) = &finishes(&cmds)[0] else { panic!("expected an error") };
    assert!(err.is_worker_lost());
    assert_eq!(err.worker(), Some(w(2)));
    // t2 on w0 is unaffected.
    s.task_done(w(0), t(2), ms(4));
    assert_eq!(finishes(&drain(&mut s)), vec![(t(2), Ok(()))]);
}

#[test]
fn worker_lost_without_retries_fails_only_its_task() {
    let mut s = pool(config(2, 2));
    s.submit(t(1), TaskOptions::default(), T0);
    s.submit(t(2), TaskOptions::default(), T0);
    drain(&mut s);
    s.worker_exited(w(1), Some(42), ExitCause::Signal(9), ms(1));
    assert_eq!(
        drain(&mut s),
        vec![
            Command::Finish(
                t(1),
                Err(TaskError::worker_lost(w(1), Some(42), ExitCause::Signal(9)))
            ),
            Command::Event(SchedEvent::WorkerDown(w(1), ExitCause::Signal(9))),
            Command::StartWorker(w(2)),
        ]
    );
    assert_eq!(s.pending_tasks(), 1);
}

#[test]
fn no_retry_after_cancelled_or_serialization() {
    let mut s = pool(config(1, 1));
    s.submit(t(1), opts(None, 3), T0);
    drain(&mut s);
    s.task_failed(w(0), t(1), TaskError::cancelled(), ms(1));
    assert_eq!(drain(&mut s), vec![Command::Finish(t(1), Err(TaskError::cancelled()))]);
    s.submit(t(2), opts(None, 3), ms(2));
    drain(&mut s);
    s.task_failed(w(0), t(2), TaskError::serialization("bad pickle"), ms(3));
    assert_eq!(
        drain(&mut s),
        vec![Command::Finish(t(2), Err(TaskError::serialization("bad pickle")))]
    );
    assert_eq!(s.pending_tasks(), 0);
}

// ---- timeouts ------------------------------------------------------------------

#[test]
fn timeout_kills_the_worker_and_fails_the_task() {
    let mut s = pool(config(1, 1));
    s.submit(t(1), opts(Some(ms(100)), 0), ms(10));
    assert_eq!(drain(&mut s), vec![dispatch(t(1), w(0), 1)]);
    assert_eq!(s.next_deadline(), Some(ms(110)));
    s.tick(ms(109));
    assert_eq!(drain(&mut s), vec![]);
    s.tick(ms(110));
    let cmds = drain(&mut s);
    assert_eq!(
        cmds,
        vec![
            Command::KillWorker(w(0)),
            Command::Finish(t(1), Err(TaskError::timeout(ms(100)))),
            Command::StartWorker(w(1)),
        ]
    );
    let (_, Err(err)) = &finishes(&cmds)[0] else { panic!("expected an error") };
    assert!(err.is_timeout());
    assert_eq!(s.next_deadline(), None);
}

#[test]
fn timeout_with_retries_runs_again_on_another_worker() {
    let mut s = pool(config(1, 1));
    s.submit(t(1), opts(Some(ms(100)), 1), T0);
    drain(&mut s);
    s.tick(ms(100));
    assert_eq!(drain(&mut s), vec![Command::KillWorker(w(0)), Command::StartWorker(w(1))]);
    s.worker_ready(w(1), ms(150));
    assert_eq!(
        drain(&mut s),
        vec![Command::Event(SchedEvent::WorkerUp(w(1))), dispatch(t(1), w(1), 2)]
    );
    // The deadline counts from the new dispatch.
    assert_eq!(s.next_deadline(), Some(ms(250)));
    s.tick(ms(250));
    assert_eq!(
        drain(&mut s),
        vec![
            Command::KillWorker(w(1)),
            Command::Finish(t(1), Err(TaskError::timeout(ms(100)).with_attempts(2))),
            Command::StartWorker(w(2)),
        ]
    );
}

#[test]
fn late_task_done_after_timeout_is_ignored() {
    let mut s = pool(config(1, 1));
    s.submit(t(1), opts(Some(ms(100)), 0), T0);
    drain(&mut s);
    s.tick(ms(100));
    let mut all = drain(&mut s);
    // The killed worker reports the result before its exit is seen.
    s.task_done(w(0), t(1), ms(101));
    assert_eq!(drain(&mut s), vec![], "late result ignored");
    s.task_failed(w(0), t(1), TaskError::panic("late"), ms(102));
    assert_eq!(drain(&mut s), vec![], "late failure ignored");
    s.worker_exited(w(0), None, ExitCause::Killed, ms(103));
    let cmds = drain(&mut s);
    assert_eq!(cmds, vec![Command::Event(SchedEvent::WorkerDown(w(0), ExitCause::Killed))]);
    all.extend(cmds);
    let f = finishes(&all);
    assert_eq!(f, vec![(t(1), Err(TaskError::timeout(ms(100))))], "exactly one Finish");
    // The killed worker never gets another task.
    s.submit(t(2), TaskOptions::default(), ms(104));
    assert!(drain(&mut s).iter().all(|c| !matches!(c, Command::Dispatch { .. })));
    s.worker_ready(w(1), ms(105));
    assert_eq!(drain(&mut s)[1], dispatch(t(2), w(1), 1));
}

#[test]
fn late_task_done_after_timeout_and_retry_does_not_finish_the_retry() {
    let mut s = pool(config(2, 2));
    s.submit(t(1), opts(Some(ms(100)), 1), T0);
    assert_eq!(drain(&mut s), vec![dispatch(t(1), w(1), 1)]);
    s.tick(ms(100));
    assert_eq!(
        drain(&mut s),
        vec![Command::KillWorker(w(1)), dispatch(t(1), w(0), 2), Command::StartWorker(w(2))]
    );
    s.task_done(w(1), t(1), ms(101));
    assert_eq!(drain(&mut s), vec![], "the first attempt's result is stale");
    s.task_done(w(0), t(1), ms(150));
    assert_eq!(drain(&mut s), vec![Command::Finish(t(1), Ok(()))]);
}

#[test]
fn timeouts_in_one_tick_are_handled_in_task_order() {
    // Several runs, each with fresh hash maps, so the order cannot depend on
    // hashing.
    for _ in 0..20 {
        let mut s = pool(config(6, 6));
        for i in 1..=6 {
            s.submit(t(i), opts(Some(ms(10)), 0), T0);
        }
        drain(&mut s);
        s.tick(ms(10));
        let order: Vec<TaskId> = finishes(&drain(&mut s)).into_iter().map(|(t, _)| t).collect();
        assert_eq!(order, (1..=6).map(t).collect::<Vec<_>>());
    }
}

#[test]
fn a_task_retried_by_tick_goes_to_an_idle_worker_rather_than_it_shrinking() {
    // t1 times out in the same tick in which w1 has been idle long enough to
    // shrink: the retry must take w1, not wait for a fresh worker.
    let idle_timeout = ms(100);
    let mut s = Scheduler::new(Config { min: 0, max: 2, idle_timeout, ..Config::default() });
    s.start(T0);
    s.submit(t(1), opts(Some(ms(200)), 1), T0);
    s.submit(t(2), TaskOptions::default(), T0);
    assert_eq!(started(&drain(&mut s)), vec![w(0), w(1)]);
    s.worker_ready(w(0), T0);
    s.worker_ready(w(1), T0);
    drain(&mut s);
    s.task_done(w(1), t(2), ms(100));
    drain(&mut s);
    assert_eq!(s.next_deadline(), Some(ms(200)));
    s.tick(ms(200));
    assert_eq!(drain(&mut s), vec![Command::KillWorker(w(0)), dispatch(t(1), w(1), 2)]);
}

// ---- cancel --------------------------------------------------------------------

#[test]
fn cancel_queued_task_touches_no_worker() {
    let mut s = pool(config(1, 1));
    s.submit(t(1), TaskOptions::default(), T0);
    s.submit(t(2), TaskOptions::default(), T0);
    drain(&mut s);
    assert!(s.cancel(t(2), ms(1)));
    assert_eq!(drain(&mut s), vec![Command::Finish(t(2), Err(TaskError::cancelled()))]);
    assert_eq!(s.queued_tasks(), 0);
    assert!(!s.cancel(t(2), ms(2)), "already ended");
    assert_eq!(drain(&mut s), vec![]);
    s.task_done(w(0), t(1), ms(3));
    assert_eq!(drain(&mut s), vec![Command::Finish(t(1), Ok(()))], "t2 never runs");
}

#[test]
fn cancel_running_task_kills_its_worker() {
    let mut s = pool(config(1, 1));
    s.submit(t(1), TaskOptions::default(), T0);
    drain(&mut s);
    assert!(s.cancel(t(1), ms(1)));
    assert_eq!(
        drain(&mut s),
        vec![
            Command::KillWorker(w(0)),
            Command::Finish(t(1), Err(TaskError::cancelled())),
            Command::StartWorker(w(1)),
        ]
    );
    s.task_done(w(0), t(1), ms(2));
    assert_eq!(drain(&mut s), vec![], "late result after cancel ignored");
    s.worker_exited(w(0), None, ExitCause::Killed, ms(3));
    assert_eq!(
        drain(&mut s),
        vec![Command::Event(SchedEvent::WorkerDown(w(0), ExitCause::Killed))]
    );
    assert!(!s.cancel(t(1), ms(4)));
    assert!(!s.cancel(t(99), ms(4)), "unknown task");
    assert_eq!(s.pending_tasks(), 0);
}

// ---- suspend / resume ----------------------------------------------------------

#[test]
fn suspend_stops_dispatching_and_resume_restarts_it() {
    let mut s = pool(config(1, 2));
    s.submit(t(1), TaskOptions::default(), T0);
    assert_eq!(drain(&mut s), vec![dispatch(t(1), w(0), 1)]);
    s.suspend();
    assert!(s.is_suspended());
    s.submit(t(2), TaskOptions::default(), ms(1));
    s.submit(t(3), TaskOptions::default(), ms(1));
    assert_eq!(drain(&mut s), vec![], "no dispatch, no growth while suspended");
    // The running task goes on.
    s.task_done(w(0), t(1), ms(2));
    assert_eq!(drain(&mut s), vec![Command::Finish(t(1), Ok(()))]);
    assert_eq!(s.queued_tasks(), 2);
    s.resume(ms(3));
    assert!(!s.is_suspended());
    assert_eq!(drain(&mut s), vec![dispatch(t(2), w(0), 1), Command::StartWorker(w(1))]);
}

// ---- close / terminate -----------------------------------------------------------

#[test]
fn close_finishes_tasks_then_stops_workers_then_drains() {
    let mut s = pool(config(2, 2));
    for i in 1..=3 {
        s.submit(t(i), TaskOptions::default(), T0);
    }
    assert_eq!(drain(&mut s), vec![dispatch(t(1), w(1), 1), dispatch(t(2), w(0), 1)]);
    s.close(ms(1));
    assert_eq!(s.lifecycle(), Lifecycle::Closing);
    assert_eq!(drain(&mut s), vec![]);
    s.task_done(w(1), t(1), ms(2));
    assert_eq!(drain(&mut s), vec![Command::Finish(t(1), Ok(())), dispatch(t(3), w(1), 1)]);
    s.task_done(w(0), t(2), ms(3));
    assert_eq!(drain(&mut s), vec![Command::Finish(t(2), Ok(()))]);
    assert_eq!(s.lifecycle(), Lifecycle::Closing);
    s.task_done(w(1), t(3), ms(4));
    assert_eq!(
        drain(&mut s),
        vec![
            Command::Finish(t(3), Ok(())),
            Command::StopWorker(w(0), StopReason::Shutdown),
            Command::StopWorker(w(1), StopReason::Shutdown),
        ]
    );
    assert_eq!(s.lifecycle(), Lifecycle::Stopped);
    s.worker_exited(w(0), None, ExitCause::Stopped, ms(5));
    assert_eq!(
        drain(&mut s),
        vec![Command::Event(SchedEvent::WorkerDown(w(0), ExitCause::Stopped))]
    );
    s.worker_exited(w(1), None, ExitCause::Stopped, ms(6));
    assert_eq!(
        drain(&mut s),
        vec![
            Command::Event(SchedEvent::WorkerDown(w(1), ExitCause::Stopped)),
            Command::Event(SchedEvent::Drained),
        ]
    );
    s.close(ms(7));
    assert_eq!(drain(&mut s), vec![], "Drained only once");
}

#[test]
fn close_stops_a_starting_worker_once_it_is_ready() {
    let mut s = Scheduler::new(config(1, 1));
    s.start(T0);
    drain(&mut s);
    s.close(ms(1));
    assert_eq!(s.lifecycle(), Lifecycle::Stopped);
    assert_eq!(drain(&mut s), vec![], "not drained while a worker exists");
    s.worker_ready(w(0), ms(2));
    assert_eq!(
        drain(&mut s),
        vec![
            Command::Event(SchedEvent::WorkerUp(w(0))),
            Command::StopWorker(w(0), StopReason::Shutdown),
        ]
    );
    s.worker_exited(w(0), None, ExitCause::Stopped, ms(3));
    assert_eq!(
        drain(&mut s),
        vec![
            Command::Event(SchedEvent::WorkerDown(w(0), ExitCause::Stopped)),
            Command::Event(SchedEvent::Drained),
        ]
    );
}

#[test]
fn submit_after_close_returns_false() {
    let mut s = pool(config(1, 1));
    s.submit(t(1), TaskOptions::default(), T0);
    drain(&mut s);
    s.close(ms(1));
    assert!(!s.submit(t(2), TaskOptions::default(), ms(2)));
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.pending_tasks(), 1);
    s.task_done(w(0), t(1), ms(3));
    drain(&mut s);
    assert!(!s.submit(t(3), TaskOptions::default(), ms(4)), "nor once stopped");
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.pending_tasks(), 0);
}

#[test]
fn terminate_cancels_everything() {
    let mut s = pool(config(3, 3));
    s.submit(t(1), TaskOptions::default(), T0);
    s.submit(t(2), opts(Some(ms(50)), 2), T0);
    assert_eq!(drain(&mut s), vec![dispatch(t(1), w(2), 1), dispatch(t(2), w(1), 1)]);
    s.suspend();
    s.submit(t(3), opts(None, 5), T0); // queued beside idle w0
    s.terminate(ms(5));
    assert_eq!(s.lifecycle(), Lifecycle::Stopped);
    assert_eq!(
        drain(&mut s),
        vec![
            Command::KillWorker(w(2)),
            Command::Finish(t(1), Err(TaskError::cancelled())),
            Command::KillWorker(w(1)),
            Command::Finish(t(2), Err(TaskError::cancelled())),
            Command::Finish(t(3), Err(TaskError::cancelled())),
            Command::StopWorker(w(0), StopReason::Shutdown),
        ]
    );
    assert_eq!(s.pending_tasks(), 0);
    assert_eq!(s.queued_tasks(), 0);
    assert_eq!(s.next_deadline(), Some(ms(5) + TERMINATE_GRACE), "only the kill of the leaving");
    assert!(!s.submit(t(4), TaskOptions::default(), ms(6)));
    s.task_done(w(2), t(1), ms(6));
    s.resume(ms(6));
    assert_eq!(drain(&mut s), vec![], "late result ignored, nothing restarts");
    for k in 0..3 {
        s.worker_exited(w(k), None, ExitCause::Killed, ms(7));
    }
    let cmds = drain(&mut s);
    assert_eq!(cmds.last(), Some(&Command::Event(SchedEvent::Drained)));
    assert!(started(&cmds).is_empty());
    assert_eq!(s.all_workers(), 0);
}

#[test]
fn terminate_kills_the_workers_still_leaving_after_its_grace() {
    // w0 was idle: asked to stop, it runs its exit hook, which hangs.
    let mut s = pool(config(2, 2));
    s.submit(t(1), TaskOptions::default(), T0);
    drain(&mut s);
    s.terminate(ms(5));
    let cmds = drain(&mut s);
    assert!(cmds.contains(&Command::StopWorker(w(0), StopReason::Shutdown)), "{cmds:?}");
    s.worker_exited(w(1), None, ExitCause::Killed, ms(6));
    drain(&mut s);
    s.tick(ms(5) + TERMINATE_GRACE - ms(1));
    assert_eq!(drain(&mut s), vec![], "not before the grace");
    s.tick(ms(5) + TERMINATE_GRACE);
    assert_eq!(drain(&mut s), vec![Command::KillWorker(w(0))]);
    assert_eq!(s.next_deadline(), None, "killed once");
    s.worker_exited(w(0), None, ExitCause::Killed, ms(5) + TERMINATE_GRACE);
    assert_eq!(drain(&mut s).last(), Some(&Command::Event(SchedEvent::Drained)));
}

// ---- start failures --------------------------------------------------------------

#[test]
fn start_failures_break_the_pool() {
    let mut s =
        Scheduler::new(Config { min: 1, max: 2, max_start_failures: 3, ..Config::default() });
    s.start(T0);
    assert_eq!(drain(&mut s), vec![Command::StartWorker(w(0))]);
    s.submit(t(1), opts(None, 5), T0);
    drain(&mut s);
    for k in 0..2 {
        s.worker_start_failed(w(k), "init failed".into(), ms(k + 1));
        assert_eq!(
            drain(&mut s),
            vec![
                Command::Event(SchedEvent::WorkerStartFailed(w(k), "init failed".into())),
                Command::StartWorker(w(k + 1)),
            ]
        );
    }
    s.worker_start_failed(w(2), "init failed".into(), ms(3));
    let cmds = drain(&mut s);
    assert_eq!(
        cmds,
        vec![
            Command::Event(SchedEvent::WorkerStartFailed(w(2), "init failed".into())),
            Command::Event(SchedEvent::Broken("init failed".into())),
            Command::Finish(t(1), Err(TaskError::broken("init failed"))),
        ]
    );
    let (_, Err(err)) = &finishes(&cmds)[0] else { panic!("expected an error") };
    assert!(err.is_broken());
    assert_eq!(s.live_workers(), 0);
    assert_eq!(s.pending_tasks(), 0);
    // Later submits fail at once, and no start is tried again.
    assert!(s.submit(t(2), TaskOptions::default(), ms(4)));
    assert_eq!(drain(&mut s), vec![Command::Finish(t(2), Err(TaskError::broken("init failed")))]);
    s.tick(Duration::from_secs(100));
    assert_eq!(drain(&mut s), vec![]);
    s.close(Duration::from_secs(101));
    assert_eq!(drain(&mut s), vec![Command::Event(SchedEvent::Drained)]);
}

#[test]
fn start_failures_count_only_in_a_row() {
    let mut s =
        Scheduler::new(Config { min: 2, max: 2, max_start_failures: 2, ..Config::default() });
    s.start(T0);
    assert_eq!(started(&drain(&mut s)), vec![w(0), w(1)]);
    s.worker_start_failed(w(0), "flaky".into(), ms(1));
    assert_eq!(started(&drain(&mut s)), vec![w(2)]);
    s.worker_ready(w(1), ms(2)); // resets the count
    drain(&mut s);
    s.worker_start_failed(w(2), "flaky".into(), ms(3));
    let cmds = drain(&mut s);
    assert_eq!(started(&cmds), vec![w(3)], "one failure since the last success");
    s.worker_start_failed(w(3), "flaky".into(), ms(4));
    let cmds = drain(&mut s);
    assert!(cmds.contains(&Command::Event(SchedEvent::Broken("flaky".into()))));
    assert!(started(&cmds).is_empty());
}

#[test]
fn worker_exit_while_starting_is_a_start_failure() {
    let mut s =
        Scheduler::new(Config { min: 1, max: 1, max_start_failures: 1, ..Config::default() });
    s.start(T0);
    drain(&mut s);
    s.submit(t(1), TaskOptions::default(), T0);
    s.worker_exited(w(0), None, ExitCause::Code(3), ms(1));
    let cmds = drain(&mut s);
    assert!(
        matches!(cmds[0], Command::Event(SchedEvent::WorkerStartFailed(w, _)) if w == WorkerId(0))
    );
    assert!(matches!(cmds[1], Command::Event(SchedEvent::Broken(_))));
    assert!(matches!(&cmds[2], Command::Finish(t, Err(e)) if *t == TaskId(1) && e.is_broken()));
    assert_eq!(cmds[3], Command::Event(SchedEvent::WorkerDown(w(0), ExitCause::Code(3))));
    assert_eq!(cmds.len(), 4);
}

// ---- reports about unknown things ---------------------------------------------------

#[test]
fn reports_about_unknown_workers_and_tasks_are_ignored() {
    let mut s = pool(config(1, 1));
    s.worker_ready(w(9), T0);
    s.worker_ready(w(0), T0); // already ready
    s.task_done(w(0), t(9), T0);
    s.task_failed(w(9), t(9), TaskError::panic("?"), T0);
    s.worker_exited(w(9), None, ExitCause::Stopped, T0);
    s.worker_start_failed(w(9), "?".into(), T0);
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.live_workers(), 1);
    s.submit(t(1), TaskOptions::default(), ms(1));
    assert_eq!(drain(&mut s), vec![dispatch(t(1), w(0), 1)]);
}

#[test]
fn a_worker_that_retired_as_its_task_arrived_does_not_fail_it() {
    let mut s = pool(config(1, 1));
    s.submit(t(1), TaskOptions::default(), T0);
    assert_eq!(drain(&mut s), vec![dispatch(t(1), w(0), 1)]);
    // The worker exits cleanly (said BYE) without running the task.
    s.worker_exited(w(0), Some(7), ExitCause::Stopped, ms(1));
    assert_eq!(
        drain(&mut s),
        vec![
            Command::Event(SchedEvent::WorkerDown(w(0), ExitCause::Stopped)),
            Command::StartWorker(w(1)),
        ]
    );
    s.worker_ready(w(1), ms(2));
    assert_eq!(
        drain(&mut s),
        vec![Command::Event(SchedEvent::WorkerUp(w(1))), dispatch(t(1), w(1), 1)],
        "the same task, still its first attempt"
    );
}

// ---- returned tasks -------------------------------------------------------

#[test]
fn a_returned_task_frees_its_worker_before_it_finishes() {
    let mut s = pool(config(1, 1));
    s.submit(t(1), TaskOptions::default(), T0);
    s.submit(t(2), TaskOptions::default(), T0);
    assert_eq!(drain(&mut s), vec![dispatch(t(1), w(0), 1)]);
    s.task_returned(w(0), t(1), ms(1));
    // The worker takes t2 while t1's result is decoded; t1 is still pending.
    assert_eq!(drain(&mut s), vec![dispatch(t(2), w(0), 1)]);
    assert!(s.is_returning(t(1)));
    assert_eq!(s.pending_tasks(), 2);
    s.task_done(w(0), t(1), ms(2));
    assert_eq!(drain(&mut s), vec![Command::Finish(t(1), Ok(()))]);
    // t2 still runs on w0: the late Done of t1 did not make w0 idle.
    s.submit(t(3), TaskOptions::default(), ms(3));
    assert_eq!(drain(&mut s), vec![]);
    s.task_done(w(0), t(2), ms(4));
    assert_eq!(drain(&mut s), vec![Command::Finish(t(2), Ok(())), dispatch(t(3), w(0), 1)]);
}

#[test]
fn a_returned_task_that_fails_to_decode_is_retried_or_fails() {
    let mut s = pool(config(1, 1));
    s.submit(t(1), opts(None, 1), T0);
    drain(&mut s);
    s.task_returned(w(0), t(1), ms(1));
    drain(&mut s);
    let err = TaskError::new(TaskErrorKind::WorkerLost {
        worker: w(0),
        pid: None,
        cause: ExitCause::Signal(9),
    });
    s.task_failed(w(0), t(1), err.clone(), ms(2));
    assert_eq!(drain(&mut s), vec![dispatch(t(1), w(0), 2)]);
    s.task_returned(w(0), t(1), ms(3));
    s.task_failed(w(0), t(1), TaskError::serialization("bad bytes"), ms(4));
    let f = finishes(&drain(&mut s));
    assert_eq!(f.len(), 1);
    assert!(matches!(&f[0].1, Err(e) if matches!(e.kind(), TaskErrorKind::Serialization { .. })));
}

#[test]
fn a_returned_task_has_no_deadline_and_cancelling_it_kills_nothing() {
    let mut s = pool(config(1, 1));
    s.submit(t(1), opts(Some(ms(10)), 0), T0);
    drain(&mut s);
    s.task_returned(w(0), t(1), ms(5));
    drain(&mut s);
    assert_eq!(s.next_deadline(), None);
    s.tick(ms(50));
    assert_eq!(drain(&mut s), vec![]);
    assert!(s.cancel(t(1), ms(51)));
    assert_eq!(drain(&mut s), vec![Command::Finish(t(1), Err(TaskError::cancelled()))]);
    // The decode's late Done is ignored.
    s.task_done(w(0), t(1), ms(52));
    assert_eq!(drain(&mut s), vec![]);
}

#[test]
fn a_returned_task_keeps_a_closing_pool_from_draining() {
    let mut s = pool(config(1, 1));
    s.submit(t(1), TaskOptions::default(), T0);
    drain(&mut s);
    s.close(ms(1));
    s.task_returned(w(0), t(1), ms(2));
    assert_eq!(drain(&mut s), vec![]);
    s.task_done(w(0), t(1), ms(3));
    let cmds = drain(&mut s);
    assert_eq!(cmds[0], Command::Finish(t(1), Ok(())));
    assert!(cmds.contains(&Command::StopWorker(w(0), StopReason::Shutdown)));
}

#[test]
fn a_stale_return_is_ignored() {
    let mut s = pool(config(1, 1));
    s.submit(t(1), opts(Some(ms(10)), 0), T0);
    drain(&mut s);
    s.tick(ms(20));
    drain(&mut s);
    // The worker was killed for the timeout; its late reports change nothing.
    s.task_returned(w(0), t(1), ms(21));
    s.task_done(w(0), t(1), ms(22));
    assert!(finishes(&drain(&mut s)).is_empty());
    assert!(!s.is_returning(t(1)));
}
