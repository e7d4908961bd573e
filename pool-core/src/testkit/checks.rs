//! The checks of the conformance suite; see the module docs of `testkit`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use super::MakeBackend;
use crate::error::{BatchError, SubmitRefusal};
use crate::scheduler::TaskOptions;
use crate::{Message, Pool, PoolBuilder, PoolEvent, WorkerId, task};

/// Bounds every wait of a check, so a broken backend fails instead of
/// hanging the test run.
const LIMIT: Duration = Duration::from_secs(20);

fn pool(make: MakeBackend, builder: PoolBuilder) -> Pool {
    builder.build_boxed(make()).expect("valid options")
}

fn two(make: MakeBackend) -> Pool {
    pool(make, Pool::builder().workers(2))
}

/// A gate a task blocks on until the check opens it.
#[derive(Clone)]
struct Gate {
    tx: Sender<()>,
    rx: Receiver<()>,
}

impl Gate {
    fn new() -> Self {
        let (tx, rx) = unbounded();
        Gate { tx, rx }
    }
    fn wait(&self) {
        let _ = self.rx.recv_timeout(LIMIT);
    }
    fn open(&self, n: usize) {
        for _ in 0..n {
            let _ = self.tx.send(());
        }
    }
}

/// Signals from inside tasks ("I started").
fn signal() -> (Sender<WorkerId>, Receiver<WorkerId>) {
    unbounded()
}

fn started(rx: &Receiver<WorkerId>) -> WorkerId {
    rx.recv_timeout(LIMIT).expect("task did not start in time")
}

/// The handle's result within [`LIMIT`].
fn finish<R>(h: crate::TaskHandle<R>) -> Result<R, crate::TaskError> {
    match h.wait_timeout(LIMIT) {
        Ok(r) => r,
        Err(_) => panic!("task did not end in time"),
    }
}

