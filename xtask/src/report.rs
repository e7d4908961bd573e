//! Benchmark results: reading criterion's output and the W6 memory probe, and
//! rendering one comparison as a plain-text table, Markdown, an SVG bar chart
//! and `results.json`.
//!
//! Criterion (0.8) writes, for a benchmark `<group>/<function>`,
//! `<criterion dir>/<group>/<function>/new/estimates.json`
//! (`{"median": {"point_estimate": ns, ..}, "mean": {..}, ..}`) and, next to
//! it, `benchmark.json` (`group_id`, `function_id`, `value_str`,
//! `throughput`). Directory names are sanitized by criterion, so names are
//! taken from `benchmark.json` when it exists. Everything is read
//! defensively: what is missing or malformed is skipped with a note.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

#[cfg(test)]
mod tests;

/// The implementation that ratios are first taken against.
const FAST_REFERENCE: &str = "rayon";
/// The implementation that ratios are also taken against.
const SERIAL_REFERENCE: &str = "serial";
/// Display order of the groups we know; other groups follow by name.
const GROUP_ORDER: &[&str] = &["W1", "W2", "W3", "W4", "W5", "W6", "roundtrip"];
/// Display order of the implementations we know; others follow by name.
const IMPLEMENTATION_ORDER: &[&str] = &["serial", "rayon", "threads", "threads-plugin", "process"];

/// The machine and run the numbers come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// Available parallelism (what `nproc` prints).
    pub nproc: usize,
    /// `rustc --version`.
    pub rustc: String,
    /// When the run started, UTC.
    pub date: String,
    /// Whether `--quick` shortened the measurements.
    pub quick: bool,
}

/// Work done by one iteration of a benchmark, as criterion records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throughput {
    /// Elements (tasks, items) per iteration.
    Elements(u64),
    /// Bytes per iteration.
    Bytes(u64),
    /// Bits per iteration.
    Bits(u64),
}

/// One criterion benchmark: `<group>/<implementation>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Workload, e.g. `W1`.
    pub group: String,
    /// Implementation, e.g. `rayon` (with `/<parameter>` if the benchmark has one).
    pub implementation: String,
    /// Median time per iteration, nanoseconds.
    pub median_ns: f64,
    /// Mean time per iteration, nanoseconds, if recorded.
    pub mean_ns: Option<f64>,
    /// Work per iteration, if the benchmark declared it.
    pub throughput: Option<Throughput>,
}

impl Measurement {
    /// Units of work per second at the median time.
    pub fn per_second(&self) -> Option<f64> {
        let per_iteration = match self.throughput? {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::Bits(n) => n as f64,
        };
        (self.median_ns > 0.0).then(|| per_iteration * 1e9 / self.median_ns)
    }
}

/// One run of the W6 memory probe (`w6-memory --backend B --items N`).
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryProbe {
    /// Backend name.
    pub backend: String,
    /// Number of items the generator yields.
    pub items: u64,
    /// Peak resident set size of the probe process, KiB.
    pub peak_rss_kib: u64,
    /// Items pulled from the generator before the first result came back.
    pub pulled_before_first: Option<u64>,
    /// Wall time of the run, seconds.
    pub seconds: Option<f64>,
}

/// Everything one `cargo xtask bench` produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Where and when.
    pub machine: Machine,
    /// Criterion results.
    pub measurements: Vec<Measurement>,
    /// W6 memory probe results.
    pub memory: Vec<MemoryProbe>,
    /// What went wrong without stopping the run (failed probes, skipped files).
    pub notes: Vec<String>,
}

// ---------------------------------------------------------------------------
// Reading

/// Criterion results found under a directory, plus notes on what was skipped.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The benchmarks read, in directory order.
    pub measurements: Vec<Measurement>,
    /// One line per benchmark directory that was skipped, with the reason.
    pub skipped: Vec<String>,
}

/// Reads every `<dir>/**/new/estimates.json` under the criterion directory.
/// With `since`, results written before that time (left over from earlier
/// runs or removed benchmarks) are skipped.
pub fn load_criterion(dir: &Path, since: Option<SystemTime>) -> Loaded {
    let mut loaded = Loaded::default();
    walk(dir, dir, since, 0, &mut loaded);
    loaded
}

