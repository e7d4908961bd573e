//! The criterion suite: one group per DESIGN.md workload (`W1`, `W1-chunked`,
//! `W2`, `W2-chunk4`, `W3`, `W4`, `W6`, `roundtrip`), one benchmark per
//! implementation (`serial`, `rayon`, `rayon-spawn`, `threads`,
//! `threads-plugin`), so results land in
//! `target/criterion/<group>/<implementation>/new/estimates.json`.
//!
//! Criterion's flags (`--warm-up-time`, `--measurement-time`,
//! `--sample-size`, filters) apply to every group. The suite's own defaults
//! (see [`WARM_UP`], [`MEASUREMENT`]) keep a full run within about five
//! minutes on 2 cores; the slow groups (W2, W3) take 10 flat samples unless
//! `--sample-size` is given.
//!
//! Every pool is built once per group and implementation, outside the timed
//! part (except in W4, whose subject is building one), and dropped before
//! the next implementation runs, so idle threads of one do not share the
//! cores with the next.

use std::collections::HashSet;
use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use shoal_benches::workloads::{
    self, W1_CHUNK, W1_ITEMS, W2_CHUNK, W2_WORKERS, W3_SAMPLES, W3_TASKS, W6_ITEMS,
};
use shoal_benches::{Implementation, Runner};

/// Default warm-up per benchmark (criterion's own is 3 s).
const WARM_UP: Duration = Duration::from_secs(2);
/// Default measurement time per benchmark (criterion's own is 5 s).
const MEASUREMENT: Duration = Duration::from_secs(4);
/// Samples of the slow groups (W2, W3), unless `--sample-size` is given.
const SLOW_SAMPLES: usize = 10;

use Implementation::{Rayon, Serial, Threads, ThreadsPlugin};

struct Suite {
    criterion: Criterion,
    /// Whether `--sample-size` was given: then the slow groups keep it.
    sample_size_given: bool,
    /// Implementations already reported as unavailable (one notice each).
    noticed: HashSet<Implementation>,
}

impl Suite {
    fn new() -> Self {
        let criterion = Criterion::default()
            .warm_up_time(WARM_UP)
            .measurement_time(MEASUREMENT)
            .configure_from_args();
        let sample_size_given =
            std::env::args().any(|a| a == "--sample-size" || a.starts_with("--sample-size="));
        Suite { criterion, sample_size_given, noticed: HashSet::new() }
    }

    /// Runs `bench` for each of `implementations` that builds (built just
    /// before its benchmarks, dropped after them), in a group named `name`
    /// set up by `setup`.
    fn group(
        &mut self,
        name: &str,
        workers: usize,
        implementations: &[Implementation],
        setup: impl FnOnce(&mut BenchmarkGroup<'_, WallTime>, bool),
        mut bench: impl FnMut(&mut BenchmarkGroup<'_, WallTime>, Implementation, Runner),
    ) {
        let Suite { criterion, sample_size_given, noticed } = self;
        let mut group = criterion.benchmark_group(name);
        setup(&mut group, *sample_size_given);
        for &implementation in implementations {
            if let Some(runner) = build(noticed, implementation, workers) {
                bench(&mut group, implementation, runner);
            }
        }
        group.finish();
    }
}

/// Builds `implementation`, or prints a one-line notice (once per
/// implementation) and returns `None`. `threads-plugin` is silently left
/// out without the `plugin` feature.
fn build(
    noticed: &mut HashSet<Implementation>,
    implementation: Implementation,
    workers: usize,
) -> Option<Runner> {
    if !Implementation::available().contains(&implementation) {
        return None;
    }
    match Runner::new(implementation, workers) {
        Ok(runner) => Some(runner),
        Err(why) => {
            if noticed.insert(implementation) {
                eprintln!("note: skipping {implementation}: {why}");
            }
            None
        }
    }
}

/// Flat sampling with few samples, for groups whose iteration takes
/// hundreds of milliseconds.
fn slow(group: &mut BenchmarkGroup<'_, WallTime>, sample_size_given: bool) {
    group.sampling_mode(SamplingMode::Flat);
    if !sample_size_given {
        group.sample_size(SLOW_SAMPLES);
    }
}

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
