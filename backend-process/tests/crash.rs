//! Crash safety (RELIABILITY.md rows 3-5, 8, 10-12, 14, 16-18, 31): workers
//! that exit, segfault, get SIGKILLed from outside (several at once), ignore
//! SIGTERM or send garbage fail only their own task; a replacement starts;
//! nothing hangs; no zombie is left. The parent-death test re-runs this
//! test binary as a parent and kills it.

use std::collections::HashSet;
use std::time::Duration;

use shoal_core::error::{ExitCause, TaskErrorKind};
use shoal_core::testkit::SQUARE;
use shoal_core::{Message, Pool, PoolEvent, TaskOptions};
use shoal_process::Process;
use shoal_process::testkit::*;

const WORKER: &str = env!("CARGO_BIN_EXE_shoal-testkit-worker");

fn backend() -> Process {
    Process::new().program(WORKER).grace_period(Duration::from_millis(200))
}

fn pool(workers: usize) -> Pool {
    Pool::builder().workers(workers).build(backend()).unwrap()
}

fn lost_cause(e: &shoal_core::TaskError) -> (ExitCause, Option<u32>) {
    match e.kind() {
        TaskErrorKind::WorkerLost { cause, pid, .. } => (cause.clone(), *pid),
        other => panic!("expected WorkerLost, got {other:?}"),
    }
}

/// Waits for the `pid N` log line of a task and returns N.
fn pid_of<R>(h: &shoal_core::TaskHandle<R>) -> u32 {
    loop {
        match h.next_message(Some(Duration::from_secs(20))) {
            Some(Message::Log(line)) if line.starts_with("pid ") => {
                return line[4..].parse().unwrap();
            }
            Some(Message::Done(_)) | Some(Message::Failed(_)) | None => {
                panic!("the task ended before logging its pid")
            }
            Some(_) => {}
        }
    }
}

fn kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a worker pid this test just learned.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie has state Z.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        .unwrap_or(false)
}

#[test]
fn exit_fails_only_its_task() {
    let pool = pool(2);
    let crash = pool.submit_fn(&EXIT, 3).unwrap();
    let good: Vec<_> = (0..20u64).map(|i| pool.submit_fn(&SQUARE, i).unwrap()).collect();
    let e = crash.wait().unwrap_err();
    let (cause, pid) = lost_cause(&e);
    assert_eq!(cause, ExitCause::Code(3), "{e}");
    assert!(pid.is_some() && e.worker().is_some(), "{e}");
    for (i, h) in good.into_iter().enumerate() {
        assert_eq!(h.wait().unwrap(), (i * i) as u64);
    }
}

#[test]
fn segfault_is_reported_with_its_signal() {
    let pool = pool(1);
    let e = pool.submit_fn(&SEGFAULT, ()).unwrap().wait().unwrap_err();
    assert_eq!(lost_cause(&e).0, ExitCause::Signal(libc::SIGSEGV), "{e}");
    assert_eq!(pool.submit_fn(&SQUARE, 4).unwrap().wait().unwrap(), 16);
}

#[test]
fn busy_workers_killed_from_outside_several_at_once() {
    let pool = pool(4);
    let busy: Vec<_> = (0..4).map(|_| pool.submit_fn(&PID_THEN_SLEEP, 20_000).unwrap()).collect();
    let pids: Vec<u32> = busy.iter().map(pid_of).collect();
    assert_eq!(pids.iter().collect::<HashSet<_>>().len(), 4);
    let queued: Vec<_> = (0..40u64).map(|i| pool.submit_fn(&SQUARE, i).unwrap()).collect();
    for pid in &pids {
        kill(*pid, libc::SIGKILL);
    }
    for h in busy {
        let e = h.wait().unwrap_err();
        assert_eq!(lost_cause(&e).0, ExitCause::Signal(libc::SIGKILL), "{e}");
    }
    for (i, h) in queued.into_iter().enumerate() {
        assert_eq!(h.wait().unwrap(), (i * i) as u64, "queued tasks are unaffected");
    }
    drop(pool);
    assert!(pids.iter().all(|p| !zombie(*p)), "no zombies");
}