/// A named check.
pub type Check = (&'static str, fn(MakeBackend));

/// Every check, by name.
pub const CHECKS: &[Check] = &[
    ("submit_returns_result", submit_returns_result),
    ("message_stream_in_order", message_stream_in_order),
    ("wait_timeout_hands_handle_back", wait_timeout_hands_handle_back),
    ("poll_never_blocks", poll_never_blocks),
    ("panic_is_an_error_and_pool_survives", panic_is_an_error_and_pool_survives),
    ("bad_burst_then_good", bad_burst_then_good),
    ("map_is_ordered", map_is_ordered),
    ("map_slice_is_ordered", map_slice_is_ordered),
    ("map_slice_runs_on_every_worker", map_slice_runs_on_every_worker),
    ("map_slice_drops_what_it_wrote", map_slice_drops_what_it_wrote),
    ("map_with_chunksize", map_with_chunksize),
    ("map_of_nothing", map_of_nothing),
    ("map_unordered_yields_every_index", map_unordered_yields_every_index),
    ("imap_is_lazy_and_bounded", imap_is_lazy_and_bounded),
    ("map_item_panic_names_the_item", map_item_panic_names_the_item),
    ("imap_error_at_its_position", imap_error_at_its_position),
    ("worker_id_is_visible", worker_id_is_visible),
    ("worker_state_init_and_exit", worker_state_init_and_exit),
    ("worker_init_failure_breaks_pool", worker_init_failure_breaks_pool),
    ("lifespan_replaces_workers", lifespan_replaces_workers),
    ("task_timeout", task_timeout),
    ("batch_task_timeout", batch_task_timeout),
    ("retries", retries),
    ("cancel_queued", cancel_queued),
    ("cancel_running", cancel_running),
    ("suspend_and_resume", suspend_and_resume),
    ("submit_after_close_returns_the_task", submit_after_close_returns_the_task),
    ("close_join_drains", close_join_drains),
    ("terminate_cancels_pending", terminate_cancels_pending),
    ("grows_to_max_and_shrinks_to_min", grows_to_max_and_shrinks_to_min),
    ("pool_events", pool_events),
    ("insights", insights),
    ("scope_borrows", scope_borrows),
    ("nested_pool", nested_pool),
    ("payloads_are_released", payloads_are_released),
    ("many_tasks_one_terminal_each", many_tasks_one_terminal_each),
    ("concurrent_submitters", concurrent_submitters),
    ("build_options_are_checked", build_options_are_checked),
    ("drop_waits_for_submitted_tasks", drop_waits_for_submitted_tasks),
    ("change_function_between_batches", change_function_between_batches),
];

/// `submit` runs the closure and `wait` returns its value.
pub fn submit_returns_result(make: MakeBackend) {
    let pool = two(make);
    assert_eq!(finish(pool.submit(|| 40 + 2).unwrap()).unwrap(), 42);
    let s = String::from("moved in");
    assert_eq!(finish(pool.submit(move || s.len()).unwrap()).unwrap(), 8);
}

/// Scheduled, Started(worker), Progress, Log, Data, then Done, in order.
pub fn message_stream_in_order(make: MakeBackend) {
    let pool = two(make);
    let h = pool
        .submit(|| {
            task::progress(0.5);
            task::log("half");
            task::data(vec![7u8]);
            task::progress(2.0); // clamped to 1
            "ok"
        })
        .unwrap();
    let msgs: Vec<Message<&str>> = h.messages().collect();
    assert_eq!(msgs.len(), 7, "{msgs:?}");
    assert_eq!(msgs[0], Message::Scheduled);
    assert!(matches!(msgs[1], Message::Started(_)), "{msgs:?}");
    assert_eq!(
        msgs[2..],
        [
            Message::Progress(0.5),
            Message::Log("half".into()),
            Message::Data(vec![7]),
            Message::Progress(1.0),
            Message::Done("ok"),
        ]
    );
}

/// `wait_timeout` on a running task hands the handle back.
pub fn wait_timeout_hands_handle_back(make: MakeBackend) {
    let pool = two(make);
    let gate = Gate::new();
    let g = gate.clone();
    let h = pool.submit(move || g.wait()).unwrap();
    let h = h.wait_timeout(Duration::from_millis(5)).expect_err("the task is blocked");
    assert!(!h.is_finished());
    gate.open(1);
    finish(h).unwrap();
}

/// `poll` returns the handle while the task runs, the result after.
pub fn poll_never_blocks(make: MakeBackend) {
    let pool = two(make);
    let gate = Gate::new();
    let g = gate.clone();
    let h = pool
        .submit(move || {
            g.wait();
            5
        })
        .unwrap();
    let h = h.poll().expect_err("blocked");
    gate.open(1);
    let (tx, rx) = bounded(1);
    let h2 = pool.submit(move || tx.send(()).unwrap()).unwrap();
    rx.recv_timeout(LIMIT).unwrap();
    finish(h2).unwrap();
    assert_eq!(finish(h).unwrap(), 5);
}

/// A panic ends the task with `Panic` and its message; the pool works on.
pub fn panic_is_an_error_and_pool_survives(make: MakeBackend) {
    let pool = two(make);
    let e = finish(pool.submit(|| -> u8 { panic!("boom {}", 7) }).unwrap()).unwrap_err();
    assert!(e.is_panic(), "{e}");
    assert!(e.to_string().contains("boom 7"), "{e}");
    assert_eq!(finish(pool.submit(|| 1).unwrap()).unwrap(), 1);
}

/// RELIABILITY row 2: a burst of failing tasks, then good ones run.
pub fn bad_burst_then_good(make: MakeBackend) {
    let pool = two(make);
    let bad: Vec<_> = (0..100).map(|_| pool.submit(|| -> u32 { panic!("bad") }).unwrap()).collect();
    let good: Vec<_> = (0..100u32).map(|i| pool.submit(move || i).unwrap()).collect();
    for h in bad {
        assert!(finish(h).unwrap_err().is_panic());
    }
    for (i, h) in good.into_iter().enumerate() {
        assert_eq!(finish(h).unwrap(), i as u32);
    }
}

/// `map` returns results in input order.
pub fn map_is_ordered(make: MakeBackend) {
    let pool = two(make);
    let out = pool.map(0..10_000u64, |x| x * 3).unwrap();
    assert_eq!(out, (0..10_000u64).map(|x| x * 3).collect::<Vec<_>>());
    let words = vec!["a".to_string(), "bb".to_string(), "ccc".to_string()];
    assert_eq!(pool.map(words, |w| w.len()).unwrap(), vec![1, 2, 3]);
}

/// `map_slice` borrows its input and returns results in order.
pub fn map_slice_is_ordered(make: MakeBackend) {
    let pool = two(make);
    let input: Vec<u64> = (0..100_000).collect();
    let out = pool.map_slice(&input, |x| x + 1).unwrap();
    assert!(out.iter().enumerate().all(|(i, v)| *v == i as u64 + 1));
    let names: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
    let lens = pool.batch().chunksize(7).map_slice(&names, |s| s.clone()).unwrap();
    assert_eq!(lens, names);
    let e =
        pool.map_slice(&names, |s| if s == "n42" { panic!("no 42") } else { s.len() }).unwrap_err();
    assert_eq!(e.index(), Some(42), "{e}");
    // With a task timeout, each chunk is its own task (its own deadline).
    let timed = pool.batch().task_timeout(Duration::from_secs(60));
    let out = timed.map_slice(&input, |x| x + 1).unwrap();
    assert!(out.iter().enumerate().all(|(i, v)| *v == i as u64 + 1));
    let timed = pool.batch().task_timeout(Duration::from_secs(60));
    let e = timed.map_slice(&names, |s| if s == "n42" { panic!("no 42") } else { 1 }).unwrap_err();
    assert_eq!(e.index(), Some(42), "{e}");
}

/// `map_slice` with automatic chunking keeps every worker busy: the first
/// two items wait for each other, so the batch ends only if two workers
/// run at once.
pub fn map_slice_runs_on_every_worker(make: MakeBackend) {
    let pool = two(make);
    // Item 0 and item 1 each signal, then wait for the other's signal.
    let (to_1, from_0) = bounded::<()>(1);
    let (to_0, from_1) = bounded::<()>(1);
    let signals = [(to_1, from_1), (to_0, from_0)];
    let input: Vec<u64> = (0..10_000).collect();
    let out = pool
        .map_slice(&input, |&x| {
            if let Some((tell, hear)) = signals.get(x as usize) {
                tell.send(()).unwrap();
                hear.recv_timeout(Duration::from_secs(30))
                    .expect("items 0 and 1 never ran at the same time");
            }
            x * 2
        })
        .unwrap();
    assert!(out.iter().enumerate().all(|(i, v)| *v == 2 * i as u64));
}

/// A failed `map_slice` drops every result it made, once: none leak, none
/// is dropped twice, whichever ranges had run when the item failed.
pub fn map_slice_drops_what_it_wrote(make: MakeBackend) {
    struct Counted<'a>(&'a AtomicUsize);
    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let pool = two(make);
    let (made, dropped) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let input: Vec<u32> = (0..50_000).collect();
    let run = pool.map_slice(&input, |&x| {
        if x == 30_000 {
            panic!("no 30000");
        }
        made.fetch_add(1, Ordering::Relaxed);
        Counted(&dropped)
    });
    let Err(e) = run else { panic!("item 30000 panicked, yet the batch succeeded") };
    assert_eq!(e.index(), Some(30_000), "{e}");
    assert_eq!(made.load(Ordering::Relaxed), dropped.load(Ordering::Relaxed));
    let ok = pool.map_slice(&input[..1000], |_| Counted(&dropped)).unwrap();
    assert_eq!(ok.len(), 1000);
}

