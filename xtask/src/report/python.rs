//! The Python groups: the rows of `benches/py/peers.py`, named
//! `py-<workload>/<implementation>`.
//!
//! - Peers ([`PEERS`]) are the pools a Python user would pick instead of
//!   shoal, each with default settings (`multiprocessing`) and variants
//!   (`multiprocessing-best`, `loky-best`, `multiprocessing-spawn`, ...).
//!   A Python group's rows are compared with `multiprocessing` and with the
//!   fastest peer row of the group ([`FASTEST_PEER`]), whichever variant
//!   it is.
//! - shoal's own rows ([`SHOAL`]) run with default settings; [`targets`]
//!   checks them against the Python binding issue's targets.
//! - The `multiprocessing` and `python-serial` rows also join the process
//!   suite's `P-*` group of the same workload ([`process_copies`]), where the
//!   Rust process backend is compared with them.

use super::{
    Measurement, Report, Target, find_measurement, flat_memory_target, human_time, relative,
};

/// The prefix of the Python groups.
pub const GROUP_PREFIX: &str = "py-";

/// The reference column of a Python group: its fastest peer row.
pub const FASTEST_PEER: &str = "fastest peer";

/// The Python peers (implementation names as `peers.py` prints them).
pub const PEERS: &[&str] = &["multiprocessing", "concurrent-futures", "loky", "mpire"];

/// shoal's Python rows: the process and threads backends.
pub const SHOAL: &[&str] = &["shoal-py-process", "shoal-py-threads"];

/// W2's makespan under greedy list scheduling of its 19 jobs on 8 workers,
/// seconds (DESIGN.md, workloads).
pub const W2_GREEDY_SECONDS: f64 = 0.644;

/// How far above [`W2_GREEDY_SECONDS`] the Python binding's W2 may end.
pub const W2_TOLERANCE: f64 = 0.02;

/// What `report.md` says before the first Python group.
pub const MARKDOWN_INTRO: &str = "The `py-*` groups run the workloads from Python \
     (`benches/py/peers.py`): every pool on the same Python functions, each workload and pool in \
     a fresh interpreter. A pool's row has its default settings; `-best` is the same pool at the \
     best of a few chunksizes; `vs fastest peer` compares with the fastest row of \
     multiprocessing, concurrent-futures, loky and mpire in the group (named in its heading). \
     The shoal rows use shoal's Python package with default settings.";

/// Whether `group` is one of the Python groups.
pub fn is_python_group(group: &str) -> bool {
    group.starts_with(GROUP_PREFIX)
}

/// Whether `implementation` is a peer's row: a peer's name, or a variant of
/// it (`loky-best`).
pub fn is_peer(implementation: &str) -> bool {
    PEERS.iter().any(|peer| {
        implementation
            .strip_prefix(peer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
    })
}

/// The fastest peer row among `members` (one group's rows), per unit of
/// work when rows did different amounts.
pub fn fastest_peer<'a>(members: &[&'a Measurement]) -> Option<&'a Measurement> {
    let mut peers = members.iter().copied().filter(|m| is_peer(&m.implementation));
    let first = peers.next()?;
    std::iter::once(first)
        .chain(peers)
        .filter_map(|m| relative(m, first).map(|r| (r, m)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, m)| m)
}

/// Copies of the `multiprocessing*` and `python-serial` rows of the Python
/// groups, renamed to the process suite's groups (`py-W1` to `P-W1`).
pub fn process_copies(measurements: &[Measurement]) -> Vec<Measurement> {
    measurements
        .iter()
        .filter_map(|m| {
            let workload = m.group.strip_prefix(GROUP_PREFIX)?;
            let copied = m.implementation == "python-serial"
                || m.implementation
                    .strip_prefix("multiprocessing")
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'));
            copied.then(|| Measurement { group: format!("P-{workload}"), ..m.clone() })
        })
        .collect()
}

/// How a ratio from alternating rounds is labelled.
fn interleaved_note(rounds: u64) -> String {
    format!(" (median of {rounds} interleaved rounds)")
}

fn target(name: String, measured: Option<String>, goal: String, met: Option<bool>) -> Target {
    Target { name, measured: measured.unwrap_or_else(|| "-".to_owned()), goal, met }
}

/// The Python binding issue's targets, for each of [`SHOAL`] (`-` where its
/// rows are missing):
/// - py-W1 default items/s >= 1.5x the fastest peer's (at its best
///   chunksize; in alternating rounds where `peers.py` timed that peer so);
/// - py-W2 default makespan within 2% of greedy list scheduling (0.644 s);
/// - py-W3 speedup >= 1.9 over `python-serial` and tasks/s >= 2x
///   `multiprocessing`'s;
/// - py-W4 time <= `multiprocessing` (fork);
/// - py-W5 MB/s >= 3x `multiprocessing`'s;
/// - py-W6 imap time <= 0.5x `multiprocessing`'s imap_unordered, checked
///   twice: as a user calls it (`multiprocessing-unordered`, its default
///   chunksize of 1: the words) and at its best chunksize
///   (`multiprocessing-unordered-best`, a stricter reading; the median
///   ratio of alternating rounds where `peers.py` timed them so, see
///   [`super::interleaved`]); and W6 memory flat.
pub fn targets(report: &Report) -> Vec<Target> {
    SHOAL.iter().flat_map(|shoal| backend_targets(report, shoal)).collect()
}

