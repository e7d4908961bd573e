//! What the chunk convention costs per item, without processes: encoding a
//! chunk of 50k u64 arguments (the parent), running it (the worker: decode,
//! call, encode the results) and decoding the results (the parent), as
//! P-W1 does for each of its 2 workers. Prints the median of 200 runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use shoal_core::function::{Function, Registry, decode_results, encode_chunk};

fn square(x: u64) -> u64 {
    x * x
}
static SQUARE: Function<u64, u64> = Function::new("square", square);

fn median(mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..200)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[t.len() / 2]
}

fn main() {
    let registry = Registry::new().with(&SQUARE).unwrap();
    let f = registry.get("square").unwrap();
    let items: Vec<u64> = (0..50_000).collect();
    let args = encode_chunk(&items).unwrap();
    let results = f.call_chunk(&args).unwrap();
    let enc = median(|| drop(black_box(encode_chunk(black_box(&items)).unwrap())));
    let call = median(|| drop(black_box(f.call_chunk(black_box(&args)).unwrap())));
    let dec = median(|| drop(black_box(decode_results::<u64>(black_box(&results)).unwrap())));
    println!(
        "50k u64: encode {enc:?} ({} B), call_chunk {call:?} ({} B), decode_results {dec:?}",
        args.len(),
        results.len()
    );
}
