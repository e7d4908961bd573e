//! The workloads on *named functions* ([`Function`]), for the process
//! backend: a closure cannot cross into a worker process, so these run the
//! same work as [`crate::workloads`] through `map_fn`, `imap_fn` and
//! `submit_fn`. The same call site runs on a threads pool (a direct call,
//! nothing serialized) and on a process pool (by name, arguments and
//! results serialized with postcard), which is what the `P-*` groups of the
//! `process` bench compare.
//!
//! A program that starts process pools must call
//! `shoal_process::worker_main(&named::registry())` first thing in `main`:
//! its workers are copies of it (the `process` bench, `w6-memory` and
//! `chaos` do).
//!
//! Sizes follow DESIGN.md: W1 is 100k items here (the in-process W1 uses
//! 10^6, as 100k is below timer noise there but not across processes).

use std::hint::black_box;
use std::time::Duration;

use rayon::prelude::*;
use serde_bytes::ByteBuf;
use shoal_core::Pool;
use shoal_core::function::{Function, Registry};
use shoal_process::Process;

use crate::workloads::{self, pi_hits, w6_work};
use crate::{Implementation, Runner, Unavailable};

// ------------------------------------------------------------ functions ----

fn square(x: u64) -> u64 {
    x * x
}

fn sleep(d: Duration) {
    std::thread::sleep(d);
}

fn pi((task, samples): (u64, u64)) -> u64 {
    pi_hits(task, samples)
}

fn length(bytes: ByteBuf) -> usize {
    bytes.len()
}

fn square_pid(x: u64) -> (u64, u32) {
    (x * x, std::process::id())
}

/// W1's work, `x * x`.
pub static SQUARE: Function<u64, u64> = Function::new("bench.square", square);
/// W2's work: sleep this long.
pub static SLEEP: Function<Duration, ()> = Function::new("bench.sleep", sleep);
/// W3's work: one Monte Carlo pi task `(task index, samples)`, returns hits.
pub static PI: Function<(u64, u64), u64> = Function::new("bench.pi", pi);
/// W5's work: the length of the payload. `ByteBuf` serializes as one block
/// of bytes (postcard: a length and a `memcpy`); a plain `Vec<u8>` goes
/// through serde byte by byte (one varint per byte), several times slower.
pub static LENGTH: Function<ByteBuf, usize> = Function::new("bench.length", length);
/// W6's trivial work, [`w6_work`].
pub static INC: Function<u64, u64> = Function::new("bench.inc", w6_work);
/// The chaos run's work: `x * x` and the pid of the worker that ran it.
pub static SQUARE_PID: Function<u64, (u64, u32)> = Function::new("bench.square_pid", square_pid);

/// Every function of this module, for `shoal_process::worker_main`.
pub fn registry() -> Registry {
    [
        &SQUARE as &'static dyn shoal_core::function::NamedFunction,
        &SLEEP,
        &PI,
        &LENGTH,
        &INC,
        &SQUARE_PID,
    ]
    .into_iter()
    .try_fold(Registry::new(), |r, f| r.with(f))
    .expect("distinct function names")
}

/// A shoal pool of `workers` processes that re-execute the current program
/// (which must call `worker_main(&registry())` first in `main`).
pub fn process_pool(workers: usize) -> Result<Pool, Unavailable> {
    Pool::builder()
        .workers(workers)
        .build(Process::new())
        .map_err(|e| Unavailable(format!("process: {e}")))
}

// ---------------------------------------------------------------- W1 ----

/// W1's number of items across processes.
pub const W1_ITEMS: u64 = 100_000;

/// The chunk size of `process-chunked` in `P-W1`: the best for the process
/// backend on the 2-core machine among 2000, 5000, 10 000, 12 500, 25 000
/// and 50 000 (`batch().chunksize(n).map_fn`, median of 30 runs, twice:
/// 5.5/5.8, 4.5/5.9, 4.3/4.6, 5.0/4.2, 6.0/5.8, 6.3/5.9 ms): 5 chunks per
/// worker, so encoding the next chunk overlaps the workers' run.
pub const W1_CHUNK: usize = 10_000;

/// W1 on a named function: `map_fn(&SQUARE, ..)` over a copy of `input`
/// (`map_fn` takes owned items), with `chunk` as explicit chunksize or
/// automatic chunking (`None`). Serial and rayon call [`SQUARE`] directly.
pub fn w1(runner: &Runner, input: &[u64], chunk: Option<usize>) -> Vec<u64> {
    match runner {
        Runner::Serial => input.iter().map(|&x| SQUARE.call(x)).collect(),
        Runner::Rayon(pool) => pool.install(|| input.par_iter().map(|&x| SQUARE.call(x)).collect()),
        Runner::Shoal(pool) => {
            let mut batch = pool.batch();
            if let Some(n) = chunk {
                batch = batch.chunksize(n);
            }
            batch.map_fn(&SQUARE, input.iter().copied()).expect("P-W1 on shoal")
        }
    }
}

