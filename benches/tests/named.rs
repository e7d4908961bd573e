//! The named workloads (`shoal_benches::named`) give the same answers on
//! serial, threads and worker processes, and the W6 memory probe runs the
//! process backend. The worker program is the `chaos` binary, which calls
//! `worker_main` with the benches' registry first (a test binary cannot
//! re-execute itself as a worker).

use std::process::Command;
use std::time::Duration;

use serde_bytes::ByteBuf;
use shoal_benches::workloads::{self, generator};
use shoal_benches::{Implementation, Runner, named};
use shoal_core::Pool;
use shoal_process::Process;

const WORKER: &str = env!("CARGO_BIN_EXE_chaos");
const PROBE: &str = env!("CARGO_BIN_EXE_w6-memory");

fn process(workers: usize) -> Runner {
    Runner::Shoal(
        Pool::builder().workers(workers).build(Process::new().program(WORKER)).expect("pool"),
    )
}

fn runners() -> Vec<(&'static str, Runner)> {
    vec![
        ("serial", Runner::Serial),
        ("rayon", Runner::new(Implementation::Rayon, 2).unwrap()),
        ("threads", Runner::new(Implementation::Threads, 2).unwrap()),
        ("process", process(2)),
    ]
}

#[test]
fn registry_names_every_function() {
    assert_eq!(
        named::registry().names(),
        [
            "bench.inc",
            "bench.length",
            "bench.pi",
            "bench.sleep",
            "bench.square",
            "bench.square_pid"
        ]
    );
    assert_eq!(Implementation::from_name("process"), Some(Implementation::Process));
    assert!(!Implementation::available().contains(&Implementation::Process));
    assert!(Implementation::Process.is_shoal());
}

#[test]
fn w1_w3_w5_w6_agree_everywhere() {
    let input = workloads::w1_input(20_000);
    let want: Vec<u64> = input.iter().map(|x| x * x).collect();
    let pi = workloads::w3(&Runner::Serial, 20, 10_000);
    let payloads: Vec<ByteBuf> = (0..5).map(|i| ByteBuf::from(vec![i as u8; 1000 + i])).collect();
    for (name, r) in runners() {
        assert_eq!(named::w1(&r, &input, None), want, "{name}");
        assert_eq!(named::w1(&r, &input, Some(3000)), want, "{name}");
        assert_eq!(named::w3(&r, 20, 10_000), pi, "{name}: same seeds as the in-process W3");
        assert_eq!(named::w5(&r, payloads.clone()), 5 * 1000 + 10, "{name}");
        assert_eq!(named::w6(&r, 10_000), 10_000 * 10_001 / 2, "{name}");
        assert_eq!(named::roundtrip(&r), 9, "{name}");
    }
}

#[test]
fn w2_sleeps_in_workers() {
    let jobs = [Duration::from_millis(30); 4];
    let r = process(4);
    let t = std::time::Instant::now();
    named::w2(&r, &jobs, None);
    named::w2(&r, &jobs, Some(2));
    // 4 workers: the first run takes one sleep, the second two.
    assert!(t.elapsed() < Duration::from_millis(30 * 8), "{:?}", t.elapsed());
}

#[test]
fn w4_builds_and_drops_a_threads_pool() {
    assert_eq!(named::w4(Implementation::Threads).unwrap(), 9);
    assert_eq!(named::w4(Implementation::Serial).unwrap(), 9);
}

#[test]
fn w5_input_is_distinct_megabytes() {
    let input = named::w5_input();
    assert_eq!(input.len(), named::W5_TASKS);
    assert!(input.iter().all(|p| p.len() == named::W5_BYTES));
    assert_ne!(input[0], input[1]);
}

#[test]
fn w6_stream_on_processes_uses_named_functions() {
    let r = process(2);
    let sum: u64 = workloads::w6_stream(&r, generator(5000)).unwrap().sum();
    assert_eq!(sum, 5000 * 5001 / 2);
}

#[test]
fn memory_probe_runs_the_process_backend() {
    let list = Command::new(PROBE).arg("--list-backends").output().unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(list.lines().any(|l| l == "process"), "{list}");
    let out =
        Command::new(PROBE).args(["--backend", "process", "--items", "20000"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout).unwrap();
    let value: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(value["backend"], "process");
    assert_eq!(value["items"], 20_000);
    assert!(value["peak_rss_kib"].as_u64().unwrap() > 0, "{line}");
    assert!(value["worker_peak_rss_kib"].as_u64().unwrap() > 0, "{line}");
}
