//! Functions that crash their worker on purpose, for the crash tests of this
//! crate and of other process backends (feature `testkit`).

use std::time::Duration;

use shoal_core::function::{Function, NamedFunction, Registry};
use shoal_core::task;

fn exit_with(code: i32) {
    std::process::exit(code)
}
fn segfault(_: ()) {
    // SAFETY: restoring the default disposition (Rust's runtime handles
    // SIGSEGV for stack overflows) and raising the signal have no
    // preconditions.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::raise(libc::SIGSEGV);
    }
}
fn pid_then_sleep(ms: u64) -> u32 {
    task::log(format!("pid {}", std::process::id()));
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}
fn ignore_term_then_sleep(ms: u64) {
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    task::log(format!("pid {}", std::process::id()));
    std::thread::sleep(Duration::from_millis(ms));
}
fn garbage(_: ()) {
    // A frame header claiming 4 GiB, straight onto the connection (fd 3).
    let bytes = [0xffu8, 0xff, 0xff, 0xff, 0x23];
    // SAFETY: writes from a valid buffer to the connection's fd.
    unsafe { libc::write(3, bytes.as_ptr().cast(), bytes.len()) };
    std::thread::sleep(Duration::from_secs(5));
}
fn exit_once(marker: String) -> u32 {
    if std::fs::metadata(&marker).is_err() {
        let _ = std::fs::write(&marker, b"crashed once");
        std::process::exit(9);
    }
    7
}
fn exit_soon(x: u64) -> u64 {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(20));
        std::process::exit(0);
    });
    x
}
fn nested_sum(n: u64) -> u64 {
    // A pool inside a worker: its workers re-execute this worker program.
    let pool = shoal_core::Pool::builder().workers(2).build(crate::Process::new()).unwrap();
    pool.map_fn(&shoal_core::testkit::SQUARE, 0..n).unwrap().into_iter().sum()
}
fn env_report(_: ()) -> (String, String, String) {
    (
        std::env::var("SHOAL_TEST_GLOBAL").unwrap_or_default(),
        std::env::var("SHOAL_TEST_WORKER").unwrap_or_default(),
        std::env::current_dir().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default(),
    )
}
fn print_then_sleep(ms: u64) {
    println!("hello from a worker");
    eprintln!("and from its stderr");
    std::thread::sleep(Duration::from_millis(ms));
}
fn hold_mb(mb: u64) -> u32 {
    // Touch every page so it is resident, and keep it.
    let v = vec![1u8; (mb as usize) << 20];
    std::mem::forget(v);
    std::process::id()
}
fn square_pid(x: u64) -> (u64, u32) {
    (x * x, std::process::id())
}
fn task_of(_: String) -> u64 {
    task::task_id().map_or(u64::MAX, |t| t.0)
}

/// Exits the worker with this code.
pub static EXIT: Function<i32, ()> = Function::new("crash.exit", exit_with);
/// Segfaults (SIGSEGV).
pub static SEGFAULT: Function<(), ()> = Function::new("crash.segfault", segfault);
/// Logs `pid N`, sleeps, returns the pid.
pub static PID_THEN_SLEEP: Function<u64, u32> =
    Function::new("crash.pid_then_sleep", pid_then_sleep);
/// Ignores SIGTERM, logs `pid N`, sleeps.
pub static IGNORE_TERM: Function<u64, ()> =
    Function::new("crash.ignore_term", ignore_term_then_sleep);
/// Writes a malformed frame onto its connection.
pub static GARBAGE: Function<(), ()> = Function::new("crash.garbage", garbage);
/// Exits the worker the first time (creating the marker file), returns 7
/// after.
pub static EXIT_ONCE: Function<String, u32> = Function::new("crash.exit_once", exit_once);
/// Returns its argument, and the worker exits right after.
pub static EXIT_SOON: Function<u64, u64> = Function::new("crash.exit_soon", exit_soon);
/// Sums `x * x` for `x < n` on a pool of its own (nested pools).
pub static NESTED_SUM: Function<u64, u64> = Function::new("crash.nested_sum", nested_sum);
/// `SHOAL_TEST_GLOBAL`, `SHOAL_TEST_WORKER` and the working directory.
pub static ENV_REPORT: Function<(), (String, String, String)> =
    Function::new("crash.env_report", env_report);
/// Prints a line to stdout and one to stderr, then sleeps.
pub static PRINT_THEN_SLEEP: Function<u64, ()> =
    Function::new("crash.print_then_sleep", print_then_sleep);
/// Allocates and keeps this many MiB; returns the pid.
pub static HOLD_MB: Function<u64, u32> = Function::new("crash.hold_mb", hold_mb);
/// `(x * x, pid)`.
pub static SQUARE_PID: Function<u64, (u64, u32)> = Function::new("crash.square_pid", square_pid);
/// The id of the task (the chunk) the item ran in.
pub static TASK_OF: Function<String, u64> = Function::new("crash.task_of", task_of);

/// The conformance suite's functions plus the crashing ones.
pub fn registry() -> Registry {
    let crash: [&'static dyn NamedFunction; 13] = [
        &HOLD_MB,
        &NESTED_SUM,
        &ENV_REPORT,
        &PRINT_THEN_SLEEP,
        &EXIT,
        &SEGFAULT,
        &PID_THEN_SLEEP,
        &IGNORE_TERM,
        &GARBAGE,
        &EXIT_ONCE,
        &EXIT_SOON,
        &SQUARE_PID,
        &TASK_OF,
    ];
    crash
        .into_iter()
        .try_fold(shoal_core::testkit::registry(), |r, f| r.with(f))
        .expect("distinct names")
}

crate::export_functions!(
    testkit_square = shoal_core::testkit::SQUARE,
    testkit_fail_on_13 = shoal_core::testkit::FAIL_ON_13,
    testkit_worker_of = shoal_core::testkit::WORKER_OF,
    testkit_sleep_ms = shoal_core::testkit::SLEEP_MS,
    testkit_bad_result = shoal_core::testkit::BAD_RESULT,
    testkit_takes_bad = shoal_core::testkit::TAKES_BAD,
    testkit_report = shoal_core::testkit::REPORT,
);
