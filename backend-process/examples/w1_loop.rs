//! P-W1 in a loop, for profilers: `map_fn(x*x)` over 100k u64 on 2 worker
//! processes, `ITERS` times (default 200), printing the median time.
//! `perf record -g target/release/examples/w1_loop` sees the parent and
//! its workers. `cargo bench --bench process` is the real measurement.

use std::time::Instant;

use shoal_core::Pool;
use shoal_core::function::{Function, Registry};
use shoal_process::Process;

fn square(x: u64) -> u64 {
    x * x
}
static SQUARE: Function<u64, u64> = Function::new("square", square);

fn main() {
    shoal_process::worker_main(&Registry::new().with(&SQUARE).unwrap());
    let iters: usize = std::env::var("ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let chunk: Option<usize> = std::env::var("CHUNK").ok().and_then(|v| v.parse().ok());
    let input: Vec<u64> = (0..100_000).collect();
    let pool = Pool::builder().workers(2).build(Process::new()).unwrap();
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let mut batch = pool.batch();
        if let Some(n) = chunk {
            batch = batch.chunksize(n);
        }
        let out = batch.map_fn(&SQUARE, input.iter().copied()).unwrap();
        times.push(t.elapsed());
        assert_eq!(out[99_999], 99_999 * 99_999);
    }
    times.sort();
    let insights = pool.insights();
    println!(
        "median {:?}, min {:?}, {:.1} chunks per map, workers busy {:.0}%",
        times[iters / 2],
        times[0],
        insights.total_tasks() as f64 / iters as f64,
        insights.utilisation() * 100.0
    );
}