/// An explicit chunksize gives the same results and tasks of that size.
pub fn map_with_chunksize(make: MakeBackend) {
    let pool = two(make);
    let events = pool.events();
    let out = pool.batch().chunksize(10).map(0..100u32, |x| x + 1).unwrap();
    assert_eq!(out, (1..=100u32).collect::<Vec<_>>());
    let chunks = events.try_iter().filter(|e| matches!(e, PoolEvent::TaskStarted { .. })).count();
    assert_eq!(chunks, 10);
    // The progress bar draws (to stderr) without changing results.
    let out = pool.batch().chunksize(10).progress_bar(true).map(0..100u32, |x| x + 1).unwrap();
    assert_eq!(out, (1..=100u32).collect::<Vec<_>>());
    let lazy: Vec<u32> =
        pool.batch().progress_bar(true).imap(0..50u32, |x| x).map(Result::unwrap).collect();
    assert_eq!(lazy.len(), 50);
}

/// RELIABILITY row 29: empty input gives an empty result at once; zero
/// chunksize is rejected naming the option.
pub fn map_of_nothing(make: MakeBackend) {
    let pool = two(make);
    assert_eq!(pool.map(Vec::<u8>::new(), |x| x).unwrap(), Vec::<u8>::new());
    assert_eq!(pool.imap(0..0u8, |x| x).count(), 0);
    assert_eq!(pool.map_slice(&[] as &[u8], |x| *x).unwrap(), Vec::<u8>::new());
    match pool.batch().chunksize(0).map(0..3, |x: i32| x) {
        Err(BatchError::InvalidOption(e)) => assert_eq!(e.option(), "chunksize"),
        other => panic!("expected InvalidOption, got {other:?}"),
    }
    let first = pool.batch().max_in_flight(0).imap(0..3, |x: i32| x).next();
    assert!(matches!(first, Some(Err(BatchError::InvalidOption(_)))), "{first:?}");
}

