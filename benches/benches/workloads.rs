//! The criterion suite: one group per DESIGN.md workload (`W1`, `W1-chunked`,
//! `W2`, `W2-chunk4`, `W3`, `W4`, `W6`, `roundtrip`), one benchmark per
//! implementation (`serial`, `rayon`, `rayon-spawn`, `threads`,
//! `threads-plugin`), so results land in
//! `target/criterion/<group>/<implementation>/new/estimates.json`.
//!
//! Criterion's defaults and flags, and how pools are built, are those of
//! `common/mod.rs`, shared with the process suite (`process.rs`, groups
//! `P-*`); the slow groups here are W2 and W3.

mod common;

use std::hint::black_box;

use common::{Suite, slow};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Throughput};
use shoal_benches::workloads::{
    self, W1_CHUNK, W1_ITEMS, W2_CHUNK, W2_WORKERS, W3_SAMPLES, W3_TASKS, W6_ITEMS,
};
use shoal_benches::{Implementation, Runner};

use Implementation::{Rayon, Serial, Threads, ThreadsPlugin};

fn w1(suite: &mut Suite) {
    let input = workloads::w1_input(W1_ITEMS);
    let setup = |g: &mut BenchmarkGroup<'_, WallTime>, _| {
        g.throughput(Throughput::Elements(W1_ITEMS));
    };
    suite.group("W1", 2, &[Serial, Rayon, Threads, ThreadsPlugin], setup, |g, i, r| {
        g.bench_function(i.name(), |b| b.iter(|| workloads::w1(&r, black_box(&input))));
    });
    suite.group("W1-chunked", 2, &[Rayon, Threads, ThreadsPlugin], setup, |g, i, r| {
        g.bench_function(i.name(), |b| {
            b.iter(|| workloads::w1_chunked(&r, black_box(&input), W1_CHUNK))
        });
    });
}

fn w2(suite: &mut Suite) {
    let jobs = match workloads::w2_jobs() {
        Ok(jobs) => jobs,
        Err(why) => {
            eprintln!("note: skipping W2: {why}");
            return;
        }
    };
    // No `serial`: it is the sum of the sleeps (~4.4 s per iteration) and
    // would double the suite's run time for a number known in advance.
    for (name, chunk) in [("W2", None), ("W2-chunk4", Some(W2_CHUNK))] {
        suite.group(name, W2_WORKERS, &[Rayon, Threads, ThreadsPlugin], slow, |g, i, r| {
            g.bench_function(i.name(), |b| b.iter(|| workloads::w2(&r, &jobs, chunk)));
        });
    }
}

fn w3(suite: &mut Suite) {
    let setup = |g: &mut BenchmarkGroup<'_, WallTime>, given| {
        slow(g, given);
        g.throughput(Throughput::Elements(W3_TASKS));
    };
    suite.group("W3", 2, &[Serial, Rayon, Threads, ThreadsPlugin], setup, |g, i, r| {
        g.bench_function(i.name(), |b| b.iter(|| workloads::w3(&r, W3_TASKS, W3_SAMPLES)));
    });
}

fn w4(suite: &mut Suite) {
    suite.group(
        "W4",
        2,
        &[Rayon, Threads, ThreadsPlugin],
        |_, _| {},
        |g, i, r| {
            // Only built to see whether it builds: W4 builds its own pools.
            drop(r);
            g.bench_function(i.name(), |b| b.iter(|| workloads::w4(i).expect("W4")));
        },
    );
}

fn w6(suite: &mut Suite) {
    let setup = |g: &mut BenchmarkGroup<'_, WallTime>, _| {
        g.throughput(Throughput::Elements(W6_ITEMS));
    };
    suite.group("W6", 2, &[Serial, Rayon, Threads, ThreadsPlugin], setup, |g, i, r| {
        g.bench_function(i.name(), |b| b.iter(|| workloads::w6(&r, black_box(W6_ITEMS))));
    });
}

fn roundtrip(suite: &mut Suite) {
    suite.group(
        "roundtrip",
        2,
        &[Rayon, Threads, ThreadsPlugin],
        |_, _| {},
        |g, i, r| {
            g.bench_function(i.name(), |b| b.iter(|| workloads::roundtrip(&r)));
            if let Runner::Rayon(pool) = &r {
                let (tx, rx) = crossbeam_channel::bounded(1);
                g.bench_function("rayon-spawn", |b| {
                    b.iter(|| workloads::roundtrip_rayon_spawn(pool, &tx, &rx))
                });
            }
        },
    );
}

fn main() {
    let mut suite = Suite::new();
    w1(&mut suite);
    w2(&mut suite);
    w3(&mut suite);
    w4(&mut suite);
    w6(&mut suite);
    roundtrip(&mut suite);
    suite.criterion.final_summary();
}
