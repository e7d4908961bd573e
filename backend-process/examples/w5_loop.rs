//! P-W5 in a loop, for profilers: `map_fn(len)` over 200 distinct 1 MiB
//! `ByteBuf`s on 2 worker processes, `ITERS` times (default 20), printing
//! the median throughput. `SEGMENT=0` turns the shared-memory segments off
//! (one file per payload instead); `THRESHOLD=n` sets the shared-memory
//! threshold. `cargo bench --bench process` is the real measurement.

use std::time::Instant;

use serde_bytes::ByteBuf;
use shoal_core::Pool;
use shoal_core::function::{Function, Registry};
use shoal_process::Process;

fn length(bytes: ByteBuf) -> usize {
    bytes.len()
}
static LENGTH: Function<ByteBuf, usize> = Function::new("length", length);

fn env(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    shoal_process::worker_main(&Registry::new().with(&LENGTH).unwrap());
    let iters = env("ITERS").unwrap_or(20);
    let mut backend = Process::new();
    if let Some(n) = env("SEGMENT") {
        backend = backend.segment_size(n);
    }
    if let Some(n) = env("THRESHOLD") {
        backend = backend.shm_threshold(n);
    }
    let pool = Pool::builder().workers(2).build(backend).unwrap();
    let input: Vec<ByteBuf> = (0..200).map(|i| ByteBuf::from(vec![i as u8; 1 << 20])).collect();
    let mut rates = Vec::with_capacity(iters);
    for _ in 0..iters {
        let payloads = input.clone();
        let t = Instant::now();
        let total: usize = pool.map_fn(&LENGTH, payloads).unwrap().into_iter().sum();
        rates.push(total as f64 / 1e9 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "median {:.2} GB/s, best {:.2} GB/s, {:.1} chunks per map",
        rates[iters / 2],
        rates[iters - 1],
        pool.insights().total_tasks() as f64 / iters as f64
    );
}
