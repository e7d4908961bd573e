//! What both criterion suites share (`workloads.rs` in-process, `process.rs`
//! across processes): criterion's defaults, one group per workload with one
//! benchmark per implementation, and the flat sampling of slow groups.
//!
//! Criterion's flags (`--warm-up-time`, `--measurement-time`,
//! `--sample-size`, filters) apply to every group. The suite's own defaults
//! (see [`WARM_UP`], [`MEASUREMENT`]) keep a full run within minutes on 2
//! cores; the slow groups take 10 flat samples unless `--sample-size` is
//! given.
//!
//! Every pool is built once per group and implementation, outside the timed
//! part (except in W4, whose subject is building one), and dropped before
//! the next implementation runs, so idle workers of one do not share the
//! cores with the next.

use std::collections::HashSet;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};
use shoal_benches::{Implementation, Runner};

/// Default warm-up per benchmark (criterion's own is 3 s).
const WARM_UP: Duration = Duration::from_secs(2);
/// Default measurement time per benchmark (criterion's own is 5 s).
const MEASUREMENT: Duration = Duration::from_secs(4);
/// Samples of the slow groups, unless `--sample-size` is given.
const SLOW_SAMPLES: usize = 10;

/// Criterion, configured, and what the groups need to know.
pub struct Suite {
    /// The harness; call `final_summary` on it at the end.
    pub criterion: Criterion,
    /// Whether `--sample-size` was given: then the slow groups keep it.
    sample_size_given: bool,
    /// Implementations already reported as unavailable (one notice each).
    noticed: HashSet<Implementation>,
}

impl Suite {
    /// Criterion with the suite's defaults, then the command line.
    pub fn new() -> Self {
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
    pub fn group(
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
/// out without the `plugin` feature; `process` is only asked for by the
/// process suite, whose `main` runs the workers.
fn build(
    noticed: &mut HashSet<Implementation>,
    implementation: Implementation,
    workers: usize,
) -> Option<Runner> {
    if implementation != Implementation::Process
        && !Implementation::available().contains(&implementation)
    {
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
pub fn slow(group: &mut BenchmarkGroup<'_, WallTime>, sample_size_given: bool) {
    group.sampling_mode(SamplingMode::Flat);
    if !sample_size_given {
        group.sample_size(SLOW_SAMPLES);
    }
}