/// `map_unordered` yields every index once.
pub fn map_unordered_yields_every_index(make: MakeBackend) {
    let pool = two(make);
    let mut seen: Vec<(usize, u64)> =
        pool.map_unordered(0..5000u64, |x| x * x).map(|r| r.unwrap()).collect();
    seen.sort();
    assert_eq!(seen.len(), 5000);
    assert!(seen.iter().all(|(i, v)| *v == (*i as u64) * (*i as u64)));
}

/// `imap` pulls lazily: an endless input works, and the items pulled stay
/// bounded by what may be in flight.
pub fn imap_is_lazy_and_bounded(make: MakeBackend) {
    let pool = two(make);
    let pulled = Arc::new(AtomicUsize::new(0));
    let p = pulled.clone();
    let endless = (0u64..).inspect(move |_| {
        p.fetch_add(1, Ordering::Relaxed);
    });
    let first: Vec<u64> = pool
        .batch()
        .chunksize(1)
        .max_in_flight(4)
        .imap(endless, |x| x * 2)
        .take(10)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(first, (0..10).map(|x| x * 2).collect::<Vec<_>>());
    // Bounded by what was consumed and what may be out: results that came
    // back ahead of their turn keep their slot until they are handed out
    // (were they to free it, one slow item would let the rest of an
    // endless input run on behind it).
    let n = pulled.load(Ordering::Relaxed);
    assert!(n <= 10 + 4, "imap pulled {n} items for 10 results");
}

/// RELIABILITY row 27: one failing item fails `map` with its index, and
/// the pool is reusable.
pub fn map_item_panic_names_the_item(make: MakeBackend) {
    let pool = two(make);
    let e = pool.map(0..1000u32, |x| if x == 737 { panic!("bad item") } else { x }).unwrap_err();
    assert_eq!(e.index(), Some(737), "{e}");
    assert!(e.task_error().unwrap().is_panic());
    assert_eq!(pool.map(0..3u32, |x| x).unwrap(), vec![0, 1, 2]);
}

/// RELIABILITY row 26: `imap` yields earlier results, then the error at its
/// position, then the rest.
pub fn imap_error_at_its_position(make: MakeBackend) {
    let pool = two(make);
    let out: Vec<_> = pool.imap(0..20u32, |x| if x == 5 { panic!("five") } else { x }).collect();
    assert_eq!(out.len(), 20);
    for (i, r) in out.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v as usize, i),
            Err(e) => {
                assert_eq!(i, 5);
                assert_eq!(e.index(), Some(5));
            }
        }
    }
    assert!(out[5].is_err());
}

/// `task::worker_id()` inside a task names the worker the stream reports.
pub fn worker_id_is_visible(make: MakeBackend) {
    let pool = two(make);
    let h = pool.submit(task::worker_id).unwrap();
    let msgs: Vec<_> = h.messages().collect();
    let Message::Started(w) = msgs[1] else { panic!("{msgs:?}") };
    assert_eq!(msgs.last(), Some(&Message::Done(Some(w))));
    assert_eq!(task::worker_id(), None, "outside a task there is no worker");
}

