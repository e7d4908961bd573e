//! Batches under one chunking key: a batch starts from the item time that
//! the pool's last batch under its key measured instead of probing with
//! one-item chunks.

use std::sync::{Arc, Mutex};

use shoal_core::{ChunkFn, Pool, TaskError};
use shoal_threads::Threads;

/// Doubles its items and records the size of every chunk it ran.
struct Recorded(Arc<Mutex<Vec<usize>>>);

impl ChunkFn<u64, u64> for Recorded {
    fn run_chunk(&self, items: Vec<u64>, values: &mut Vec<u64>, _: &mut Vec<(usize, TaskError)>) {
        self.0.lock().unwrap().push(items.len());
        values.extend(items.iter().map(|x| 2 * x));
    }
}

/// The chunk sizes of one `map_with` over 10 000 items under `key`.
fn chunk_sizes(pool: &Pool, key: Option<&str>) -> Vec<usize> {
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let mut batch = pool.batch();
    if let Some(key) = key {
        batch = batch.chunking_key(key);
    }
    let out = batch.map_with(Recorded(sizes.clone()), None, 0..10_000u64).unwrap();
    assert_eq!(out, (0..10_000).map(|x| 2 * x).collect::<Vec<_>>());
    Arc::try_unwrap(sizes).unwrap().into_inner().unwrap()
}

#[test]
fn a_keyed_batch_starts_from_what_the_last_one_measured() {
    let pool = Pool::builder().workers(2).build(Threads::new()).unwrap();
    assert_eq!(chunk_sizes(&pool, Some("double"))[0], 1, "a new key probes");
    let again = chunk_sizes(&pool, Some("double"));
    assert!(again[0] > 1, "the same key starts guided: {again:?}");
    assert_eq!(chunk_sizes(&pool, Some("other"))[0], 1, "keys are separate");
    assert_eq!(chunk_sizes(&pool, None)[0], 1, "no key, no memory");
    let fixed = Pool::builder().workers(2).build(Threads::new()).unwrap();
    let sizes = Arc::new(Mutex::new(Vec::new()));
    fixed
        .batch()
        .chunking_key("double")
        .chunksize(7)
        .map_with(Recorded(sizes.clone()), None, 0..70u64)
        .unwrap();
    assert_eq!(*sizes.lock().unwrap(), vec![7; 10], "an explicit chunksize wins");
}
