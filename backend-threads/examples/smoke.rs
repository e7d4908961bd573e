//! A quick look at speed: W1 (map x*x over 10^6 items) against rayon, and
//! the submit-to-result round trip. `cargo xtask bench` is the real suite.
use rayon::prelude::*;
use shoal_core::Pool;
use shoal_threads::Threads;
use std::time::{Duration, Instant};

fn best(mut f: impl FnMut()) -> Duration {
    (0..15)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn main() {
    let pool = Pool::builder().workers(2).build(Threads::new()).unwrap();
    let rp = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let input: Vec<u64> = (0..1_000_000).collect();
    let r = best(|| {
        let v: Vec<u64> = rp.install(|| input.par_iter().map(|&x| x * x).collect());
        assert_eq!(v.len(), 1_000_000);
    });
    let s = best(|| {
        let v = pool.map_slice(&input, |&x| x * x).unwrap();
        assert_eq!(v.len(), 1_000_000);
    });
    let o = best(|| {
        let v = pool.map(input.clone(), |x| x * x).unwrap();
        assert_eq!(v.len(), 1_000_000);
    });
    println!(
        "W1 rayon {r:?}  map_slice {s:?} ({:.2}x)  map(clone) {o:?} ({:.2}x)",
        s.as_secs_f64() / r.as_secs_f64(),
        o.as_secs_f64() / r.as_secs_f64()
    );
    let mut times: Vec<Duration> = (0..20000)
        .map(|_| {
            let t = Instant::now();
            pool.submit(|| ()).unwrap().wait().unwrap();
            t.elapsed()
        })
        .collect();
    times.sort();
    println!("roundtrip median {:?} p90 {:?}", times[times.len() / 2], times[times.len() * 9 / 10]);
}