/// `worker_init` makes per-worker state that tasks use; `worker_exit` gets
/// it back when the worker leaves.
pub fn worker_state_init_and_exit(make: MakeBackend) {
    let (tx, rx) = unbounded::<(WorkerId, u64)>();
    let builder = Pool::builder()
        .workers(2)
        .worker_init(|w: WorkerId| Ok::<_, String>((w, 0u64)))
        .worker_exit(move |w, state: Option<(WorkerId, u64)>| {
            let (id, n) = state.expect("state reaches worker_exit");
            assert_eq!(id, w);
            tx.send((w, n)).unwrap();
        });
    let pool = pool(make, builder);
    let counts = pool
        .map(0..200u32, |_| {
            task::with_state(|s: &mut (WorkerId, u64)| {
                s.1 += 1;
                s.0
            })
            .expect("state is there")
        })
        .unwrap();
    assert!(counts.iter().all(|w| w.0 < 2));
    drop(pool);
    let exits: Vec<_> = rx.try_iter().collect();
    assert_eq!(exits.len(), 2, "{exits:?}");
    // Chunks count as tasks for the state; every item ran exactly once.
    assert_eq!(exits.iter().map(|e| e.1).sum::<u64>(), 200);
}

/// RELIABILITY row 19: `worker_init` that always fails breaks the pool
/// after a few starts; tasks fail with `Broken`, nothing hangs.
pub fn worker_init_failure_breaks_pool(make: MakeBackend) {
    let starts = Arc::new(AtomicUsize::new(0));
    let s = starts.clone();
    let builder = Pool::builder().workers(2).max_start_failures(3).worker_init(move |_| {
        s.fetch_add(1, Ordering::SeqCst);
        Err::<(), _>("no database".to_string())
    });
    let pool = pool(make, builder);
    let e = finish(pool.submit(|| 1).unwrap()).unwrap_err();
    assert!(e.is_broken(), "{e}");
    assert!(e.to_string().contains("no database"), "{e}");
    let e = finish(pool.submit(|| 2).unwrap()).unwrap_err();
    assert!(e.is_broken(), "{e}");
    assert!(starts.load(Ordering::SeqCst) <= 4, "no respawn storm");
}

/// RELIABILITY row 24: a worker is replaced after `lifespan` tasks.
pub fn lifespan_replaces_workers(make: MakeBackend) {
    let pool = pool(make, Pool::builder().workers(1).lifespan(2));
    let ids: Vec<WorkerId> =
        (0..6).map(|_| finish(pool.submit(task::worker_id).unwrap()).unwrap().unwrap()).collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[2], ids[3]);
    assert_eq!(ids[4], ids[5]);
    let distinct: HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 3, "{ids:?}");
}

/// RELIABILITY row 16: a task past its timeout ends `Timeout`; the pool
/// replaces the worker and goes on.
pub fn task_timeout(make: MakeBackend) {
    let pool = two(make);
    let gate = Gate::new();
    let g = gate.clone();
    let opts = TaskOptions { timeout: Some(Duration::from_millis(30)), retries: 0 };
    let h = pool.submit_with(opts, move || g.wait()).unwrap();
    let e = finish(h).unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert_eq!(pool.map(0..10u32, |x| x).unwrap().len(), 10);
    gate.open(1);
}

/// A batch item past the pool's task timeout fails that batch with
/// `Timeout`.
pub fn batch_task_timeout(make: MakeBackend) {
    let pool = pool(make, Pool::builder().workers(2).task_timeout(Duration::from_millis(30)));
    let gate = Gate::new();
    let g = gate.clone();
    let e = pool
        .batch()
        .chunksize(1)
        .map(0..4u32, move |x| {
            if x == 2 {
                g.wait();
            }
            x
        })
        .unwrap_err();
    assert_eq!(e.index(), Some(2), "{e}");
    assert!(e.task_error().unwrap().is_timeout(), "{e}");
    gate.open(1);
}

/// A failed attempt runs again while retries are left.
pub fn retries(make: MakeBackend) {
    let pool = two(make);
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let opts = TaskOptions { timeout: None, retries: 2 };
    let h = pool
        .submit_with(opts, move || {
            if r.fetch_add(1, Ordering::SeqCst) < 2 {
                panic!("flaky");
            }
            "third time"
        })
        .unwrap();
    assert_eq!(finish(h).unwrap(), "third time");
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let h = pool.submit_with(opts, || -> () { panic!("always") }).unwrap();
    let e = finish(h).unwrap_err();
    assert!(e.is_panic());
    assert_eq!(e.attempts(), 3, "{e}");
}

