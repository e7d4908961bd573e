//! Worker options: nested pools, per-worker environment and directory,
//! captured output, large payloads through shared memory.

use std::time::Duration;

use shoal_core::testkit::SQUARE;
use shoal_core::{Message, Pool};
use shoal_process::testkit::{
    ENV_REPORT, HOLD_MB, NESTED_SUM, PRINT_THEN_SLEEP, SQUARE_PID, TASK_OF,
};
use shoal_process::{Output, Process};

const WORKER: &str = env!("CARGO_BIN_EXE_shoal-testkit-worker");

#[test]
fn a_task_may_create_its_own_pool() {
    let pool = Pool::builder().workers(1).build(Process::new().program(WORKER)).unwrap();
    let sum = pool.submit_fn(&NESTED_SUM, 10).unwrap().wait().unwrap();
    assert_eq!(sum, (0..10u64).map(|x| x * x).sum::<u64>());
}

#[test]
fn large_payloads_round_trip_through_shared_memory() {
    // 1 MiB arguments with a 64 KiB threshold take the shared-memory path
    // both ways (the testkit's SQUARE is too small, so use map_fn on many
    // items at once: a chunk of 200k u64 is 1.6 MB of postcard).
    // Three ways: through the segments (the default), through one file per
    // payload (segments off), and a segment too small for these payloads
    // (files again).
    for segment in [None, Some(0), Some(256 * 1024)] {
        let mut backend = Process::new().program(WORKER).shm_threshold(64 * 1024);
        if let Some(bytes) = segment {
            backend = backend.segment_size(bytes);
        }
        let pool = Pool::builder().workers(2).build(backend).unwrap();
        for _ in 0..2 {
            // Twice: the second round reuses the segments.
            let out = pool.batch().chunksize(200_000).map_fn(&SQUARE, 0..400_000u64).unwrap();
            assert_eq!(out.len(), 400_000, "segment {segment:?}");
            assert_eq!(out[399_999], 399_999u64 * 399_999, "segment {segment:?}");
            assert_eq!(out[123_456], 123_456u64 * 123_456, "segment {segment:?}");
        }
    }
    let leftovers = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("shoal-{}-", std::process::id()))
                })
                .count()
        })
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "every segment was unlinked by its reader");
}

#[test]
fn large_items_are_not_batched() {
    // 40 items of 300 KiB: automatic chunks hold at most MAX_CHUNK_BYTES
    // (1 MiB) of arguments, so three items, whatever the items' times.
    let pool = Pool::builder().workers(2).build(Process::new().program(WORKER)).unwrap();
    let items = (0..40).map(|i| char::from(b'a' + i as u8 % 26).to_string().repeat(300 << 10));
    let tasks = pool.map_fn(&TASK_OF, items).unwrap();
    let mut per_task = std::collections::HashMap::new();
    for t in &tasks {
        *per_task.entry(*t).or_insert(0) += 1;
    }
    assert!(per_task.values().all(|&n| n <= 3), "{per_task:?}");
    assert!(per_task.len() >= 14, "{per_task:?}");
}

#[test]
fn per_worker_environment_and_directory() {
    let dir = std::env::temp_dir();
    let backend =
        Process::new().program(WORKER).env("SHOAL_TEST_GLOBAL", "g").current_dir(&dir).configure(
            |id, cmd| {
                cmd.env("SHOAL_TEST_WORKER", format!("w{}", id.0));
            },
        );
    let pool = Pool::builder().workers(1).build(backend).unwrap();
    let (global, worker, cwd) = pool.submit_fn(&ENV_REPORT, ()).unwrap().wait().unwrap();
    assert_eq!(global, "g");
    assert_eq!(worker, "w0");
    assert_eq!(std::path::Path::new(&cwd).canonicalize().unwrap(), dir.canonicalize().unwrap());
}

#[test]
fn captured_output_becomes_log_messages_of_the_task() {
    let backend = Process::new().program(WORKER).output(Output::Capture);
    let pool = Pool::builder().workers(1).build(backend).unwrap();
    let h = pool.submit_fn(&PRINT_THEN_SLEEP, 30_000).unwrap();
    let mut seen = (false, false);
    while seen != (true, true) {
        match h.next_message(Some(Duration::from_secs(20))) {
            Some(Message::Log(l)) if l == "[stdout] hello from a worker" => seen.0 = true,
            Some(Message::Log(l)) if l == "[stderr] and from its stderr" => seen.1 = true,
            Some(Message::Done(_)) | Some(Message::Failed(_)) | None => panic!("no output seen"),
            Some(_) => {}
        }
    }
    h.cancel();
    assert!(h.wait().unwrap_err().is_cancelled());
}

/// RELIABILITY row 15: a worker over its memory cap is recycled between
/// tasks; its task succeeds, the next one runs in a fresh process.
#[test]
fn memory_cap_recycles_workers_between_tasks() {
    let backend = Process::new().program(WORKER).max_memory(64 << 20);
    let pool = Pool::builder().workers(1).build(backend).unwrap();
    let fat = pool.submit_fn(&HOLD_MB, 128).unwrap().wait().unwrap();
    let (nine, next) = pool.submit_fn(&SQUARE_PID, 3).unwrap().wait().unwrap();
    assert_eq!(nine, 9);
    assert_ne!(fat, next, "the fat worker retired");
    let (_, again) = pool.submit_fn(&SQUARE_PID, 4).unwrap().wait().unwrap();
    assert_eq!(next, again, "a lean worker stays");
}