fn walk(root: &Path, dir: &Path, since: Option<SystemTime>, depth: usize, loaded: &mut Loaded) {
    const MAX_DEPTH: usize = 6;
    let estimates = dir.join("new").join("estimates.json");
    if estimates.is_file() {
        let relative = dir.strip_prefix(root).unwrap_or(dir);
        let stale = since.is_some_and(|since| {
            std::fs::metadata(&estimates).and_then(|m| m.modified()).is_ok_and(|t| t < since)
        });
        if stale {
            loaded.skipped.push(format!("{}: left over from an earlier run", relative.display()));
        } else {
            match read_measurement(dir, relative) {
                Ok(measurement) => loaded.measurements.push(measurement),
                Err(why) => loaded.skipped.push(format!("{}: {why}", relative.display())),
            }
        }
    }
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut children: Vec<_> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| entry.path())
        .filter(|path| {
            // Criterion's own per-benchmark folders, not benchmarks.
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !matches!(name, "new" | "base" | "change")
        })
        .collect();
    children.sort();
    for child in children {
        walk(root, &child, since, depth + 1, loaded);
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

fn point_estimate(estimates: &Value, statistic: &str) -> Option<f64> {
    estimates.get(statistic)?.get("point_estimate")?.as_f64().filter(|v| v.is_finite())
}

fn read_measurement(dir: &Path, relative: &Path) -> Result<Measurement, String> {
    let estimates = read_json(&dir.join("new").join("estimates.json"))?;
    let median_ns = ["median", "mean", "slope"]
        .iter()
        .find_map(|statistic| point_estimate(&estimates, statistic))
        .ok_or("estimates.json has no median, mean or slope point_estimate")?;
    let mean_ns = point_estimate(&estimates, "mean");

    // Names: from benchmark.json if readable, else from the directory path.
    let mut parts: Vec<String> =
        relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
    if parts.is_empty() {
        parts.push("(criterion root)".to_owned());
    }
    let mut group = parts[0].clone();
    let mut implementation = if parts.len() > 1 { parts[1..].join("/") } else { "-".to_owned() };
    let mut throughput = None;
    if let Ok(benchmark) = read_json(&dir.join("new").join("benchmark.json")) {
        let text = |key: &str| benchmark.get(key).and_then(Value::as_str).map(str::to_owned);
        if let Some(group_id) = text("group_id") {
            group = group_id;
            implementation = match (text("function_id"), text("value_str")) {
                (Some(function), Some(value)) => format!("{function}/{value}"),
                (Some(function), None) => function,
                (None, Some(value)) => value,
                (None, None) => "-".to_owned(),
            };
        }
        throughput = benchmark.get("throughput").and_then(parse_throughput);
    }
    Ok(Measurement { group, implementation, median_ns, mean_ns, throughput })
}

/// Parses criterion's serde form of `Throughput`, e.g. `{"Elements": 1000}`.
fn parse_throughput(value: &Value) -> Option<Throughput> {
    let (kind, amount) = value.as_object()?.iter().next()?;
    match kind.as_str() {
        "Elements" => Some(Throughput::Elements(amount.as_u64()?)),
        "Bytes" | "BytesDecimal" => Some(Throughput::Bytes(amount.as_u64()?)),
        "Bits" => Some(Throughput::Bits(amount.as_u64()?)),
        "ElementsAndBytes" => Some(Throughput::Elements(amount.get("elements")?.as_u64()?)),
        _ => None,
    }
}

/// Parses the output of `w6-memory`: the last stdout line that is a JSON
/// object with `peak_rss_kib`. `backend` and `items` are what was asked for,
/// used when the line lacks them.
pub fn parse_memory_probe(stdout: &str, backend: &str, items: u64) -> Result<MemoryProbe, String> {
    let line = stdout
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
        .find(|value| value.get("peak_rss_kib").is_some())
        .ok_or("no JSON line with `peak_rss_kib` in its output")?;
    let number = |key: &str| {
        let value = line.get(key)?;
        value.as_u64().or_else(|| value.as_f64().filter(|v| *v >= 0.0).map(|v| v.round() as u64))
    };
    Ok(MemoryProbe {
        backend: line.get("backend").and_then(Value::as_str).unwrap_or(backend).to_owned(),
        items: number("items").unwrap_or(items),
        peak_rss_kib: number("peak_rss_kib").ok_or("`peak_rss_kib` is not a number")?,
        pulled_before_first: number("pulled_before_first"),
        seconds: line.get("seconds").and_then(Value::as_f64),
    })
}

// ---------------------------------------------------------------------------
// Arranging

/// A measurement with its ratios to the references of its group.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    /// The measurement.
    pub measurement: &'a Measurement,
    /// `time / time(rayon)` in the same group.
    pub vs_rayon: Option<f64>,
    /// `time / time(serial)` in the same group.
    pub vs_serial: Option<f64>,
}

