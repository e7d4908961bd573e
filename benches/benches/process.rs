//! The process suite: the DESIGN.md workloads through named functions
//! (`shoal_benches::named`), so that they run on shoal's process backend,
//! beside the same call sites on the threads backend and, where cheap, a
//! serial loop. Groups `P-W1`, `P-W2`, `P-W2-chunk4`, `P-W3`, `P-W4`,
//! `P-W5`, `P-W6` (distinct from the in-process `W*` groups of
//! `workloads.rs`); implementations `serial`, `threads`, `process`, and in
//! `P-W1` also `process-chunked` (explicit chunksize
//! [`named::W1_CHUNK`]). `cargo xtask bench` adds Python's
//! `multiprocessing.Pool` rows (`benches/py/peers.py`) to the same groups.
//!
//! The bench binary is its own worker program: `main` first calls
//! `shoal_process::worker_main`, so a copy started as a worker runs the
//! named functions and never reaches criterion.
//!
//! | group | work | throughput |
//! |---|---|---|
//! | P-W1 | `map_fn(x*x)` over 100k items, automatic chunking; `process-chunked`: chunksize 10 000 | elements |
//! | P-W2 | the 19 sleeps of `w2_jobs.json` on 8 workers, automatic chunking | - |
//! | P-W2-chunk4 | the same, chunksize 4 | - |
//! | P-W3 | 1000 Monte Carlo pi tasks of 1e5 samples (the in-process W3's RNG) | elements |
//! | P-W4 | build a pool of 2, one `submit_fn`, drop (close and wait for the workers) | - |
//! | P-W5 | 200 distinct 1 MiB `ByteBuf`s, `map_fn(len)` | bytes |
//! | P-W6 | `imap_fn(x+1)` over a generator of 10^6 items of unknown length | elements |

mod common;

use std::hint::black_box;

use common::{Suite, slow};
use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Throughput};
use shoal_benches::Implementation;
use shoal_benches::named::{self, W1_CHUNK, W1_ITEMS, W5_BYTES, W5_TASKS};
use shoal_benches::workloads::{self, W2_CHUNK, W2_WORKERS, W3_SAMPLES, W3_TASKS, W6_ITEMS};

use Implementation::{Process, Serial, Threads};

fn w1(suite: &mut Suite) {
    let input = workloads::w1_input(W1_ITEMS);
    let setup = |g: &mut BenchmarkGroup<'_, WallTime>, _| {
        g.throughput(Throughput::Elements(W1_ITEMS));
    };
    suite.group("P-W1", 2, &[Serial, Threads, Process], setup, |g, i, r| {
        g.bench_function(i.name(), |b| b.iter(|| named::w1(&r, black_box(&input), None)));
        if i == Process {
            g.bench_function("process-chunked", |b| {
                b.iter(|| named::w1(&r, black_box(&input), Some(W1_CHUNK)))
            });
        }
    });
}

fn w2(suite: &mut Suite) {
    let jobs = match workloads::w2_jobs() {
        Ok(jobs) => jobs,
        Err(why) => {
            eprintln!("note: skipping P-W2: {why}");
            return;
        }
    };
    // No `serial`: the sum of the sleeps, ~4.4 s per iteration.
    for (name, chunk) in [("P-W2", None), ("P-W2-chunk4", Some(W2_CHUNK))] {
        suite.group(name, W2_WORKERS, &[Threads, Process], slow, |g, i, r| {
            g.bench_function(i.name(), |b| b.iter(|| named::w2(&r, &jobs, chunk)));
        });
    }
}

fn w3(suite: &mut Suite) {
    let setup = |g: &mut BenchmarkGroup<'_, WallTime>, given| {
        slow(g, given);
        g.throughput(Throughput::Elements(W3_TASKS));
    };
    suite.group("P-W3", 2, &[Serial, Threads, Process], setup, |g, i, r| {
        g.bench_function(i.name(), |b| b.iter(|| named::w3(&r, W3_TASKS, W3_SAMPLES)));
    });
}

fn w4(suite: &mut Suite) {
    suite.group(
        "P-W4",
        2,
        &[Threads, Process],
        |_, _| {},
        |g, i, r| {
            // Only built to see whether it builds: W4 builds its own pools.
            drop(r);
            g.bench_function(i.name(), |b| b.iter(|| named::w4(i).expect("P-W4")));
        },
    );
}

fn w5(suite: &mut Suite) {
    // Made on first use: 200 MiB that a filtered run need not make.
    let payloads = std::cell::OnceCell::new();
    let setup = |g: &mut BenchmarkGroup<'_, WallTime>, given| {
        slow(g, given);
        g.throughput(Throughput::Bytes((W5_TASKS * W5_BYTES) as u64));
    };
    // No `serial`: 200 calls of `len` take nanoseconds.
    suite.group("P-W5", 2, &[Threads, Process], setup, |g, i, r| {
        // `map_fn` takes the payloads by value: each iteration gets a
        // fresh copy, made outside the timed part.
        g.bench_function(i.name(), |b| {
            b.iter_batched(
                || payloads.get_or_init(named::w5_input).clone(),
                |p| named::w5(&r, p),
                BatchSize::PerIteration,
            )
        });
    });
}

fn w6(suite: &mut Suite) {
    let setup = |g: &mut BenchmarkGroup<'_, WallTime>, given| {
        slow(g, given);
        g.throughput(Throughput::Elements(W6_ITEMS));
    };
    suite.group("P-W6", 2, &[Serial, Threads, Process], setup, |g, i, r| {
        g.bench_function(i.name(), |b| b.iter(|| named::w6(&r, black_box(W6_ITEMS))));
    });
}

fn main() {
    // First line: a copy of this program started as a worker runs the
    // named functions here and never returns.
    shoal_process::worker_main(&named::registry());

    let mut suite = Suite::new();
    w1(&mut suite);
    w2(&mut suite);
    w3(&mut suite);
    w4(&mut suite);
    w5(&mut suite);
    w6(&mut suite);
    suite.criterion.final_summary();
}