// ---------------------------------------------------------------- W2 ----

/// W2 on a named function: every job sleeps its duration in a worker.
pub fn w2(runner: &Runner, jobs: &[Duration], chunk: Option<usize>) {
    match runner {
        Runner::Serial => jobs.iter().for_each(|&d| SLEEP.call(d)),
        Runner::Rayon(pool) => pool.install(|| jobs.par_iter().for_each(|&d| SLEEP.call(d))),
        Runner::Shoal(pool) => {
            let mut batch = pool.batch();
            if let Some(n) = chunk {
                batch = batch.chunksize(n);
            }
            batch.map_fn(&SLEEP, jobs.iter().copied()).expect("P-W2 on shoal");
        }
    }
}

// ---------------------------------------------------------------- W3 ----

/// W3 on a named function: `tasks` pi tasks of `samples` each (the same
/// RNG and seeds as [`workloads::w3`]); returns the estimate of pi.
pub fn w3(runner: &Runner, tasks: u64, samples: u64) -> f64 {
    let hits: u64 = match runner {
        Runner::Serial => (0..tasks).map(|i| PI.call((i, samples))).sum(),
        Runner::Rayon(pool) => {
            pool.install(|| (0..tasks).into_par_iter().map(|i| PI.call((i, samples))).sum())
        }
        Runner::Shoal(pool) => pool
            .map_fn(&PI, (0..tasks).map(move |i| (i, samples)))
            .expect("P-W3 on shoal")
            .into_iter()
            .sum(),
    };
    4.0 * hits as f64 / (tasks * samples) as f64
}

// ---------------------------------------------------------------- W4 ----

/// One trivial named task, submitted and waited for.
pub fn roundtrip(runner: &Runner) -> u64 {
    match runner {
        Runner::Serial => SQUARE.call(black_box(3)),
        Runner::Rayon(pool) => pool.install(|| SQUARE.call(black_box(3))),
        Runner::Shoal(pool) => {
            pool.submit_fn(&SQUARE, 3).expect("submit_fn").wait().expect("roundtrip on shoal")
        }
    }
}

/// W4: builds `implementation` with 2 workers ([`Implementation::Process`]:
/// two worker processes, started and handshaken), runs one trivial named
/// task, and shuts the pool down (drop: close, then wait for every worker
/// to exit).
pub fn w4(implementation: Implementation) -> Result<u64, Unavailable> {
    let runner = Runner::new(implementation, workloads::W4_WORKERS)?;
    let out = roundtrip(&runner);
    drop(runner);
    Ok(out)
}

// ---------------------------------------------------------------- W5 ----

/// W5's number of tasks.
pub const W5_TASKS: usize = 200;

/// W5's payload size (1 MiB).
pub const W5_BYTES: usize = 1 << 20;

/// W5's input: [`W5_TASKS`] *distinct* payloads of [`W5_BYTES`] (payload
/// `i` is filled with `i mod 256`), so no layer can send one buffer 200
/// times.
pub fn w5_input() -> Vec<ByteBuf> {
    (0..W5_TASKS).map(|i| ByteBuf::from(vec![i as u8; W5_BYTES])).collect()
}

/// W5: every payload goes to a worker, which returns its length; returns
/// the total. `map_fn` with default settings (automatic chunking); the
/// payloads are moved in, so a benchmark hands in a fresh copy each time.
pub fn w5(runner: &Runner, payloads: Vec<ByteBuf>) -> usize {
    match runner {
        Runner::Serial => payloads.into_iter().map(|p| LENGTH.call(p)).sum(),
        Runner::Rayon(pool) => {
            pool.install(|| payloads.into_par_iter().map(|p| LENGTH.call(p)).sum())
        }
        Runner::Shoal(pool) => {
            pool.map_fn(&LENGTH, payloads).expect("P-W5 on shoal").into_iter().sum()
        }
    }
}

// ---------------------------------------------------------------- W6 ----

/// W6 on a named function: `imap_fn(&INC, ..)` over a generator of `n`
/// items of unknown length, summed.
pub fn w6(runner: &Runner, n: u64) -> u64 {
    match runner {
        Runner::Serial => workloads::generator(n).map(|x| INC.call(x)).sum(),
        Runner::Rayon(pool) => {
            pool.install(|| workloads::generator(n).par_bridge().map(|x| INC.call(x)).sum())
        }
        Runner::Shoal(pool) => {
            pool.imap_fn(&INC, workloads::generator(n)).map(|r| r.expect("P-W6 on shoal")).sum()
        }
    }
}