/// A group with its rows, in display order.
#[derive(Debug, Clone, PartialEq)]
pub struct Group<'a> {
    /// Group name, e.g. `W1`.
    pub name: &'a str,
    /// One row per implementation.
    pub rows: Vec<Row<'a>>,
}

impl Group<'_> {
    /// Whether the group has a rayon row to compare with.
    fn has_rayon(&self) -> bool {
        self.rows.iter().any(|row| row.measurement.implementation == FAST_REFERENCE)
    }
}

/// Sort key: known names in their order; a variant such as `W1-chunked` or
/// `rayon-spawn` right after its base name; unknown names last, by name.
fn order_key<'a>(name: &'a str, order: &[&str]) -> (usize, &'a str) {
    let exact = order.iter().position(|known| *known == name);
    let variant = || {
        order.iter().position(|known| {
            name.strip_prefix(known).is_some_and(|rest| rest.starts_with(['-', '_', '/']))
        })
    };
    (exact.or_else(variant).unwrap_or(order.len()), name)
}

/// Groups the measurements, known groups and implementations first.
pub fn groups(measurements: &[Measurement]) -> Vec<Group<'_>> {
    let mut by_group: BTreeMap<(usize, &str), Vec<&Measurement>> = BTreeMap::new();
    for m in measurements {
        by_group.entry(order_key(&m.group, GROUP_ORDER)).or_default().push(m);
    }
    by_group
        .into_iter()
        .map(|((_, name), mut members)| {
            members.sort_by(|a, b| {
                order_key(&a.implementation, IMPLEMENTATION_ORDER)
                    .cmp(&order_key(&b.implementation, IMPLEMENTATION_ORDER))
            });
            let time_of = |reference: &str| {
                members
                    .iter()
                    .find(|m| m.implementation == reference)
                    .map(|m| m.median_ns)
                    .filter(|t| *t > 0.0)
            };
            let (rayon, serial) = (time_of(FAST_REFERENCE), time_of(SERIAL_REFERENCE));
            let rows = members
                .iter()
                .map(|m| Row {
                    measurement: m,
                    vs_rayon: rayon.map(|r| m.median_ns / r),
                    vs_serial: serial.map(|s| m.median_ns / s),
                })
                .collect();
            Group { name, rows }
        })
        .collect()
}

/// W6 memory results of one backend, by number of items.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryRow<'a> {
    /// Backend name.
    pub backend: &'a str,
    /// Probe results by number of items.
    pub by_items: BTreeMap<u64, &'a MemoryProbe>,
    /// `peak(largest N) / peak(smallest N)` over all sizes probed; close to 1
    /// when memory stays flat.
    pub growth: Option<f64>,
}

