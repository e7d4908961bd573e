//! The re-exec pattern: this test program calls `worker_main` first thing
//! in `main`, so the process backend's default (`Process::new()`, which
//! re-executes the current program) turns copies of it into workers. Runs
//! without libtest (`harness = false`) because it needs its own `main`.

use shoal_core::Pool;
use shoal_core::function::{Function, Registry};
use shoal_process::Process;

fn cube(x: i64) -> i64 {
    x * x * x
}
static CUBE: Function<i64, i64> = Function::new("reexec.cube", cube);

fn pid(_: ()) -> u32 {
    std::process::id()
}
static PID: Function<(), u32> = Function::new("reexec.pid", pid);

fn registry() -> Registry {
    Registry::new().with(&CUBE).and_then(|r| r.with(&PID)).expect("distinct names")
}

fn main() {
    shoal_process::worker_main(&registry());

    let mut passed = 0;
    let pool = Pool::builder().workers(2).build(Process::new()).expect("pool");
    let cubes = pool.map_fn(&CUBE, -5..=5).expect("map_fn");
    assert_eq!(cubes, (-5..=5).map(cube).collect::<Vec<_>>());
    passed += 1;
    let worker_pid = pool.submit_fn(&PID, ()).expect("submit").wait().expect("pid");
    assert_ne!(worker_pid, std::process::id(), "the task ran in another process");
    passed += 1;
    // The same call sites run on threads, in-process.
    let threads = Pool::builder().workers(2).build(shoal_threads_like()).expect("threads");
    assert_eq!(threads.map_fn(&CUBE, -5..=5).expect("map_fn"), cubes);
    assert_eq!(threads.submit_fn(&PID, ()).unwrap().wait().unwrap(), std::process::id());
    passed += 1;
    println!("reexec: {passed} passed, 0 failed");
}

/// The in-process counterpart of `Process::new()` for the same call sites.
fn shoal_threads_like() -> shoal_threads::Threads {
    shoal_threads::Threads::new()
}
