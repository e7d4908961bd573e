//! The chaos run, small: every task ends once, with its right result or
//! `WorkerLost`; only the run's own workers are killed.

use shoal_benches::chaos;
use shoal_core::Pool;
use shoal_process::Process;

const WORKER: &str = env!("CARGO_BIN_EXE_chaos");

#[test]
fn a_small_chaos_run_keeps_its_promises() {
    let pool = Pool::builder().workers(2).build(Process::new().program(WORKER)).unwrap();
    let outcome = chaos::run(&pool, 2000, 100);
    drop(pool);
    assert_eq!(outcome.kills, 20, "{outcome}");
    outcome.check().unwrap();
    assert!(outcome.worker_pids >= 2, "{outcome}");
    let json: serde_json::Value = serde_json::from_str(&outcome.json()).unwrap();
    assert_eq!(json["kills"], 20);
    assert_eq!(json["tasks"], 2000);
    assert!(!chaos::is_live_child(std::process::id()));
}

#[test]
fn the_binary_prints_one_json_line() {
    let out = std::process::Command::new(WORKER)
        .args(["--tasks", "300", "--every", "100", "--workers", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout).unwrap();
    let json: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!((json["tasks"].as_u64(), json["kills"].as_u64()), (Some(300), Some(3)));
    let bad = std::process::Command::new(WORKER).arg("--nope").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
