//! The workloads W1, W2, W3, W4, W6 and the single-task round trip.
//!
//! Each function runs one whole workload once on a [`Runner`] and returns
//! what the workload computes, so a benchmark can `black_box` it and a test
//! can check it. Inputs are prepared by the caller, outside the timed part.
//!
//! They pass closures to shoal, so they run on the in-process
//! implementations; [`crate::named`] has the same workloads for the
//! process backend (the exception is [`w6_stream`], which takes either).

use std::hint::black_box;
use std::time::Duration;

use rayon::prelude::*;

use crate::{Implementation, Runner, Unavailable};

// ---------------------------------------------------------------- W1 ----

/// W1's number of items for in-process Rust (100k is below timer noise).
pub const W1_ITEMS: u64 = 1_000_000;

/// The chunk size of the `W1-chunked` group: the best for shoal's threads
/// backend among 1000, 10 000, 62 500, 125 000 and 250 000 on the 2-core
/// machine (`batch().chunksize(n).map_slice`, median of 20 samples: 4.6 ms,
/// 834 µs, 458 µs, 621 µs, 614 µs; rayon's `with_min_len(n)`: 498, 500,
/// 450, 467, 429 µs). 62 500 is 1/16 of the input: 8 chunks per worker.
pub const W1_CHUNK: usize = 62_500;

/// W1's input, `0..n` (prepared outside the timed part).
pub fn w1_input(n: u64) -> Vec<u64> {
    (0..n).collect()
}

/// W1 with default settings: `x * x` over every item, results in order.
///
/// shoal runs it as `pool.map_slice(input, ..)`, the zero-copy map over a
/// borrowed slice. Measured once on the threads backend (2 workers, median
/// of 20 samples): `map_slice` 635 µs, `pool.scope(|s| s.map(input, ..))`
/// 2.5 ms (it moves a `Vec<&u64>` per chunk and copies the results), and
/// `pool.map(input.clone(), ..)` 3.8 ms (copies the input inside the timed
/// part, then as the scoped map); rayon 416 µs, serial 663 µs.
pub fn w1(runner: &Runner, input: &[u64]) -> Vec<u64> {
    match runner {
        Runner::Serial => input.iter().map(|&x| x * x).collect(),
        Runner::Rayon(pool) => pool.install(|| input.par_iter().map(|&x| x * x).collect()),
        Runner::Shoal(pool) => pool.map_slice(input, |&x| x * x).expect("W1 on shoal"),
    }
}

/// W1 with an explicit chunk size: shoal's
/// `batch().chunksize(chunk).map_slice(..)`, rayon's `with_min_len(chunk)`;
/// serial ignores it.
pub fn w1_chunked(runner: &Runner, input: &[u64], chunk: usize) -> Vec<u64> {
    match runner {
        Runner::Serial => w1(runner, input),
        Runner::Rayon(pool) => {
            pool.install(|| input.par_iter().with_min_len(chunk).map(|&x| x * x).collect())
        }
        Runner::Shoal(pool) => {
            pool.batch().chunksize(chunk).map_slice(input, |&x| x * x).expect("W1-chunked on shoal")
        }
    }
}

// ---------------------------------------------------------------- W2 ----

/// W2 runs on this many workers.
pub const W2_WORKERS: usize = 8;

/// The chunk size of the `W2-chunk4` group.
pub const W2_CHUNK: usize = 4;

/// Where the 19 job durations of W2 are (the `shared/` checkout beside the
/// repository).
pub const W2_JOBS_PATH: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/workloads/w2_jobs.json");

/// The lower bound of W2's makespan on 8 workers (DESIGN.md).
pub const W2_LOWER_BOUND: Duration = Duration::from_millis(529);

/// W2's makespan under greedy list scheduling (DESIGN.md).
pub const W2_GREEDY: Duration = Duration::from_millis(644);

/// The job durations of W2, from [`W2_JOBS_PATH`].
pub fn w2_jobs() -> Result<Vec<Duration>, String> {
    let text = std::fs::read_to_string(W2_JOBS_PATH)
        .map_err(|e| format!("cannot read {W2_JOBS_PATH}: {e}"))?;
    parse_w2_jobs(&text).map_err(|e| format!("{W2_JOBS_PATH}: {e}"))
}

/// Parses `{"jobs": [seconds, ...]}`.
pub fn parse_w2_jobs(text: &str) -> Result<Vec<Duration>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let jobs = value.get("jobs").and_then(|j| j.as_array()).ok_or("no `jobs` array")?;
    jobs.iter()
        .map(|j| {
            j.as_f64()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| format!("not a duration in seconds: {j}"))
        })
        .collect()
}

