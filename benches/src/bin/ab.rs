//! Interleaved A/B timing of the workloads on a noisy machine: each round
//! times a few runs of the peer, then of shoal, back to back, and the
//! report is the median of the per-round ratios (noise from other
//! programs hits both sides of a round alike). Not a replacement for the
//! criterion suites; a quick check while changing the pool.
//!
//! `ab [w1|w3|pw1|pw5|rt]... [--rounds N] [--plugin] [--json]`
//!
//! With `--plugin` (built with the `plugin` feature), W1 and W3 compare
//! the threads backend loaded as a plugin with the statically linked one
//! instead of shoal with rayon. With `--json`, each W1 and W3 comparison
//! is also printed as one JSON line for `cargo xtask bench`:
//! `{"interleaved": group, "subject", "reference", "ratio", "q1", "q3",
//! "rounds"}` (ratios are subject time / reference time).

use std::hint::black_box;
use std::time::{Duration, Instant};

use shoal_benches::named;
use shoal_benches::workloads::{self, W1_ITEMS, W3_SAMPLES, W3_TASKS};
use shoal_benches::{Implementation, Runner};

fn time(mut f: impl FnMut(), reps: usize) -> Duration {
    let mut v: Vec<Duration> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    v.sort();
    v[reps / 2]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The two sides of a comparison: the reference (`peer`) and the subject.
struct Sides<'a> {
    peer: &'a str,
    subject: &'a str,
    json: bool,
}

fn report(name: &str, a: &[Duration], b: &[Duration], sides: &Sides<'_>) {
    let ratios: Vec<f64> =
        a.iter().zip(b).map(|(a, b)| b.as_secs_f64() / a.as_secs_f64()).collect();
    let ma = median(a.iter().map(Duration::as_secs_f64).collect());
    let mb = median(b.iter().map(Duration::as_secs_f64).collect());
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let (ratio, q1, q3) = (median(ratios), sorted[sorted.len() / 4], sorted[3 * sorted.len() / 4]);
    println!(
        "{name}: {} {:.1} us, {} {:.1} us, ratio median {ratio:.3} (q1 {q1:.3}, q3 {q3:.3})",
        sides.peer,
        ma * 1e6,
        sides.subject,
        mb * 1e6,
    );
    if sides.json {
        let line = serde_json::json!({
            "interleaved": name,
            "subject": sides.subject,
            "reference": sides.peer,
            "ratio": ratio,
            "q1": q1,
            "q3": q3,
            "rounds": a.len(),
        });
        println!("{line}");
    }
}

/// A 2-worker pool of the static or the plugin threads backend, its
/// workers pinned to cores.
fn pinned(implementation: Implementation) -> Result<Runner, String> {
    let backend: Box<dyn shoal_core::backend::Backend> = match implementation {
        Implementation::ThreadsPlugin => {
            shoal_benches::plugin::load_with("pin_cores=true").map_err(|e| e.to_string())?
        }
        _ => Box::new(shoal_threads::Threads::new().pin_cores(true)),
    };
    let pool = shoal_core::Pool::builder().workers(2).build_boxed(backend);
    pool.map(Runner::Shoal).map_err(|e| e.to_string())
}

fn main() {
    shoal_process::worker_main(&named::registry());
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let want = |w: &str| args.iter().any(|a| a == w);
    // The peer and the subject of W1 and W3.
    let (peer, subject) = if want("--plugin") {
        (Implementation::Threads, Implementation::ThreadsPlugin)
    } else {
        (Implementation::Rayon, Implementation::Threads)
    };
    let sides = Sides { peer: peer.name(), subject: subject.name(), json: want("--json") };
    if want("w1") {
        // Fresh pools each round: an unpinned pool's W1 time is bimodal on
        // this machine (~520 or ~780 µs for the pool's whole life: its two
        // workers sometimes share one core, see `Threads::pin_cores`), so
        // one pool a side compares two draws, not two implementations. The
        // plugin and the static backend are compared pinned, which removes
        // that draw; against rayon, shoal runs as a user gets it.
        let input = workloads::w1_input(W1_ITEMS);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            for (side, times) in [(peer, &mut a), (subject, &mut b)] {
                let runner = if want("--plugin") {
                    pinned(side)
                } else {
                    Runner::new(side, 2).map_err(|e| e.to_string())
                }
                .expect("a runner");
                time(|| drop(black_box(workloads::w1(&runner, &input))), 5);
                times.push(time(|| drop(black_box(workloads::w1(&runner, &input))), 30));
            }
        }
        report("W1", &a, &b, &sides);
    }
    if want("w3") {
        let rayon = Runner::new(peer, 2).expect("the peer");
        let shoal = Runner::new(subject, 2).expect("the subject");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            a.push(time(
                || {
                    black_box(workloads::w3(&rayon, W3_TASKS, W3_SAMPLES));
                },
                3,
            ));
            b.push(time(
                || {
                    black_box(workloads::w3(&shoal, W3_TASKS, W3_SAMPLES));
                },
                3,
            ));
        }
        report("W3", &a, &b, &sides);
    }
    if want("rt") {
        let shoal = Runner::new(Implementation::Threads, 2).expect("threads");
        let mut b = Vec::new();
        for _ in 0..rounds {
            b.push(time(|| workloads::roundtrip(&shoal), 2000));
        }
        println!(
            "roundtrip threads: {:.2} us",
            median(b.iter().map(|d| d.as_secs_f64()).collect()) * 1e6
        );
    }
    if want("pw1") {
        let input = workloads::w1_input(named::W1_ITEMS);
        let shoal = Runner::new(Implementation::Process, 2).expect("process");
        let mut b = Vec::new();
        for _ in 0..rounds {
            b.push(time(|| drop(black_box(named::w1(&shoal, &input, None))), 20));
        }
        let mut s: Vec<f64> = b.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        s.sort_by(f64::total_cmp);
        println!(
            "P-W1 process: median {:.2} ms (q1 {:.2}, q3 {:.2})",
            s[s.len() / 2],
            s[s.len() / 4],
            s[3 * s.len() / 4]
        );
    }
    if want("pw5") {
        let input = named::w5_input();
        let shoal = Runner::new(Implementation::Process, 2).expect("process");
        let mut b = Vec::new();
        for _ in 0..rounds {
            let mut v = Vec::new();
            for _ in 0..3 {
                let p = input.clone();
                let t = Instant::now();
                black_box(named::w5(&shoal, p));
                v.push(t.elapsed());
            }
            v.sort();
            b.push(v[1]);
        }
        let mut s: Vec<f64> = b.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        s.sort_by(f64::total_cmp);
        let mb = (named::W5_TASKS * named::W5_BYTES) as f64 / 1e6;
        println!(
            "P-W5 process: median {:.1} ms = {:.2} GB/s (q1 {:.1}, q3 {:.1} ms)",
            s[s.len() / 2],
            mb / s[s.len() / 2],
            s[s.len() / 4],
            s[3 * s.len() / 4]
        );
    }
}
