//! Checks with named functions ([`crate::function`]): they run on every
//! backend, in-process or not, so process backends (which run no closures)
//! pass them too. Backends that run named functions must be made with
//! [`registry`] so their workers know these functions.

use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::MakeBackend;
use crate::error::BatchError;
use crate::function::{Function, Registry};
use crate::scheduler::TaskOptions;

use crate::{Codec, Pool, task};

fn square(x: u64) -> u64 {
    x * x
}
fn fail_on_13(x: u64) -> u64 {
    assert!(x != 13, "thirteen is unlucky");
    x
}
fn worker_of(_: ()) -> Option<u64> {
    task::worker_id().map(|w| w.0)
}
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
fn report(x: u64) -> u64 {
    task::progress(0.5);
    task::log(format!("item {x}"));
    x
}
fn bad_result(_: u8) -> NotSerializable {
    NotSerializable
}

/// A value whose serialization always fails.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct NotSerializable;

impl Serialize for NotSerializable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("NotSerializable refuses to be serialized"))
    }
}

fn takes_bad(_: NotSerializable) -> u8 {
    0
}

/// `x * x`.
pub static SQUARE: Function<u64, u64> = Function::new("testkit.square", square);
/// Panics on 13.
pub static FAIL_ON_13: Function<u64, u64> = Function::new("testkit.fail_on_13", fail_on_13);
/// The id of the worker running it.
pub static WORKER_OF: Function<(), Option<u64>> = Function::new("testkit.worker_of", worker_of);
/// Sleeps the given milliseconds.
pub static SLEEP_MS: Function<u64, u64> = Function::new("testkit.sleep_ms", sleep_ms);
/// Reports progress 0.5 and logs `item {x}`, returns `x`.
pub static REPORT: Function<u64, u64> = Function::new("testkit.report", report);
/// Returns a value that cannot be serialized.
pub static BAD_RESULT: Function<u8, NotSerializable> =
    Function::new("testkit.bad_result", bad_result);
/// Takes an argument that cannot be serialized.
pub static TAKES_BAD: Function<NotSerializable, u8> = Function::new("testkit.takes_bad", takes_bad);

/// The functions of the checks, for a backend's workers.
pub fn registry() -> Registry {
    [
        &SQUARE as &'static dyn crate::function::NamedFunction,
        &FAIL_ON_13,
        &WORKER_OF,
        &SLEEP_MS,
        &BAD_RESULT,
        &TAKES_BAD,
        &REPORT,
    ]
    .into_iter()
    .try_fold(Registry::new(), |r, f| r.with(f))
    .expect("distinct names")
}

fn two(make: MakeBackend) -> Pool {
    Pool::builder().workers(2).build_boxed(make()).expect("valid options")
}