/// W2: every job sleeps its duration; returns when all ended (the makespan
/// is the time this takes). `chunk` is shoal's `chunksize` and rayon's
/// `par_chunks` size (exactly `chunk` jobs per task, like shoal's); `None`
/// is each one's default.
pub fn w2(runner: &Runner, jobs: &[Duration], chunk: Option<usize>) {
    match (runner, chunk) {
        (Runner::Serial, _) => jobs.iter().for_each(|&d| std::thread::sleep(d)),
        (Runner::Rayon(pool), None) => {
            pool.install(|| jobs.par_iter().for_each(|&d| std::thread::sleep(d)))
        }
        (Runner::Rayon(pool), Some(n)) => pool.install(|| {
            jobs.par_chunks(n).for_each(|c| c.iter().for_each(|&d| std::thread::sleep(d)))
        }),
        (Runner::Shoal(pool), None) => {
            pool.map_slice(jobs, |&d| std::thread::sleep(d)).expect("W2 on shoal");
        }
        (Runner::Shoal(pool), Some(n)) => {
            pool.batch()
                .chunksize(n)
                .map_slice(jobs, |&d| std::thread::sleep(d))
                .expect("W2-chunk4 on shoal");
        }
    }
}

// ---------------------------------------------------------------- W3 ----

/// W3's number of tasks.
pub const W3_TASKS: u64 = 1000;

/// W3's samples per task.
pub const W3_SAMPLES: u64 = 100_000;

/// splitmix64: a tiny, good-enough RNG, seeded by the task index.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform `f64` in `[0, 1)`.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// One Monte Carlo pi task: of `samples` random points in the unit square,
/// how many fall in the quarter circle. Seeded by `task`.
///
/// Never inlined, so that every implementation runs the same machine code:
/// inlined into each caller, LLVM vectorized the loop differently at each
/// site, and shoal's copy ran 5-6% slower than rayon's on the same cores
/// (W3 measured the compiler, not the pool).
#[inline(never)]
pub fn pi_hits(task: u64, samples: u64) -> u64 {
    let mut rng = SplitMix64::new(task);
    let mut hits = 0;
    for _ in 0..samples {
        let (x, y) = (rng.next_f64(), rng.next_f64());
        hits += u64::from(x * x + y * y < 1.0);
    }
    hits
}

/// W3: `tasks` pi tasks of `samples` each; returns the estimate of pi.
pub fn w3(runner: &Runner, tasks: u64, samples: u64) -> f64 {
    let hits: u64 = match runner {
        Runner::Serial => (0..tasks).map(|i| pi_hits(i, samples)).sum(),
        Runner::Rayon(pool) => {
            pool.install(|| (0..tasks).into_par_iter().map(|i| pi_hits(i, samples)).sum())
        }
        Runner::Shoal(pool) => {
            pool.map(0..tasks, move |i| pi_hits(i, samples)).expect("W3 on shoal").into_iter().sum()
        }
    };
    4.0 * hits as f64 / (tasks * samples) as f64
}

// ---------------------------------------------------------------- W4 ----

/// W4's pool size.
pub const W4_WORKERS: usize = 2;

/// W4: builds `implementation` with 2 workers, runs one trivial task, shuts
/// it down. shoal's drop closes the pool and joins its threads; rayon's drop
/// only tells its threads to exit and does not wait for them. For
/// `threads-plugin` this includes loading the backend (`load_backend`), as
/// each pool needs its own boxed backend.
pub fn w4(implementation: Implementation) -> Result<(), Unavailable> {
    let runner = Runner::new(implementation, W4_WORKERS)?;
    roundtrip(&runner);
    drop(runner);
    Ok(())
}

// ---------------------------------------------------------------- W6 ----

/// W6's number of items.
pub const W6_ITEMS: u64 = 1_000_000;

/// A generator of `0..n` whose length is unknown to its consumer (size
/// hint `(0, None)`), the way a real generator's is. Each item goes through
/// [`black_box`] so that no consumer can sum it in closed form.
#[derive(Clone, Debug)]
pub struct Generator {
    next: u64,
    end: u64,
}

impl Iterator for Generator {
    type Item = u64;

    #[inline]
    fn next(&mut self) -> Option<u64> {
        if self.next < self.end {
            let x = self.next;
            self.next += 1;
            Some(black_box(x))
        } else {
            None
        }
    }
}

/// W6's generator of `n` items.
pub fn generator(n: u64) -> Generator {
    Generator { next: 0, end: n }
}

/// W6's trivial work.
#[inline]
pub fn w6_work(x: u64) -> u64 {
    x + 1
}

