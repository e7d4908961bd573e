//! Interleaved comparisons: `shoal-benches`' `ab` binary times a reference
//! and a subject in alternating rounds (a few runs of one, then of the
//! other) and reports the median of the per-round time ratios. Noise from
//! the rest of the machine hits both sides of a round alike, so on a
//! shared 2-core machine this ratio moves far less between runs than the
//! ratio of two criterion medians measured seconds apart. The core's
//! targets that ask for a few percent (W3 within 5% of rayon, the plugin
//! within 3% of the static backend) are checked against it when it ran.

use serde_json::{Value, json};

use super::{Report, Table, ratio};

/// One comparison: `subject` time / `reference` time over `rounds`.
#[derive(Debug, Clone, PartialEq)]
pub struct Interleaved {
    /// Workload, e.g. `W3`.
    pub group: String,
    /// e.g. `threads`.
    pub subject: String,
    /// e.g. `rayon`.
    pub reference: String,
    /// Median of the per-round ratios.
    pub ratio: f64,
    /// Lower and upper quartile of the per-round ratios.
    pub q1: f64,
    /// See `q1`.
    pub q3: f64,
    /// Rounds run.
    pub rounds: u64,
}

/// The comparisons in `ab --json`'s output: every stdout line that is a
/// JSON object with an `interleaved` key; other lines are skipped.
pub fn parse(stdout: &str) -> Vec<Interleaved> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
        .filter_map(|v| from_value(&v))
        .collect()
}

/// One comparison as `ab --json` prints it (and `benches/py/peers.py` in
/// its `interleaved` list): `{"interleaved": group, "subject",
/// "reference", "ratio", "q1", "q3", "rounds"}`.
pub fn from_value(v: &Value) -> Option<Interleaved> {
    let text = |k: &str| v.get(k)?.as_str().map(str::to_owned);
    let number = |k: &str| v.get(k)?.as_f64().filter(|x| x.is_finite() && *x > 0.0);
    Some(Interleaved {
        group: text("interleaved")?,
        subject: text("subject")?,
        reference: text("reference")?,
        ratio: number("ratio")?,
        q1: number("q1")?,
        q3: number("q3")?,
        rounds: v.get("rounds")?.as_u64()?,
    })
}

/// The comparison of `subject` with `reference` on `group`, if it ran.
pub fn find<'a>(
    report: &'a Report,
    group: &str,
    subject: &str,
    reference: &str,
) -> Option<&'a Interleaved> {
    report
        .interleaved
        .iter()
        .find(|i| i.group == group && i.subject == subject && i.reference == reference)
}

/// One row per comparison.
pub(super) fn table(rows: &[Interleaved]) -> Table {
    let header = ["workload", "subject", "reference", "ratio (median)", "q1", "q3", "rounds"]
        .map(str::to_owned);
    let rows = rows
        .iter()
        .map(|i| {
            vec![
                i.group.clone(),
                i.subject.clone(),
                i.reference.clone(),
                format!("{:.3}x", i.ratio),
                ratio(Some(i.q1)),
                ratio(Some(i.q3)),
                i.rounds.to_string(),
            ]
        })
        .collect();
    Table { header: header.to_vec(), rows, text_columns: 3 }
}

/// The comparisons as JSON values.
pub(super) fn json(rows: &[Interleaved]) -> Vec<Value> {
    rows.iter()
        .map(|i| {
            json!({
                "group": i.group,
                "subject": i.subject,
                "reference": i.reference,
                "ratio": i.ratio,
                "q1": i.q1,
                "q3": i.q3,
                "rounds": i.rounds,
            })
        })
        .collect()
}