/// RELIABILITY row 18: a queued task is cancelled without touching a
/// worker.
pub fn cancel_queued(make: MakeBackend) {
    let pool = pool(make, Pool::builder().workers(1));
    let gate = Gate::new();
    let g = gate.clone();
    let (tx, rx) = signal();
    let blocker = pool
        .submit(move || {
            tx.send(task::worker_id().unwrap()).unwrap();
            g.wait();
        })
        .unwrap();
    started(&rx);
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let queued = pool.submit(move || r.store(true, Ordering::SeqCst)).unwrap();
    queued.cancel();
    let e = finish(queued).unwrap_err();
    assert!(e.is_cancelled(), "{e}");
    gate.open(1);
    finish(blocker).unwrap();
    assert_eq!(finish(pool.submit(|| 3).unwrap()).unwrap(), 3);
    assert!(!ran.load(Ordering::SeqCst));
}

/// RELIABILITY row 18: a running task is cancelled; its worker is
/// replaced and the pool goes on.
pub fn cancel_running(make: MakeBackend) {
    let pool = pool(make, Pool::builder().workers(1));
    let gate = Gate::new();
    let g = gate.clone();
    let (tx, rx) = signal();
    let h = pool
        .submit(move || {
            tx.send(task::worker_id().unwrap()).unwrap();
            g.wait();
        })
        .unwrap();
    started(&rx);
    h.cancel();
    assert!(finish(h).unwrap_err().is_cancelled());
    assert_eq!(finish(pool.submit(|| 4).unwrap()).unwrap(), 4);
    gate.open(1);
}

/// Nothing starts between `suspend` and `resume`.
pub fn suspend_and_resume(make: MakeBackend) {
    let pool = two(make);
    pool.suspend();
    let h = pool.submit(|| 9).unwrap();
    // A round trip through the driver: it handled the suspend and the
    // submit before it answers.
    let _ = pool.live_workers();
    assert_eq!(h.next_message(Some(Duration::ZERO)), Some(Message::Scheduled));
    assert_eq!(h.next_message(Some(Duration::ZERO)), None, "nothing started while suspended");
    pool.resume();
    assert_eq!(finish(h).unwrap(), 9);
}

/// RELIABILITY row 23: after `close`, `submit` hands the task back and
/// batches fail with `Closed`.
pub fn submit_after_close_returns_the_task(make: MakeBackend) {
    let pool = two(make);
    pool.close();
    let e = pool.submit(|| 5).unwrap_err();
    assert_eq!(e.reason(), SubmitRefusal::Closed);
    assert_eq!((e.into_inner())(), 5, "the task comes back");
    assert_eq!(pool.map(0..3, |x: i32| x).unwrap_err(), BatchError::Closed);
    pool.join();
}

/// RELIABILITY row 22: `close` + `join` drains every submitted task, also
/// with worker recycling.
pub fn close_join_drains(make: MakeBackend) {
    let pool = pool(make, Pool::builder().workers(2).lifespan(3));
    let hs: Vec<_> = (0..100u32).map(|i| pool.submit(move || i * 2).unwrap()).collect();
    pool.close();
    pool.join();
    for (i, h) in hs.into_iter().enumerate() {
        assert!(h.is_finished());
        assert_eq!(h.wait().unwrap(), 2 * i as u32);
    }
}

/// RELIABILITY row 21: `terminate` with many tasks pending returns, and
/// every pending task ends `Cancelled`.
pub fn terminate_cancels_pending(make: MakeBackend) {
    let pool = pool(make, Pool::builder().workers(1));
    let gate = Gate::new();
    let g = gate.clone();
    let (tx, rx) = signal();
    let busy = pool
        .submit(move || {
            tx.send(task::worker_id().unwrap()).unwrap();
            g.wait();
        })
        .unwrap();
    started(&rx);
    let pending: Vec<_> = (0..10_000).map(|i| pool.submit(move || i).unwrap()).collect();
    pool.terminate();
    assert!(finish(busy).unwrap_err().is_cancelled());
    for h in pending {
        assert!(h.is_finished());
        assert!(h.wait().unwrap_err().is_cancelled());
    }
    gate.open(1);
}