/// The item counts probed (ascending) and one row per backend.
pub fn memory_rows(probes: &[MemoryProbe]) -> (Vec<u64>, Vec<MemoryRow<'_>>) {
    let mut sizes: Vec<u64> = probes.iter().map(|p| p.items).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut by_backend: BTreeMap<(usize, &str), BTreeMap<u64, &MemoryProbe>> = BTreeMap::new();
    for probe in probes {
        by_backend
            .entry(order_key(&probe.backend, IMPLEMENTATION_ORDER))
            .or_default()
            .insert(probe.items, probe);
    }
    let rows = by_backend
        .into_iter()
        .map(|((_, backend), by_items)| {
            let growth = match (sizes.first(), sizes.last()) {
                (Some(small), Some(large)) if small != large => {
                    match (by_items.get(small), by_items.get(large)) {
                        (Some(a), Some(b)) if a.peak_rss_kib > 0 => {
                            Some(b.peak_rss_kib as f64 / a.peak_rss_kib as f64)
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            MemoryRow { backend, by_items, growth }
        })
        .collect();
    (sizes, rows)
}

// ---------------------------------------------------------------------------
// Formatting numbers

/// Three significant digits, at most two decimals.
fn sig3(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// A duration in nanoseconds in the unit that suits it: `1.23 ms`.
pub fn human_time(ns: f64) -> String {
    let (value, unit) = if ns >= 1e9 {
        (ns / 1e9, "s")
    } else if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    format!("{} {unit}", sig3(value))
}

/// Work per second: `812 Melem/s`, `1234 MB/s`.
pub fn human_throughput(measurement: &Measurement) -> Option<String> {
    let per_second = measurement.per_second()?;
    Some(match measurement.throughput? {
        Throughput::Elements(_) => {
            let (value, prefix) = if per_second >= 1e9 {
                (per_second / 1e9, "G")
            } else if per_second >= 1e6 {
                (per_second / 1e6, "M")
            } else if per_second >= 1e3 {
                (per_second / 1e3, "k")
            } else {
                (per_second, "")
            };
            format!("{} {prefix}elem/s", sig3(value))
        }
        Throughput::Bytes(_) => format!("{} MB/s", sig3(per_second / 1e6)),
        Throughput::Bits(_) => format!("{} Mbit/s", sig3(per_second / 1e6)),
    })
}

/// A ratio as `1.23x`, or `-` when unknown.
pub fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}x"))
}

/// An item count: `10^6` for powers of ten, else the number.
pub fn items_label(items: u64) -> String {
    let mut power = 0;
    let mut rest = items;
    while rest >= 10 && rest.is_multiple_of(10) {
        rest /= 10;
        power += 1;
    }
    if rest == 1 && power > 0 { format!("10^{power}") } else { items.to_string() }
}

/// A memory size given in KiB: `850 KiB`, `12.3 MiB`.
pub fn human_kib(kib: u64) -> String {
    if kib < 1024 {
        format!("{kib} KiB")
    } else if kib < 1024 * 1024 {
        format!("{} MiB", sig3(kib as f64 / 1024.0))
    } else {
        format!("{} GiB", sig3(kib as f64 / (1024.0 * 1024.0)))
    }
}

/// A time as `2025-01-31 12:34:56 UTC`.
pub fn utc_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

// ---------------------------------------------------------------------------
// Tables

/// A table: a header and rows of cells; the first column is a name
/// (left-aligned), the others are numbers (right-aligned).
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        widths
    }

    fn text(&self, out: &mut String) {
        let widths = self.widths();
        for cells in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::from(" ");
            for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
                let pad = " ".repeat(width - cell.chars().count());
                if index == 0 {
                    let _ = write!(line, " {cell}{pad}");
                } else {
                    let _ = write!(line, "   {pad}{cell}");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }

    fn markdown(&self, out: &mut String) {
        let row = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out.push_str(&row(&self.header));
        let rule: Vec<String> = (0..self.header.len())
            .map(|i| if i == 0 { "---".to_owned() } else { "---:".to_owned() })
            .collect();
        out.push_str(&row(&rule));
        for cells in &self.rows {
            out.push_str(&row(cells));
        }
    }
}

fn group_table(group: &Group<'_>) -> Table {
    Table {
        header: ["implementation", "median", "throughput", "vs rayon", "vs serial"]
            .map(str::to_owned)
            .to_vec(),
        rows: group
            .rows
            .iter()
            .map(|row| {
                vec![
                    row.measurement.implementation.clone(),
                    human_time(row.measurement.median_ns),
                    human_throughput(row.measurement).unwrap_or_else(|| "-".to_owned()),
                    ratio(row.vs_rayon),
                    ratio(row.vs_serial),
                ]
            })
            .collect(),
    }
}

fn memory_table(probes: &[MemoryProbe]) -> Option<Table> {
    let (sizes, rows) = memory_rows(probes);
    let (&small, &large) = (sizes.first()?, sizes.last()?);
    let mut header = vec!["backend".to_owned()];
    header.extend(sizes.iter().map(|&n| format!("peak RSS {}", items_label(n))));
    if small != large {
        header.push(format!("peak {} / {}", items_label(large), items_label(small)));
    }
    header.push(format!("pulled before first ({})", items_label(large)));
    header.push(format!("time ({})", items_label(large)));
    let rows = rows
        .iter()
        .map(|row| {
            let mut cells = vec![row.backend.to_owned()];
            cells.extend(sizes.iter().map(|n| {
                row.by_items.get(n).map_or_else(|| "-".to_owned(), |p| human_kib(p.peak_rss_kib))
            }));
            if small != large {
                cells.push(ratio(row.growth));
            }
            let at_large = row.by_items.get(&large);
            cells.push(
                at_large
                    .and_then(|p| p.pulled_before_first)
                    .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            );
            cells.push(
                at_large
                    .and_then(|p| p.seconds)
                    .map_or_else(|| "-".to_owned(), |s| human_time(s * 1e9)),
            );
            cells
        })
        .collect();
    Some(Table { header, rows })
}

fn machine_line(machine: &Machine) -> String {
    format!(
        "{} cores, {}, {}{}",
        machine.nproc,
        machine.rustc,
        machine.date,
        if machine.quick { " (--quick)" } else { "" }
    )
}

/// The comparison as plain text, for the terminal.
pub fn text(report: &Report) -> String {
    let mut out = format!("shoal bench: {}\n", machine_line(&report.machine));
    out.push_str("median time per iteration; ratios are time / time of the reference\n");
    for group in groups(&report.measurements) {
        let _ = writeln!(out, "\n{}", group.name);
        group_table(&group).text(&mut out);
    }
    if let Some(table) = memory_table(&report.memory) {
        out.push_str(
            "\nW6 memory (peak RSS of the w6-memory probe; flat means ratio near 1.00x)\n",
        );
        table.text(&mut out);
    }
    if !report.notes.is_empty() {
        out.push_str("\nnotes:\n");
        for note in &report.notes {
            let _ = writeln!(out, "  - {note}");
        }
    }
    out
}

/// The comparison as Markdown (`report.md`).
pub fn markdown(report: &Report) -> String {
    let machine = &report.machine;
    let mut out = String::from("# shoal benchmark report\n\n");
    let _ = writeln!(out, "- machine: {} cores (available parallelism)", machine.nproc);
    let _ = writeln!(out, "- compiler: `{}`", machine.rustc);
    let _ = writeln!(out, "- date: {}", machine.date);
    let _ = writeln!(
        out,
        "- mode: {}",
        if machine.quick { "quick (`--quick`: short warm-up and measurement)" } else { "full" }
    );
    out.push_str(
        "\nTimes are criterion medians per iteration; ratios are time / time of the \
         reference in the same group (below 1.00x is faster). Chart: `report.svg`.\n",
    );
    for group in groups(&report.measurements) {
        let _ = writeln!(out, "\n## {}\n", group.name);
        group_table(&group).markdown(&mut out);
    }
    if let Some(table) = memory_table(&report.memory) {
        out.push_str(
            "\n## W6 memory\n\nPeak RSS of the `w6-memory` probe by number of items; \
             flat memory means a ratio near 1.00x.\n\n",
        );
        table.markdown(&mut out);
    }
    if !report.notes.is_empty() {
        out.push_str("\n## Notes\n\n");
        for note in &report.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Chart

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The comparison as an SVG bar chart (`report.svg`): one panel per group,
/// one horizontal bar per implementation showing its time relative to rayon,
/// or its median time when the group has no rayon row.
pub fn svg(report: &Report) -> String {
    const WIDTH: f64 = 760.0;
    const LABEL: f64 = 160.0;
    const BAR_MAX: f64 = 470.0;
    const ROW: f64 = 22.0;
    const BAR: f64 = 15.0;
    const PANEL_HEAD: f64 = 26.0;
    const GAP: f64 = 16.0;
    const TOP: f64 = 58.0;
    const PALETTE: &[&str] = &[
        "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
        "#9c755f", "#bab0ac",
    ];

    let groups = groups(&report.measurements);
    // One colour per implementation across all panels.
    let mut implementations: Vec<&str> = groups
        .iter()
        .flat_map(|g| g.rows.iter().map(|r| r.measurement.implementation.as_str()))
        .collect();
    implementations.sort_by_key(|name| order_key(name, IMPLEMENTATION_ORDER));
    implementations.dedup();
    let colour = |name: &str| {
        let index = implementations.iter().position(|n| *n == name).unwrap_or(0);
        PALETTE[index % PALETTE.len()]
    };

    let panels_height: f64 =
        groups.iter().map(|g| PANEL_HEAD + g.rows.len() as f64 * ROW + GAP).sum();
    let height = (TOP + panels_height.max(ROW) + 8.0).ceil();
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="10" y="22" font-size="16" font-weight="bold">shoal bench: time relative to rayon (shorter is faster)</text>"#
    );
    let _ = writeln!(
        out,
        r##"<text x="10" y="42" fill="#555">{}</text>"##,
        xml_escape(&machine_line(&report.machine))
    );
    if groups.is_empty() {
        let _ = writeln!(out, r#"<text x="10" y="{}">no benchmark results</text>"#, TOP + 14.0);
    }

    let mut y = TOP;
    for group in &groups {
        let relative = group.has_rayon();
        let values: Vec<f64> = group
            .rows
            .iter()
            .map(|row| if relative { row.vs_rayon } else { Some(row.measurement.median_ns) })
            .map(|v| v.unwrap_or(0.0))
            .collect();
        let max = values.iter().copied().fold(if relative { 1.0 } else { 0.0 }, f64::max);
        let scale = if max > 0.0 { BAR_MAX / max } else { 0.0 };
        let title = if relative {
            format!("{}: median time / rayon", group.name)
        } else {
            format!("{}: median time (no rayon row)", group.name)
        };
        let _ = writeln!(
            out,
            r#"<text x="10" y="{}" font-weight="bold">{}</text>"#,
            y + 16.0,
            xml_escape(&title)
        );
        let rows_top = y + PANEL_HEAD;
        for (index, (row, value)) in group.rows.iter().zip(&values).enumerate() {
            let name = &row.measurement.implementation;
            let row_y = rows_top + index as f64 * ROW;
            let width = (value * scale).max(1.0);
            let label = if relative { ratio(Some(*value)) } else { human_time(*value) };
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                LABEL - 8.0,
                row_y + BAR - 3.0,
                xml_escape(name)
            );
            let _ = writeln!(
                out,
                r#"<rect x="{LABEL}" y="{row_y}" width="{width:.1}" height="{BAR}" fill="{}"><title>{}</title></rect>"#,
                colour(name),
                xml_escape(&format!(
                    "{}/{name}: {}",
                    group.name,
                    human_time(row.measurement.median_ns)
                ))
            );
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{}">{}</text>"#,
                LABEL + width + 6.0,
                row_y + BAR - 3.0,
                xml_escape(&label)
            );
        }
        if relative && scale > 0.0 {
            let x = LABEL + scale;
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#333" stroke-dasharray="4 3"/>"##,
                rows_top - 4.0,
                rows_top + group.rows.len() as f64 * ROW
            );
        }
        y = rows_top + group.rows.len() as f64 * ROW + GAP;
    }
    out.push_str("</svg>\n");
    out
}

// ---------------------------------------------------------------------------
// results.json

/// All numbers as JSON (`results.json`), for tools that compare runs.
pub fn json(report: &Report) -> String {
    let machine = &report.machine;
    let benchmarks: Vec<Value> = groups(&report.measurements)
        .iter()
        .flat_map(|group| &group.rows)
        .map(|row| {
            let m = row.measurement;
            let throughput = m.throughput.map(|t| match t {
                Throughput::Elements(n) => json!({ "elements": n }),
                Throughput::Bytes(n) => json!({ "bytes": n }),
                Throughput::Bits(n) => json!({ "bits": n }),
            });
            json!({
                "group": m.group,
                "implementation": m.implementation,
                "median_ns": m.median_ns,
                "mean_ns": m.mean_ns,
                "throughput_per_iteration": throughput,
                "throughput_per_second": m.per_second(),
                "ratio_to_rayon": row.vs_rayon,
                "ratio_to_serial": row.vs_serial,
            })
        })
        .collect();
    let memory: Vec<Value> = report
        .memory
        .iter()
        .map(|p| {
            json!({
                "backend": p.backend,
                "items": p.items,
                "peak_rss_kib": p.peak_rss_kib,
                "pulled_before_first": p.pulled_before_first,
                "seconds": p.seconds,
            })
        })
        .collect();
    let (sizes, rows) = memory_rows(&report.memory);
    let growth: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "backend": row.backend,
                "from_items": sizes.first(),
                "to_items": sizes.last(),
                "peak_ratio": row.growth,
            })
        })
        .collect();
    let value = json!({
        "schema": 1,
        "machine": {
            "nproc": machine.nproc,
            "rustc": machine.rustc,
            "date": machine.date,
            "quick": machine.quick,
        },
        "benchmarks": benchmarks,
        "memory": memory,
        "memory_growth": growth,
        "notes": report.notes,
    });
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}