/// `submit_fn`, `map_fn`, `imap_fn` and `map_unordered_fn` give the
/// function's results, in order where promised.
pub fn named_functions_run(make: MakeBackend) {
    let pool = two(make);
    assert_eq!(pool.submit_fn(&SQUARE, 12).unwrap().wait().unwrap(), 144);
    let out = pool.map_fn(&SQUARE, 0..1000u64).unwrap();
    assert_eq!(out, (0..1000u64).map(|x| x * x).collect::<Vec<_>>());
    let lazy: Vec<u64> = pool.imap_fn(&SQUARE, 0..100u64).map(|r| r.unwrap()).collect();
    assert_eq!(lazy, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
    let mut un: Vec<(usize, u64)> =
        pool.map_unordered_fn(&SQUARE, 0..100u64).map(|r| r.unwrap()).collect();
    un.sort();
    assert_eq!(un.len(), 100);
    assert!(un.iter().all(|(i, v)| *v == (*i as u64).pow(2)));
    assert_eq!(pool.map_fn(&SQUARE, Vec::<u64>::new()).unwrap(), Vec::<u64>::new());
}

/// A batch's tasks' messages reach `on_message` with their item's index
/// (chunks of one item), before the item's result.
pub fn named_batch_messages(make: MakeBackend) {
    use std::sync::Mutex;
    let pool = two(make);
    let seen: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let sink = seen.clone();
    let out = pool
        .batch()
        .chunksize(1)
        .on_message(move |index, m| {
            let text = match m {
                crate::backend::TaskMessage::Progress(f) => format!("progress {f}"),
                crate::backend::TaskMessage::Log(t) => t,
                crate::backend::TaskMessage::Data(d) => format!("{} bytes", d.len()),
            };
            sink.lock().unwrap().push((index, text));
        })
        .map_fn(&REPORT, 0..5u64)
        .unwrap();
    assert_eq!(out, vec![0, 1, 2, 3, 4]);
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let want: Vec<(usize, String)> =
        (0..5).flat_map(|i| [(i, format!("item {i}")), (i, "progress 0.5".to_string())]).collect();
    assert_eq!(seen, want);
}

/// An open batch takes items while it runs: the first result arrives
/// while the input is still open, items sent later run in the same batch,
/// and the batch ends when the feeder is dropped.
pub fn named_open_batch(make: MakeBackend) {
    let pool = two(make);
    let (feeder, mut results) =
        pool.batch().open_with(SQUARE.as_fn(), Some(Codec::for_function(&SQUARE)));
    feeder.send(3).unwrap();
    assert_eq!(results.next().unwrap().unwrap(), (0, 9));
    for x in 1..=200u64 {
        feeder.send(x).unwrap();
    }
    let more = feeder.clone();
    drop(feeder);
    more.send(1000).unwrap();
    drop(more);
    let mut rest: Vec<(usize, u64)> = results.map(|r| r.unwrap()).collect();
    rest.sort();
    assert_eq!(rest.len(), 201);
    assert!(rest[..200].iter().all(|&(i, v)| v == (i as u64).pow(2)), "{rest:?}");
    assert_eq!(rest[200], (201, 1_000_000));
}

/// A panicking item fails with its index and message; other items and
/// later tasks are unaffected.
pub fn named_function_panics(make: MakeBackend) {
    let pool = two(make);
    let e = pool.map_fn(&FAIL_ON_13, 0..50u64).unwrap_err();
    assert_eq!(e.index(), Some(13), "{e}");
    assert!(e.to_string().contains("thirteen is unlucky"), "{e}");
    let items: Vec<_> = pool.imap_fn(&FAIL_ON_13, 10..16u64).collect();
    assert!(items[3].is_err() && items.iter().filter(|r| r.is_ok()).count() == 5);
    let e = pool.submit_fn(&FAIL_ON_13, 13).unwrap().wait().unwrap_err();
    assert!(e.is_panic(), "{e}");
    assert_eq!(pool.submit_fn(&SQUARE, 3).unwrap().wait().unwrap(), 9);
}

/// RELIABILITY rows 1, 7: where arguments and results cross a process
/// boundary, an unserializable one fails that task with `Serialization`
/// and the worker carries on. In-process backends pass values as they are.
pub fn named_serialization_errors(make: MakeBackend) {
    let pool = two(make);
    let r = pool.submit_fn(&BAD_RESULT, 1).unwrap().wait();
    let a = pool.submit_fn(&TAKES_BAD, NotSerializable).unwrap().wait();
    let m = pool.map_fn(&TAKES_BAD, vec![NotSerializable, NotSerializable]);
    if pool.runs_closures() {
        assert_eq!(r.unwrap(), NotSerializable);
        assert_eq!(a.unwrap(), 0);
        assert_eq!(m.unwrap(), vec![0, 0]);
    } else {
        let e = r.unwrap_err();
        assert!(e.is_serialization(), "{e}");
        let e = a.unwrap_err();
        assert!(e.is_serialization() && e.to_string().contains("arguments"), "{e}");
        match m {
            Err(BatchError::Failed { index: 0, error }) => assert!(error.is_serialization()),
            other => panic!("expected a serialization failure, got {other:?}"),
        }
    }
    assert_eq!(pool.map_fn(&SQUARE, 0..3u64).unwrap(), vec![0, 1, 4]);
}

/// Named tasks see their worker id, and lifespan replaces workers.
pub fn named_worker_id_and_lifespan(make: MakeBackend) {
    let pool = Pool::builder().workers(1).lifespan(2).build_boxed(make()).unwrap();
    let ids: Vec<u64> =
        (0..4).map(|_| pool.submit_fn(&WORKER_OF, ()).unwrap().wait().unwrap().unwrap()).collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[2], ids[3]);
    assert_ne!(ids[1], ids[2]);
}

/// A named task past its timeout ends `Timeout`; a retried one runs again.
pub fn named_timeout_and_retries(make: MakeBackend) {
    let pool = two(make);
    let opts = TaskOptions { timeout: Some(Duration::from_millis(50)), retries: 0 };
    let e = pool.submit_fn_with(opts, &SLEEP_MS, 3_000).unwrap().wait().unwrap_err();
    assert!(e.is_timeout(), "{e}");
    let opts = TaskOptions { timeout: None, retries: 2 };
    let e = pool.submit_fn_with(opts, &FAIL_ON_13, 13).unwrap().wait().unwrap_err();
    assert_eq!(e.attempts(), 3, "{e}");
    assert_eq!(pool.submit_fn(&SQUARE, 5).unwrap().wait().unwrap(), 25);
}