/// The pool grows to `max` while tasks wait and shrinks back to `min`
/// after the idle timeout.
pub fn grows_to_max_and_shrinks_to_min(make: MakeBackend) {
    let builder = Pool::builder().min(1).max(3).idle_timeout(Duration::from_millis(20));
    let pool = pool(make, builder);
    let events = pool.events();
    assert!(pool.live_workers() <= 1);
    let gate = Gate::new();
    let (tx, rx) = signal();
    let hs: Vec<_> = (0..3)
        .map(|_| {
            let (g, tx) = (gate.clone(), tx.clone());
            pool.submit(move || {
                tx.send(task::worker_id().unwrap()).unwrap();
                g.wait();
            })
            .unwrap()
        })
        .collect();
    let ids: HashSet<_> = (0..3).map(|_| started(&rx)).collect();
    assert_eq!(ids.len(), 3, "three tasks run at once on three workers");
    assert_eq!(pool.live_workers(), 3);
    gate.open(3);
    for h in hs {
        finish(h).unwrap();
    }
    let mut down = 0;
    while down < 2 {
        if let PoolEvent::WorkerDown { .. } = events.recv_timeout(LIMIT).expect("idle workers stop")
        {
            down += 1;
        }
    }
    assert_eq!(pool.live_workers(), 1);
}

/// Pool events: workers up, per-item results, progress up to 1, finished.
pub fn pool_events(make: MakeBackend) {
    // No worker starts before the first task, so none comes up before the
    // subscription.
    let pool = pool(make, Pool::builder().min(0).max(2));
    let events = pool.events();
    let _ = pool.batch().chunksize(3).map(0..10u32, |x| x).unwrap();
    drop(pool);
    let all: Vec<PoolEvent> = events.try_iter().collect();
    assert!(all.iter().any(|e| matches!(e, PoolEvent::WorkerUp(_))), "{all:?}");
    let mut indices: Vec<usize> = all
        .iter()
        .filter_map(|e| match e {
            PoolEvent::BatchResult { index, ok: true, .. } => Some(*index),
            _ => None,
        })
        .collect();
    indices.sort();
    assert_eq!(indices, (0..10).collect::<Vec<_>>());
    let last_progress = all.iter().rev().find_map(|e| match e {
        PoolEvent::BatchProgress { fraction, .. } => *fraction,
        _ => None,
    });
    assert_eq!(last_progress, Some(1.0));
    assert!(all.iter().any(|e| matches!(e, PoolEvent::BatchFinished(_))));
    assert_eq!(all.last(), Some(&PoolEvent::Finished), "{all:?}");
}

/// Insights count the tasks each worker ran and print a table.
pub fn insights(make: MakeBackend) {
    let pool = two(make);
    let hs: Vec<_> = (0..20).map(|i| pool.submit(move || i).unwrap()).collect();
    for h in hs {
        finish(h).unwrap();
    }
    assert!(pool.insights().total_tasks() <= 20);
    pool.close();
    pool.join();
    let i = pool.insights();
    assert_eq!(i.workers.len(), 2);
    assert!(i.workers.iter().all(|w| !w.alive));
    assert_eq!(i.total_tasks(), 20);
    let table = i.to_string();
    assert!(table.contains("util") && table.contains("total: 20 tasks"), "{table}");
}

/// Scoped tasks and maps borrow from the caller's stack.
pub fn scope_borrows(make: MakeBackend) {
    let pool = two(make);
    let data: Vec<u32> = (0..1000).collect();
    let mut total = 0u64;
    let (sum, doubled) = pool.scope(|s| {
        let h = s.submit(|| data.iter().map(|x| *x as u64).sum::<u64>()).unwrap();
        let doubled = s.map(&data, |x| x * 2).unwrap();
        (h.wait().unwrap(), doubled)
    });
    total += sum;
    assert_eq!(total, 499_500);
    assert_eq!(doubled[999], 1998);
}

