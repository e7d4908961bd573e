//! `BatchBuilder::chunks_with`: whole chunks, for callers that keep a
//! batch's items and results themselves (the Python bindings).

use shoal_core::{ChunkOutcome, Pool};
use shoal_threads::Threads;

fn pool() -> Pool {
    Pool::builder().workers(2).build(Threads::new()).unwrap()
}

/// Every item of `0..n` once, each chunk's values its items doubled.
fn check_cover(chunks: &[ChunkOutcome<u64>], n: usize) {
    let mut seen = vec![false; n];
    for c in chunks {
        assert_eq!(c.values.len() + c.errors.len(), c.len);
        for (o, v) in c.values.iter().enumerate() {
            assert_eq!(*v, 2 * (c.start + o) as u64);
        }
        for (i, s) in seen.iter_mut().enumerate().skip(c.start).take(c.len) {
            assert!(!*s, "item {i} twice");
            *s = true;
        }
    }
    assert!(seen.iter().all(|&s| s), "an item is missing");
}

#[test]
fn ordered_chunks_come_in_input_order_and_cover_every_item() {
    let pool = pool();
    let chunks: Vec<_> = pool
        .batch()
        .chunksize(7)
        .chunks_with(|x: u64| 2 * x, None, 0..1000u64, true)
        .map(Result::unwrap)
        .collect();
    check_cover(&chunks, 1000);
    let starts: Vec<usize> = chunks.iter().map(|c| c.start).collect();
    let mut sorted = starts.clone();
    sorted.sort_unstable();
    assert_eq!(starts, sorted);
    assert!(chunks.iter().all(|c| c.len <= 7));
}

#[test]
fn unordered_chunks_cover_every_item() {
    let pool = pool();
    let chunks: Vec<_> = pool
        .batch()
        .chunks_with(|x: u64| 2 * x, None, 0..5000u64, false)
        .map(Result::unwrap)
        .collect();
    check_cover(&chunks, 5000);
}

#[test]
fn a_failed_item_is_an_error_at_its_offset() {
    let pool = pool();
    let f = |x: u64| {
        assert!(x != 12, "twelve");
        2 * x
    };
    let chunks: Vec<_> = pool
        .batch()
        .chunksize(5)
        .chunks_with(f, None, 0..20u64, true)
        .map(Result::unwrap)
        .collect();
    let bad = chunks.iter().find(|c| !c.errors.is_empty()).expect("a chunk with the failure");
    assert_eq!((bad.start, bad.errors.len()), (10, 1));
    assert_eq!(bad.errors[0].0, 2);
    assert!(bad.errors[0].1.to_string().contains("twelve"));
    assert_eq!(bad.values, vec![20, 22, 26, 28]);
}

/// Item 13 runs out of time: its chunk of 10 is lost, its items run again
/// one by one, and only item 13 fails.
#[test]
fn a_lost_chunk_runs_again_item_by_item() {
    let pool = pool();
    let f = |x: usize| {
        if x == 13 {
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
        2 * x as u64
    };
    let chunks: Vec<_> = pool
        .batch()
        .chunksize(10)
        .task_timeout(std::time::Duration::from_millis(50))
        .chunks_with(f, None, 0..30usize, true)
        .retry_lost_items(|at| at)
        .map(Result::unwrap)
        .collect();
    check_cover(&chunks, 30);
    let failed: Vec<usize> =
        chunks.iter().flat_map(|c| c.errors.iter().map(move |(o, _)| c.start + o)).collect();
    assert_eq!(failed, [13]);
    assert!(chunks.iter().flat_map(|c| &c.errors).all(|(_, e)| e.is_timeout()));
    // The same through `map_positions_with`: the first failure is item 13's.
    let err = pool
        .batch()
        .chunksize(10)
        .task_timeout(std::time::Duration::from_millis(50))
        .map_positions_with(f, None, 30)
        .unwrap_err();
    assert_eq!(err.index(), Some(13), "{err}");
}