fn backend_targets(report: &Report, shoal: &str) -> Vec<Target> {
    let row = |group: &str| find_measurement(report, group, shoal);
    // Time of shoal's row over the reference's (per item where they differ).
    let vs = |group: &str, reference: &str| {
        relative(row(group)?, find_measurement(report, group, reference)?)
    };
    let mut targets = Vec::new();

    let w1_rows: Vec<&Measurement> =
        report.measurements.iter().filter(|m| m.group == "py-W1").collect();
    // Against the fastest peer's row; in alternating rounds where
    // `peers.py` timed that peer so. The peer at its best chunksize is the
    // goal, so its default row counts as that peer too (its default is one
    // of the chunksizes searched, and the alternating rounds time both).
    let w1 = fastest_peer(&w1_rows).and_then(|fastest| {
        let peer = fastest.implementation.as_str();
        let best = format!("{}-best", peer.strip_suffix("-best").unwrap_or(peer));
        match super::interleaved::find(report, "py-W1", shoal, &best) {
            Some(i) => Some((1.0 / i.ratio, i.reference.as_str(), interleaved_note(i.rounds))),
            None => Some((1.0 / relative(row("py-W1")?, fastest)?, peer, String::new())),
        }
    });
    targets.push(target(
        format!("py-W1 {shoal} vs the fastest peer"),
        w1.as_ref().map(|(s, peer, how)| format!("{s:.2}x the items/s of {peer}{how}")),
        ">= 1.5x the items/s of the fastest peer at its best chunksize".to_owned(),
        w1.map(|(s, _, _)| s >= 1.5),
    ));

    let limit = W2_GREEDY_SECONDS * (1.0 + W2_TOLERANCE);
    let w2 = row("py-W2").map(|m| m.median_ns / 1e9);
    targets.push(target(
        format!("py-W2 {shoal} makespan"),
        w2.map(|s| format!("{} ({:.3}x greedy)", human_time(s * 1e9), s / W2_GREEDY_SECONDS)),
        format!(
            "<= {limit:.3} s (greedy list scheduling {W2_GREEDY_SECONDS} s + {:.0}%)",
            W2_TOLERANCE * 100.0
        ),
        w2.map(|s| s <= limit),
    ));

    let serial = vs("py-W3", "python-serial").map(|r| 1.0 / r);
    targets.push(target(
        format!("py-W3 {shoal} speedup over python-serial"),
        serial.map(|s| format!("{s:.2}x")),
        ">= 1.90x on 2 cores".to_owned(),
        serial.map(|s| s >= 1.9),
    ));
    for (group, what, at_least) in [("py-W3", "tasks/s", 2.0), ("py-W5", "MB/s", 3.0)] {
        let speedup = vs(group, "multiprocessing").map(|r| 1.0 / r);
        targets.push(target(
            format!("{group} {shoal} vs multiprocessing"),
            speedup.map(|s| format!("{s:.2}x the {what}")),
            format!(">= {at_least}x the {what}"),
            speedup.map(|s| s >= at_least),
        ));
    }
    // Keep the order: W4 before W5.
    let w5 = targets.pop();
    let w4 = vs("py-W4", "multiprocessing");
    targets.push(target(
        format!("py-W4 {shoal} vs multiprocessing (fork)"),
        w4.map(|r| format!("{r:.2}x the time")),
        "<= 1.00x the time".to_owned(),
        w4.map(|r| r <= 1.0),
    ));
    targets.extend(w5);

    for (reference, how, reading) in [
        ("multiprocessing-unordered", "as called (default chunksize 1), per item", ""),
        ("multiprocessing-unordered-best", "at its best chunksize", " (stricter than the issue)"),
    ] {
        let w6 = match super::interleaved::find(report, "py-W6", shoal, reference) {
            Some(i) => Some((i.ratio, interleaved_note(i.rounds))),
            None => vs("py-W6", reference).map(|r| (r, String::new())),
        };
        targets.push(target(
            format!("py-W6 {shoal} imap vs multiprocessing imap_unordered {how}"),
            w6.as_ref().map(|(r, rounds)| format!("{r:.3}x the time{rounds}")),
            format!("<= 0.50x the time of imap_unordered {how}{reading}"),
            w6.map(|(r, _)| r <= 0.5),
        ));
    }
    targets.push(flat_memory_target(report, shoal));
    targets
}