/// W6: `imap` over a generator of `n` items, summing the results. rayon has
/// no ordered lazy map; its closest peer is `par_bridge`.
pub fn w6(runner: &Runner, n: u64) -> u64 {
    match runner {
        Runner::Serial => generator(n).map(w6_work).sum(),
        Runner::Rayon(pool) => pool.install(|| generator(n).par_bridge().map(w6_work).sum()),
        Runner::Shoal(pool) => {
            pool.imap(generator(n), w6_work).map(|r| r.expect("W6 on shoal")).sum()
        }
    }
}

/// W6 as a stream, for the memory probe: the results of [`w6_work`] over
/// `items`, in order, pulled lazily (serial: a plain `map`; shoal: `imap`,
/// or `imap_fn(&named::INC, ..)` on a pool that runs no closures, such as
/// `process`). rayon has no ordered lazy map and is [`Unavailable`] here.
pub fn w6_stream<'a, I>(
    runner: &'a Runner,
    items: I,
) -> Result<Box<dyn Iterator<Item = u64> + 'a>, Unavailable>
where
    I: Iterator<Item = u64> + 'a,
{
    match runner {
        Runner::Serial => Ok(Box::new(items.map(w6_work))),
        Runner::Rayon(_) => Err(Unavailable("rayon has no lazy ordered map (imap)".into())),
        Runner::Shoal(pool) if pool.runs_closures() => {
            Ok(Box::new(pool.imap(items, w6_work).map(|r| r.expect("W6 on shoal"))))
        }
        Runner::Shoal(pool) => Ok(Box::new(
            pool.imap_fn(&crate::named::INC, items).map(|r| r.expect("W6 on shoal (named)")),
        )),
    }
}

// --------------------------------------------------------- roundtrip ----

/// One empty task submitted and waited for: `pool.submit(|| ()).wait()` on
/// shoal, `pool.install(|| ())` on rayon, a plain call on serial.
pub fn roundtrip(runner: &Runner) {
    match runner {
        Runner::Serial => black_box(|| ())(),
        Runner::Rayon(pool) => pool.install(|| ()),
        Runner::Shoal(pool) => {
            pool.submit(|| ()).expect("submit on shoal").wait().expect("roundtrip on shoal")
        }
    }
}

/// The `rayon-spawn` round trip: `spawn` an empty task that answers on a
/// channel, and wait for the answer.
pub fn roundtrip_rayon_spawn(
    pool: &rayon::ThreadPool,
    tx: &crossbeam_channel::Sender<()>,
    rx: &crossbeam_channel::Receiver<()>,
) {
    let tx = tx.clone();
    pool.spawn(move || {
        let _ = tx.send(());
    });
    rx.recv().expect("rayon-spawn answers");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runners() -> Vec<Runner> {
        Implementation::available().into_iter().filter_map(|i| Runner::new(i, 2).ok()).collect()
    }

    #[test]
    fn w1_squares_in_order() {
        let input = w1_input(100_000);
        for r in runners() {
            let out = w1(&r, &input);
            assert_eq!(out.len(), 100_000, "{r:?}");
            assert!(out.iter().enumerate().all(|(i, &v)| v == (i * i) as u64), "{r:?}");
            assert_eq!(w1_chunked(&r, &input, 1000), out, "{r:?}");
        }
    }

    #[test]
    fn w2_jobs_parse() {
        let jobs = w2_jobs().expect("w2 jobs");
        assert_eq!(jobs.len(), 19);
        let total: Duration = jobs.iter().sum();
        assert!(total > Duration::from_secs(4) && total < Duration::from_secs(5), "{total:?}");
    }

    #[test]
    fn w3_estimates_pi() {
        for r in runners() {
            let pi = w3(&r, 20, 10_000);
            assert!((pi - std::f64::consts::PI).abs() < 0.05, "{r:?}: {pi}");
        }
        // The same for every implementation: tasks are seeded by index.
        let serial = w3(&Runner::Serial, 20, 10_000);
        for r in runners() {
            assert_eq!(w3(&r, 20, 10_000), serial, "{r:?}");
        }
    }

    #[test]
    fn w4_and_roundtrip_run() {
        for i in Implementation::available() {
            if let Ok(r) = Runner::new(i, 2) {
                roundtrip(&r);
                w4(i).expect("w4");
            }
        }
    }

    #[test]
    fn w6_sums() {
        let n = 100_000;
        let want = n * (n + 1) / 2;
        for r in runners() {
            assert_eq!(w6(&r, n), want, "{r:?}");
            if let Ok(s) = w6_stream(&r, generator(n)) {
                assert_eq!(s.sum::<u64>(), want, "{r:?}");
            }
        }
        assert_eq!(generator(10).size_hint(), (0, None));
    }
}