/// A task may create and use a pool of its own.
pub fn nested_pool(make: MakeBackend) {
    let pool = two(make);
    let h = pool
        .submit(move || {
            let inner = Pool::builder().workers(2).build_boxed(make()).unwrap();
            inner.map(0..100u32, |x| x + 1).unwrap().into_iter().sum::<u32>()
        })
        .unwrap();
    assert_eq!(finish(h).unwrap(), 5050);
}

/// RELIABILITY row 28: nothing keeps arguments or results after delivery.
pub fn payloads_are_released(make: MakeBackend) {
    let pool = two(make);
    let arg = Arc::new(vec![1u8; 1024]);
    let a = arg.clone();
    let h = pool.submit(move || a.len()).unwrap();
    assert_eq!(finish(h).unwrap(), 1024);
    assert_eq!(Arc::strong_count(&arg), 1, "the task's captures were dropped");
    let items: Vec<Arc<u8>> = (0..100).map(|_| arg2()).collect();
    let weak: Vec<_> = items.iter().map(Arc::downgrade).collect();
    let out = pool.map(items, |a| a).unwrap();
    drop(out);
    assert!(weak.iter().all(|w| w.upgrade().is_none()), "results were released");

    fn arg2() -> Arc<u8> {
        Arc::new(1)
    }
}

/// Many tiny tasks: each ends exactly once with its own result.
pub fn many_tasks_one_terminal_each(make: MakeBackend) {
    let pool = two(make);
    let hs: Vec<_> = (0..10_000u64).map(|i| pool.submit(move || i).unwrap()).collect();
    for (i, h) in hs.into_iter().enumerate() {
        let msgs: Vec<_> = h.messages().collect();
        let terminals =
            msgs.iter().filter(|m| matches!(m, Message::Done(_) | Message::Failed(_))).count();
        assert_eq!(terminals, 1);
        assert_eq!(msgs.last(), Some(&Message::Done(i as u64)));
    }
}

/// RELIABILITY row 30: submitters on several threads never strand a task
/// (lost wake-ups).
pub fn concurrent_submitters(make: MakeBackend) {
    let pool = two(make);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let pool = &pool;
            s.spawn(move || {
                for i in 0..1000u64 {
                    let h = pool.submit(move || t * 10_000 + i).unwrap();
                    assert_eq!(finish(h).unwrap(), t * 10_000 + i);
                }
            });
        }
    });
}

/// RELIABILITY rows 24 and 29: bad options are rejected naming the option.
pub fn build_options_are_checked(make: MakeBackend) {
    let cases: Vec<(PoolBuilder, &str)> = vec![
        (Pool::builder().workers(0), "max"),
        (Pool::builder().min(3).max(2), "min"),
        (Pool::builder().lifespan(0), "lifespan"),
        (Pool::builder().task_timeout(Duration::ZERO), "task_timeout"),
        (Pool::builder().max_start_failures(0), "max_start_failures"),
    ];
    for (builder, option) in cases {
        let e = builder.build_boxed(make()).unwrap_err();
        assert_eq!(e.option(), option, "{e}");
        assert!(e.to_string().contains(option), "{e}");
    }
    let pool = two(make);
    let opts = TaskOptions { timeout: Some(Duration::ZERO), retries: 0 };
    let e = pool.submit_with(opts, || ()).unwrap_err();
    assert_eq!(e.reason(), SubmitRefusal::InvalidOption("timeout"));
}

/// Dropping the pool runs the tasks already submitted.
pub fn drop_waits_for_submitted_tasks(make: MakeBackend) {
    let pool = two(make);
    let hs: Vec<_> = (0..50u32).map(|i| pool.submit(move || i).unwrap()).collect();
    drop(pool);
    for (i, h) in hs.into_iter().enumerate() {
        assert!(h.is_finished());
        assert_eq!(h.wait().unwrap(), i as u32);
    }
}

/// Each batch takes its own function (pydidas' `change_function`).
pub fn change_function_between_batches(make: MakeBackend) {
    let pool = two(make);
    assert_eq!(pool.map(1..4, |x: i32| x + 1).unwrap(), vec![2, 3, 4]);
    assert_eq!(pool.map(1..4, |x: i32| x * 10).unwrap(), vec![10, 20, 30]);
    assert_eq!(pool.map(1..4, |x: i32| format!("{x}")).unwrap(), vec!["1", "2", "3"]);
}