#[test]
fn idle_worker_killed_is_replaced_silently() {
    let pool = pool(1);
    let events = pool.events();
    let pid = pool.submit_fn(&PID_THEN_SLEEP, 0).unwrap().wait().unwrap();
    kill(pid, libc::SIGKILL);
    loop {
        if let PoolEvent::WorkerDown { cause, .. } =
            events.recv_timeout(Duration::from_secs(20)).unwrap()
        {
            assert_eq!(cause, ExitCause::Signal(libc::SIGKILL));
            break;
        }
    }
    assert_eq!(pool.submit_fn(&SQUARE, 9).unwrap().wait().unwrap(), 81);
}

#[test]
fn worker_lost_is_retried_when_asked() {
    let pool = pool(1);
    let marker = std::env::temp_dir().join(format!("shoal-exit-once-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let opts = TaskOptions { timeout: None, retries: 1 };
    let m = marker.to_string_lossy().into_owned();
    let r = pool.submit_fn_with(opts, &EXIT_ONCE, m).unwrap().wait();
    let _ = std::fs::remove_file(&marker);
    assert_eq!(r.unwrap(), 7);
}

#[test]
fn timeout_kills_a_worker_that_ignores_sigterm() {
    let pool = pool(1);
    let opts = TaskOptions { timeout: Some(Duration::from_millis(300)), retries: 0 };
    let h = pool.submit_fn_with(opts, &IGNORE_TERM, 30_000).unwrap();
    let pid = pid_of(&h);
    let e = h.wait().unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert_eq!(pool.submit_fn(&SQUARE, 2).unwrap().wait().unwrap(), 4);
    drop(pool);
    assert!(!alive(pid), "SIGKILL followed the ignored SIGTERM");
}

#[test]
fn cancel_of_a_running_task_kills_its_worker() {
    let pool = pool(1);
    let h = pool.submit_fn(&PID_THEN_SLEEP, 30_000).unwrap();
    let pid = pid_of(&h);
    h.cancel();
    assert!(h.wait().unwrap_err().is_cancelled());
    assert_eq!(pool.submit_fn(&SQUARE, 3).unwrap().wait().unwrap(), 9);
    drop(pool);
    assert!(!alive(pid));
}

#[test]
fn malformed_frame_drops_the_worker() {
    let pool = pool(1);
    let e = pool.submit_fn(&GARBAGE, ()).unwrap().wait().unwrap_err();
    let (cause, _) = lost_cause(&e);
    assert!(matches!(cause, ExitCause::Protocol(_)), "{e}");
    assert_eq!(pool.submit_fn(&SQUARE, 5).unwrap().wait().unwrap(), 25);
}

#[test]
fn worker_dying_right_after_its_result_delivers_it() {
    let pool = pool(1);
    let events = pool.events();
    assert_eq!(pool.submit_fn(&EXIT_SOON, 11).unwrap().wait().unwrap(), 11);
    loop {
        if let PoolEvent::WorkerDown { .. } = events.recv_timeout(Duration::from_secs(20)).unwrap()
        {
            break;
        }
    }
    assert_eq!(pool.submit_fn(&SQUARE, 6).unwrap().wait().unwrap(), 36);
}

#[test]
fn terminate_with_busy_workers_returns_promptly() {
    let pool = pool(2);
    let busy: Vec<_> = (0..2).map(|_| pool.submit_fn(&PID_THEN_SLEEP, 30_000).unwrap()).collect();
    let pids: Vec<u32> = busy.iter().map(pid_of).collect();
    let pending: Vec<_> = (0..1000u64).map(|i| pool.submit_fn(&SQUARE, i).unwrap()).collect();
    pool.terminate();
    for h in busy {
        assert!(h.wait().unwrap_err().is_cancelled());
    }
    for h in pending {
        assert!(h.wait().unwrap_err().is_cancelled());
    }
    drop(pool);
    assert!(pids.iter().all(|p| !alive(*p)));
}

/// The chaos run, sized for CI: 10,000 tasks while a random worker is
/// SIGKILLed every 100 results. Every task ends exactly once; every task
/// that was not on a killed worker returns its correct result.
#[test]
fn chaos_kill_a_worker_every_100_tasks() {
    let pool = pool(2);
    let n = 10_000u64;
    let handles: Vec<_> = (0..n).map(|i| pool.submit_fn(&SQUARE_PID, i).unwrap()).collect();
    let mut kills = 0;
    let mut lost = 0;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    // Workers of this pool, as its results name them (other tests of this
    // binary run pools of their own at the same time: never touch those).
    let mut ours: Vec<u32> = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        match h.wait() {
            Ok((v, pid)) => {
                assert_eq!(v, (i as u64) * (i as u64));
                if !ours.contains(&pid) {
                    ours.push(pid);
                }
                if i % 100 == 99 {
                    // Kill one of our live workers, picked at random.
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    ours.retain(|p| alive(*p));
                    let victim = if ours.is_empty() {
                        pid
                    } else {
                        ours[(seed % ours.len() as u64) as usize]
                    };
                    // SAFETY: kill(2) on one of our worker processes.
                    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
                    kills += 1;
                }
            }
            Err(e) => {
                assert!(e.is_worker_lost(), "only tasks on killed workers fail: {e}");
                lost += 1;
            }
        }
    }
    assert_eq!(kills, 100);
    assert!(lost <= kills, "at most one task per killed worker fails ({lost} > {kills})");
}

/// RELIABILITY row 14: when the parent dies, every worker exits. This test
/// re-runs its own binary as a parent (`parent_role`), reads the worker
/// pids it prints, SIGKILLs it, and waits for the workers to go.
#[test]
fn workers_exit_when_the_parent_dies() {
    use std::io::BufRead;
    let mut parent = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "parent_role", "--nocapture", "--test-threads=1"])
        .env("SHOAL_CRASH_PARENT", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(parent.stdout.take().unwrap());
    let mut pids = Vec::new();
    for line in out.lines() {
        let line = line.unwrap();
        // libtest may print "test parent_role ... " before the first line.
        if let Some(p) = line.split("worker pid ").nth(1) {
            pids.push(p.trim().parse::<u32>().unwrap());
            if pids.len() == 2 {
                break;
            }
        }
    }
    assert_eq!(pids.len(), 2, "the parent reported its workers");
    parent.kill().unwrap();
    parent.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|p| alive(*p)) {
        assert!(std::time::Instant::now() < deadline, "orphaned workers: {pids:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The parent of `workers_exit_when_the_parent_dies`; does nothing in a
/// normal run.
#[test]
fn parent_role() {
    if std::env::var_os("SHOAL_CRASH_PARENT").is_none() {
        return;
    }
    let pool = pool(2);
    let busy: Vec<_> = (0..2).map(|_| pool.submit_fn(&PID_THEN_SLEEP, 60_000).unwrap()).collect();
    for h in &busy {
        println!("worker pid {}", pid_of(h));
    }
    std::thread::sleep(Duration::from_secs(60));
}

/// RELIABILITY row 4: arguments the worker cannot decode fail that task with
/// `Serialization` carrying the worker's message; the worker survives.
#[test]
fn argument_the_worker_cannot_decode() {
    // Same name as the worker's `u64 -> u64` function, other argument type.
    static MISMATCHED: shoal_core::function::Function<[u8; 12], u64> =
        shoal_core::function::Function::new("testkit.square", |_| 0);
    let pool = pool(1);
    let before = pool.submit_fn(&SQUARE_PID, 1).unwrap().wait().unwrap().1;
    let e = pool.submit_fn(&MISMATCHED, [0xff; 12]).unwrap().wait().unwrap_err();
    assert!(e.is_serialization() && e.to_string().contains("testkit.square"), "{e}");
    let after = pool.submit_fn(&SQUARE_PID, 2).unwrap().wait().unwrap().1;
    assert_eq!(before, after, "the same worker process carries on");
}

/// RELIABILITY row 9: a result the parent cannot decode fails that task
/// with `Serialization`; the reader and the worker carry on.
#[test]
fn result_the_parent_cannot_decode() {
    static MISREAD: shoal_core::function::Function<u64, String> =
        shoal_core::function::Function::new("testkit.square", |_| String::new());
    let pool = pool(1);
    let e = pool.submit_fn(&MISREAD, 3).unwrap().wait().unwrap_err();
    assert!(e.is_serialization(), "{e}");
    assert_eq!(pool.submit_fn(&SQUARE, 3).unwrap().wait().unwrap(), 9);
}
