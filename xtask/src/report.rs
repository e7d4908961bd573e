//! Benchmark results: reading criterion's output, the Python peers' JSON,
//! the W6 memory probe and the chaos run, and rendering one comparison as a
//! plain-text table, Markdown, an SVG bar chart and `results.json`.
//!
//! Each group's table has one ratio column per *reference* present in the
//! group ([`REFERENCES`]: `rayon`, `serial`, `multiprocessing`), so the
//! in-process groups compare with rayon and serial and the `P-*` groups
//! with Python's `multiprocessing.Pool` (and serial where it ran). The
//! Python groups (`py-*`, see [`python`]) compare with `multiprocessing`
//! and with the fastest of the Python peers in the group
//! ([`FASTEST_PEER`]).
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

pub mod interleaved;
pub mod python;
#[cfg(test)]
mod tests;

pub use python::FASTEST_PEER;

/// The implementations ratios are taken against, in column order, in every
/// group that has them: the fast in-process peer, the serial loop, and
/// Python's `multiprocessing.Pool` with default settings (fork).
pub const REFERENCES: &[&str] = &["rayon", "serial", "multiprocessing"];
/// The chart draws each group relative to the first of these it has.
const CHART_REFERENCES: &[&str] = &["rayon", "multiprocessing", "serial"];
/// Display order of the groups we know; other groups follow by name.
const GROUP_ORDER: &[&str] = &[
    "W1",
    "W2",
    "W3",
    "W4",
    "W5",
    "W6",
    "roundtrip",
    "P-W1",
    "P-W2",
    "P-W3",
    "P-W4",
    "P-W5",
    "P-W6",
    "py-W1",
    "py-W2",
    "py-W3",
    "py-W4",
    "py-W5",
    "py-W6",
];
/// Display order of the implementations we know; others follow by name.
const IMPLEMENTATION_ORDER: &[&str] = &[
    "serial",
    "python-serial",
    "rayon",
    "threads",
    "threads-plugin",
    "process",
    "multiprocessing",
    "concurrent-futures",
    "loky",
    "mpire",
    "shoal-py-process",
    "shoal-py-threads",
];

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
    /// The Python (and numpy) of the peers' rows, if they ran.
    pub python: Option<String>,
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
    /// How the row was run, when it needs saying (e.g. the chunksize the
    /// Python peer picked); criterion rows have none.
    pub detail: Option<String>,
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
    /// The largest peak RSS of one worker process, KiB (process pools).
    pub worker_peak_rss_kib: Option<u64>,
}

/// One chaos run (`chaos`): tasks while a worker is SIGKILLed every
/// `every` results.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosRun {
    /// Tasks submitted.
    pub tasks: u64,
    /// A worker was killed after every this many results.
    pub every: u64,
    /// Workers killed.
    pub kills: u64,
    /// Tasks lost with a killed worker (`WorkerLost`).
    pub lost: u64,
    /// Tasks that failed otherwise.
    pub other_errors: u64,
    /// Tasks that returned a wrong result.
    pub wrong: u64,
    /// Wall time of the run, seconds.
    pub seconds: f64,
}

/// What the Python peers (`benches/py/peers.py`) printed.
#[derive(Debug, Clone, PartialEq)]
pub struct Peers {
    /// `Python 3.11.7, numpy 2.4.6`.
    pub python: String,
    /// Their rows, to join the criterion groups of the same name.
    pub measurements: Vec<Measurement>,
    /// Their W6 memory runs.
    pub memory: Vec<MemoryProbe>,
    /// Their comparisons timed in alternating rounds.
    pub interleaved: Vec<interleaved::Interleaved>,
    /// What they could not run.
    pub notes: Vec<String>,
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
    /// The chaos run, if it ran.
    pub chaos: Option<ChaosRun>,
    /// Comparisons timed in alternating rounds (`ab`), if they ran.
    pub interleaved: Vec<interleaved::Interleaved>,
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
    Ok(Measurement { group, implementation, median_ns, mean_ns, throughput, detail: None })
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
    let number = |key: &str| count(&line, key);
    Ok(MemoryProbe {
        backend: line.get("backend").and_then(Value::as_str).unwrap_or(backend).to_owned(),
        items: number("items").unwrap_or(items),
        peak_rss_kib: number("peak_rss_kib").ok_or("`peak_rss_kib` is not a number")?,
        pulled_before_first: number("pulled_before_first"),
        seconds: line.get("seconds").and_then(Value::as_f64),
        worker_peak_rss_kib: number("worker_peak_rss_kib"),
    })
}

/// A non-negative integer field of a JSON object (a float is rounded).
fn count(value: &Value, key: &str) -> Option<u64> {
    let value = value.get(key)?;
    value.as_u64().or_else(|| value.as_f64().filter(|v| *v >= 0.0).map(|v| v.round() as u64))
}

/// Parses the output of `chaos`: the last stdout line that is a JSON object
/// with `kills`.
pub fn parse_chaos(stdout: &str) -> Result<ChaosRun, String> {
    let line = stdout
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
        .find(|value| value.get("kills").is_some())
        .ok_or("no JSON line with `kills` in its output")?;
    let field = |key: &str| count(&line, key).ok_or(format!("`{key}` is missing or not a number"));
    Ok(ChaosRun {
        tasks: field("tasks")?,
        every: field("every")?,
        kills: field("kills")?,
        lost: field("lost")?,
        other_errors: field("other_errors")?,
        wrong: field("wrong")?,
        seconds: line
            .get("seconds")
            .and_then(Value::as_f64)
            .ok_or("`seconds` is missing or not a number")?,
    })
}

/// Parses the JSON document of `benches/py/peers.py`:
/// `{"python", "numpy", "versions": {"numpy", "loky", ..}, "measurements":
/// [{"group", "implementation", "median_ns", "mean_ns", "throughput":
/// {"Elements": n} | {"Bytes": n} | null, "detail"}], "memory": [<w6-memory
/// line>], "interleaved": [<ab --json line>], "notes": [..]}`. Rows
/// without a group, an implementation or a
/// positive median are skipped with a note. The `multiprocessing` and
/// `python-serial` rows of a `py-*` group also join the process suite's
/// `P-*` group of the same workload ([`python::process_copies`]).
pub fn parse_peers(stdout: &str) -> Result<Peers, String> {
    let doc: Value = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("its output is not one JSON document: {e}"))?;
    let rows = doc.get("measurements").and_then(Value::as_array).ok_or("no `measurements`")?;
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut notes: Vec<String> = doc
        .get("notes")
        .and_then(Value::as_array)
        .map(|n| n.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let mut measurements = Vec::new();
    for row in rows {
        let median = row.get("median_ns").and_then(Value::as_f64).filter(|m| *m > 0.0);
        match (text(row, "group"), text(row, "implementation"), median) {
            (Some(group), Some(implementation), Some(median_ns)) => {
                measurements.push(Measurement {
                    group,
                    implementation,
                    median_ns,
                    mean_ns: row.get("mean_ns").and_then(Value::as_f64),
                    throughput: row.get("throughput").and_then(parse_throughput),
                    detail: text(row, "detail"),
                })
            }
            _ => notes.push(format!("a row was skipped: {row}")),
        }
    }
    let mut memory = Vec::new();
    for probe in doc.get("memory").and_then(Value::as_array).into_iter().flatten() {
        let backend = text(probe, "backend").unwrap_or_else(|| "python".to_owned());
        match parse_memory_probe(&probe.to_string(), &backend, count(probe, "items").unwrap_or(0)) {
            Ok(p) => memory.push(p),
            Err(why) => notes.push(format!("a memory run was skipped ({why}): {probe}")),
        }
    }
    let mut interleaved = Vec::new();
    for row in doc.get("interleaved").and_then(Value::as_array).into_iter().flatten() {
        match interleaved::from_value(row) {
            Some(i) => interleaved.push(i),
            None => notes.push(format!("an interleaved comparison was skipped: {row}")),
        }
    }
    measurements.extend(python::process_copies(&measurements));
    let mut python = format!("Python {}", text(&doc, "python").unwrap_or_else(|| "?".to_owned()));
    let versions = doc.get("versions").and_then(Value::as_object);
    let numpy = text(&doc, "numpy").or_else(|| {
        versions.and_then(|v| v.get("numpy")).and_then(Value::as_str).map(str::to_owned)
    });
    if let Some(numpy) = numpy {
        python.push_str(&format!(", numpy {numpy}"));
    }
    for (package, version) in versions.into_iter().flatten() {
        if let (false, Some(version)) = (package == "numpy", version.as_str()) {
            python.push_str(&format!(", {package} {version}"));
        }
    }
    Ok(Peers { python, measurements, memory, interleaved, notes })
}

// ---------------------------------------------------------------------------
// Arranging

/// A measurement with its ratios to the references of its group.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    /// The measurement.
    pub measurement: &'a Measurement,
    /// `time / time(reference)` for each of the group's references, in
    /// their order (see [`relative`]).
    pub ratios: Vec<(&'static str, Option<f64>)>,
}

impl Row<'_> {
    /// The ratio to `reference`, if the group has it.
    pub fn ratio(&self, reference: &str) -> Option<f64> {
        self.ratios.iter().find(|(name, _)| *name == reference).and_then(|(_, r)| *r)
    }
}

/// A group with its rows, in display order.
#[derive(Debug, Clone, PartialEq)]
pub struct Group<'a> {
    /// Group name, e.g. `W1`.
    pub name: &'a str,
    /// The [`REFERENCES`] this group has a row of, in column order, then
    /// [`FASTEST_PEER`] in a Python group that has a peer row.
    pub references: Vec<&'static str>,
    /// One row per implementation.
    pub rows: Vec<Row<'a>>,
    /// In a Python group, the implementation of its fastest peer row
    /// (the [`FASTEST_PEER`] reference).
    pub fastest_peer: Option<&'a str>,
}

impl Group<'_> {
    /// The reference the chart draws this group against, if any.
    fn chart_reference(&self) -> Option<&'static str> {
        CHART_REFERENCES.iter().copied().find(|r| self.references.contains(r))
    }

    /// Whether some row says how it was run.
    fn has_details(&self) -> bool {
        self.rows.iter().any(|row| row.measurement.detail.is_some())
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

/// Work per iteration of a measurement, as (kind, amount).
fn work(m: &Measurement) -> Option<(u8, u64)> {
    match m.throughput? {
        Throughput::Elements(n) => Some((0, n)),
        Throughput::Bytes(n) => Some((1, n)),
        Throughput::Bits(n) => Some((2, n)),
    }
}

/// `m`'s time relative to `reference`'s: `time / time(reference)`, or, when
/// both did the same kind of work in different amounts (a peer that ran
/// fewer items), time per unit of work over the reference's.
pub fn relative(m: &Measurement, reference: &Measurement) -> Option<f64> {
    if m.median_ns <= 0.0 || reference.median_ns <= 0.0 {
        return None;
    }
    match (work(m), work(reference)) {
        (Some((kind, n)), Some((ref_kind, ref_n))) if kind == ref_kind && n != ref_n => (n > 0
            && ref_n > 0)
            .then(|| (m.median_ns / n as f64) / (reference.median_ns / ref_n as f64)),
        _ => Some(m.median_ns / reference.median_ns),
    }
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
            let mut present: Vec<(&'static str, &Measurement)> = REFERENCES
                .iter()
                .filter_map(|&r| members.iter().find(|m| m.implementation == r).map(|m| (r, *m)))
                .collect();
            let fastest =
                python::is_python_group(name).then(|| python::fastest_peer(&members)).flatten();
            if let Some(fastest) = fastest {
                present.push((FASTEST_PEER, fastest));
            }
            let rows = members
                .iter()
                .map(|m| Row {
                    measurement: m,
                    ratios: present
                        .iter()
                        .map(|&(r, reference)| (r, relative(m, reference)))
                        .collect(),
                })
                .collect();
            Group {
                name,
                references: present.iter().map(|(r, _)| *r).collect(),
                rows,
                fastest_peer: fastest.map(|m| m.implementation.as_str()),
            }
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
    /// The smallest and largest N this backend was probed with, when they
    /// differ (a slow peer may leave out the largest size of the run).
    pub span: Option<(u64, u64)>,
    /// `peak(largest N) / peak(smallest N)` over the sizes this backend was
    /// probed with; close to 1 when memory stays flat.
    pub growth: Option<f64>,
    /// `(peak(largest N) - peak(smallest N)) / (largest N - smallest N)` in
    /// bytes: what each extra item cost. Keeping the items (or their
    /// results) would cost at least 8 bytes each; allocator noise is well
    /// under 1.
    pub bytes_per_item: Option<f64>,
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
            let ends = match (by_items.first_key_value(), by_items.last_key_value()) {
                (Some((small, a)), Some((large, b))) if small != large && a.peak_rss_kib > 0 => {
                    Some((*a, *b))
                }
                _ => None,
            };
            let span = ends.map(|(a, b)| (a.items, b.items));
            let growth = ends.map(|(a, b)| b.peak_rss_kib as f64 / a.peak_rss_kib as f64);
            let bytes_per_item = ends.map(|(a, b)| {
                (b.peak_rss_kib as f64 - a.peak_rss_kib as f64) * 1024.0
                    / (b.items as f64 - a.items as f64)
            });
            MemoryRow { backend, by_items, span, growth, bytes_per_item }
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

/// A ratio as `1.23x` (two significant digits below 0.1, `0.0042x`; no
/// decimals from 1000 on, `40414x`), or `-` when unknown.
pub fn ratio(value: Option<f64>) -> String {
    match value {
        None => "-".to_owned(),
        Some(v) if !v.is_finite() => format!("{v}x"),
        Some(v) if v >= 1000.0 => format!("{v:.0}x"),
        Some(v) if v >= 0.1 || v <= 0.0 => format!("{v:.2}x"),
        Some(v) => {
            let decimals = (1.0 - v.log10().floor()).clamp(2.0, 9.0) as usize;
            format!("{v:.decimals$}x")
        }
    }
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
/// (left-aligned), the others are numbers (right-aligned), except the last
/// `text_columns`, which are text (left-aligned).
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    text_columns: usize,
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

    fn left_aligned(&self, index: usize) -> bool {
        index == 0 || index + self.text_columns >= self.header.len()
    }

    fn text(&self, out: &mut String) {
        let widths = self.widths();
        for cells in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::from(" ");
            for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
                let pad = " ".repeat(width - cell.chars().count());
                if index == 0 {
                    let _ = write!(line, " {cell}{pad}");
                } else if self.left_aligned(index) {
                    let _ = write!(line, "   {cell}{pad}");
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
            .map(|i| if self.left_aligned(i) { "---".to_owned() } else { "---:".to_owned() })
            .collect();
        out.push_str(&row(&rule));
        for cells in &self.rows {
            out.push_str(&row(cells));
        }
    }
}

fn group_table(group: &Group<'_>) -> Table {
    let details = group.has_details();
    let mut header: Vec<String> =
        ["implementation", "median", "throughput"].map(str::to_owned).to_vec();
    header.extend(group.references.iter().map(|r| format!("vs {r}")));
    if details {
        header.push("how".to_owned());
    }
    let rows = group
        .rows
        .iter()
        .map(|row| {
            let m = row.measurement;
            let mut cells = vec![
                m.implementation.clone(),
                human_time(m.median_ns),
                human_throughput(m).unwrap_or_else(|| "-".to_owned()),
            ];
            cells.extend(row.ratios.iter().map(|(_, r)| ratio(*r)));
            if details {
                cells.push(m.detail.clone().unwrap_or_default());
            }
            cells
        })
        .collect();
    Table { header, rows, text_columns: usize::from(details) }
}

fn memory_table(probes: &[MemoryProbe]) -> Option<Table> {
    let (sizes, rows) = memory_rows(probes);
    let (&small, &large) = (sizes.first()?, sizes.last()?);
    let workers = probes.iter().any(|p| p.worker_peak_rss_kib.is_some());
    let mut header = vec!["backend".to_owned()];
    header.extend(sizes.iter().map(|&n| format!("peak RSS {}", items_label(n))));
    if small != large {
        header.push(format!("peak {} / {}", items_label(large), items_label(small)));
        header.push("bytes/item".to_owned());
    }
    if workers {
        header.push(format!("worker peak ({})", items_label(large)));
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
                let mut growth = ratio(row.growth);
                if let Some((a, b)) = row.span.filter(|span| *span != (small, large)) {
                    let _ = write!(growth, " ({} to {})", items_label(a), items_label(b));
                }
                cells.push(growth);
                cells
                    .push(row.bytes_per_item.map_or_else(|| "-".to_owned(), |b| format!("{b:.2}")));
            }
            // At the largest size this backend was probed with, named when
            // it is not the run's largest.
            let at_large = row.by_items.values().next_back();
            let at = |cell: Option<String>| match (cell, at_large) {
                (Some(cell), Some(p)) if p.items != large => {
                    format!("{cell} ({})", items_label(p.items))
                }
                (Some(cell), _) => cell,
                (None, _) => "-".to_owned(),
            };
            if workers {
                cells.push(at(at_large.and_then(|p| p.worker_peak_rss_kib).map(human_kib)));
            }
            cells.push(at(at_large.and_then(|p| p.pulled_before_first).map(|n| n.to_string())));
            cells.push(at(at_large.and_then(|p| p.seconds).map(|s| human_time(s * 1e9))));
            cells
        })
        .collect();
    Some(Table { header, rows, text_columns: 0 })
}

fn chaos_table(run: &ChaosRun) -> Table {
    let header =
        ["tasks", "kill every", "kills", "lost", "other errors", "wrong", "time", "tasks/s"]
            .map(str::to_owned)
            .to_vec();
    let per_second = if run.seconds > 0.0 {
        format!("{:.0}", run.tasks as f64 / run.seconds)
    } else {
        "-".into()
    };
    let row = vec![
        run.tasks.to_string(),
        run.every.to_string(),
        run.kills.to_string(),
        run.lost.to_string(),
        run.other_errors.to_string(),
        run.wrong.to_string(),
        human_time(run.seconds * 1e9),
        per_second,
    ];
    Table { header, rows: vec![row], text_columns: 0 }
}

/// Peak memory counts as flat when each extra item costs less than this
/// many bytes from the smallest to the largest W6 size: holding the items
/// or their results would cost at least 8 (a `u64`); what stays below 1 is
/// allocator noise, not a buffer that grows with the input.
pub const FLAT_BYTES_PER_ITEM: f64 = 1.0;

/// One target of the benchmarks issue, checked against this run.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// What is compared, e.g. `P-W1 process vs multiprocessing`.
    pub name: String,
    /// What this run measured.
    pub measured: String,
    /// The goal, e.g. `>= 20x the throughput`.
    pub goal: String,
    /// Whether it was met; `None` when a row is missing.
    pub met: Option<bool>,
}

fn find_measurement<'a>(
    report: &'a Report,
    group: &str,
    implementation: &str,
) -> Option<&'a Measurement> {
    report.measurements.iter().find(|m| m.group == group && m.implementation == implementation)
}

/// Whether the W6 memory of `backend` stays flat ([`FLAT_BYTES_PER_ITEM`])
/// from the smallest to the largest generator it was probed with.
pub fn flat_memory_target(report: &Report, backend: &str) -> Target {
    let (_, rows) = memory_rows(&report.memory);
    let row = rows.iter().find(|r| r.backend == backend);
    let growth = row.and_then(|r| Some((r.growth?, r.bytes_per_item?, r.span?)));
    Target {
        name: format!("W6 memory of {backend}"),
        measured: growth.map_or_else(
            || "-".to_owned(),
            |(g, b, (small, large))| {
                format!(
                    "peak x{g:.2} from {} to {}, {b:.2} bytes per extra item",
                    items_label(small),
                    items_label(large)
                )
            },
        ),
        goal: format!("flat: < {FLAT_BYTES_PER_ITEM:.0} byte per extra item"),
        met: growth.map(|(_, b, _)| b < FLAT_BYTES_PER_ITEM),
    }
}

/// The issue's targets for the process backend, each measured in this run:
/// P-W1 throughput >= 20x multiprocessing's, P-W4 time <= multiprocessing
/// (fork), P-W5 MB/s >= 5x multiprocessing's, W6 memory of `process` flat
/// ([`FLAT_BYTES_PER_ITEM`]), and a chaos run with no wrong result and at most one
/// lost task per kill.
pub fn process_targets(report: &Report) -> Vec<Target> {
    let mut targets = Vec::new();
    let vs_peer = |group: &str| {
        let process = find_measurement(report, group, "process")?;
        relative(process, find_measurement(report, group, "multiprocessing")?)
    };
    for (group, what, at_least) in [("P-W1", "items/s", 20.0), ("P-W5", "MB/s", 5.0)] {
        let speedup = vs_peer(group).map(|r| 1.0 / r);
        targets.push(Target {
            name: format!("{group} process vs multiprocessing"),
            measured: speedup.map_or_else(|| "-".to_owned(), |s| format!("{s:.2}x the {what}")),
            goal: format!(">= {at_least}x the {what}"),
            met: speedup.map(|s| s >= at_least),
        });
    }
    let w4 = vs_peer("P-W4");
    targets.push(Target {
        name: "P-W4 process vs multiprocessing (fork)".to_owned(),
        measured: w4.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x the time")),
        goal: "<= 1.00x the time".to_owned(),
        met: w4.map(|r| r <= 1.0),
    });
    targets.push(flat_memory_target(report, "process"));
    targets.push(match &report.chaos {
        Some(run) => Target {
            name: "chaos run".to_owned(),
            measured: format!(
                "{} tasks in {}, {} kills, {} lost, {} wrong, {} other errors",
                run.tasks,
                human_time(run.seconds * 1e9),
                run.kills,
                run.lost,
                run.wrong,
                run.other_errors
            ),
            goal: "no wrong result or other error, lost <= kills".to_owned(),
            met: Some(run.wrong == 0 && run.other_errors == 0 && run.lost <= run.kills),
        },
        None => Target {
            name: "chaos run".to_owned(),
            measured: "-".to_owned(),
            goal: "no wrong result or other error, lost <= kills".to_owned(),
            met: None,
        },
    });
    targets
}

/// The foundation issue's targets, each measured in this run: W1 at most
/// 1.5x rayon's time and W3 within 5% of it (the threads backend), a
/// submit-to-result round trip under 10 µs, W6 memory of `threads` flat,
/// and the plugin within 3% of the static backend on W1 and W3.
///
/// Where `ab` compared the two sides in alternating rounds
/// ([`interleaved`]), that ratio is the one checked; otherwise the ratio of
/// the two criterion medians.
pub fn core_targets(report: &Report) -> Vec<Target> {
    let ratio = |group: &str, subject: &str, reference: &str| {
        if let Some(i) = interleaved::find(report, group, subject, reference) {
            return Some((i.ratio, format!(" (median of {} interleaved rounds)", i.rounds)));
        }
        let m = |name| find_measurement(report, group, name);
        Some((relative(m(subject)?, m(reference)?)?, String::new()))
    };
    let time_target = |name: String, r: Option<(f64, String)>, of: &str, at_most: f64| Target {
        name,
        measured: r
            .as_ref()
            .map_or_else(|| "-".to_owned(), |(r, how)| format!("{r:.3}x the time of {of}{how}")),
        goal: format!("<= {at_most:.2}x the time of {of}"),
        met: r.map(|(r, _)| r <= at_most),
    };
    let mut targets = Vec::new();
    for (group, at_most) in [("W1", 1.5), ("W3", 1.05)] {
        let r = ratio(group, "threads", "rayon");
        targets.push(time_target(format!("{group} threads vs rayon"), r, "rayon", at_most));
    }
    let roundtrip = find_measurement(report, "roundtrip", "threads").map(|m| m.median_ns);
    targets.push(Target {
        name: "roundtrip of one empty task, threads".to_owned(),
        measured: roundtrip.map_or_else(|| "-".to_owned(), human_time),
        goal: "< 10 µs median".to_owned(),
        met: roundtrip.map(|ns| ns < 10_000.0),
    });
    targets.push(flat_memory_target(report, "threads"));
    for group in ["W1", "W3"] {
        let r = ratio(group, "threads-plugin", "threads");
        let name = format!("{group} threads-plugin vs threads");
        targets.push(time_target(name, r, "threads (static)", 1.03));
    }
    targets
}

/// The targets this report has rows for, as (title, targets): the
/// core's when W1 ran, the process backend's when a `P-*` group ran, the
/// Python binding's when a `py-*` group ran.
fn target_sections(report: &Report) -> Vec<(&'static str, Vec<Target>)> {
    let has = |prefix: &str| report.measurements.iter().any(|m| m.group.starts_with(prefix));
    let mut sections = Vec::new();
    if report.measurements.iter().any(|m| m.group == "W1") {
        sections.push(("core and threads backend", core_targets(report)));
    }
    if has("P-") {
        sections.push(("process backend", process_targets(report)));
    }
    if has(python::GROUP_PREFIX) {
        sections.push(("Python binding", python::targets(report)));
    }
    sections
}

/// A group's title: its name, and its fastest peer in a Python group.
fn group_title(group: &Group<'_>) -> String {
    match group.fastest_peer {
        Some(peer) => format!("{} (fastest peer: {peer})", group.name),
        None => group.name.to_owned(),
    }
}

fn targets_table(targets: Vec<Target>) -> Table {
    let header = ["target", "measured", "goal", "met"].map(str::to_owned).to_vec();
    let rows = targets
        .into_iter()
        .map(|t| {
            let met = match t.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            };
            vec![t.name, t.measured, t.goal, met.to_owned()]
        })
        .collect();
    Table { header, rows, text_columns: 4 }
}

fn machine_line(machine: &Machine) -> String {
    format!(
        "{} cores, {}{}, {}{}",
        machine.nproc,
        machine.rustc,
        machine.python.as_deref().map(|p| format!(", {p}")).unwrap_or_default(),
        machine.date,
        if machine.quick { " (--quick)" } else { "" }
    )
}

const RATIO_NOTE: &str = "ratios are time / time of the reference in the same group (below 1.00x is \
     faster); when the reference did a different number of items, time per item";

/// The comparison as plain text, for the terminal.
pub fn text(report: &Report) -> String {
    let mut out = format!("shoal bench: {}\n", machine_line(&report.machine));
    let _ = writeln!(out, "median time per iteration; {RATIO_NOTE}");
    for group in groups(&report.measurements) {
        let _ = writeln!(out, "\n{}", group_title(&group));
        group_table(&group).text(&mut out);
    }
    if let Some(table) = memory_table(&report.memory) {
        out.push_str(
            "\nW6 memory (peak RSS of the parent process; flat: well under 1 byte per extra item)\n",
        );
        table.text(&mut out);
    }
    if let Some(run) = &report.chaos {
        out.push_str("\nchaos (process backend, a random worker SIGKILLed every few results)\n");
        chaos_table(run).text(&mut out);
    }
    if !report.interleaved.is_empty() {
        out.push_str("\ninterleaved (alternating rounds; ratio = subject time / reference time)\n");
        interleaved::table(&report.interleaved).text(&mut out);
    }
    for (title, targets) in target_sections(report) {
        let _ = writeln!(out, "\ntargets ({title})");
        targets_table(targets).text(&mut out);
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
    if let Some(python) = &machine.python {
        let _ = writeln!(
            out,
            "- peers: {python} (`multiprocessing.Pool` with fork unless named; \
             `concurrent.futures`, loky and mpire in the `py-*` groups)"
        );
    }
    let _ = writeln!(out, "- date: {}", machine.date);
    let _ = writeln!(
        out,
        "- mode: {}",
        if machine.quick { "quick (`--quick`: short warm-up and measurement)" } else { "full" }
    );
    let _ = writeln!(
        out,
        "\nTimes are medians per iteration (criterion's; the Python peers' over a few \
         repetitions); {RATIO_NOTE}. Chart: `report.svg`."
    );
    let mut python_intro = false;
    for group in groups(&report.measurements) {
        if !python_intro && group.name.starts_with(python::GROUP_PREFIX) {
            python_intro = true;
            let _ = writeln!(out, "\n{}", python::MARKDOWN_INTRO);
        }
        let _ = writeln!(out, "\n## {}\n", group_title(&group));
        group_table(&group).markdown(&mut out);
    }
    if let Some(table) = memory_table(&report.memory) {
        out.push_str(
            "\n## W6 memory\n\nPeak RSS of the parent process (`VmHWM`) by number of items; \
             flat memory costs well under 1 byte per extra item (keeping the items would cost \
             at least 8). The worker peak is the largest peak RSS of one worker process.\n\n",
        );
        table.markdown(&mut out);
    }
    if let Some(run) = &report.chaos {
        out.push_str(
            "\n## Chaos\n\nThe process backend while a random worker is SIGKILLed after \
             every few results; a lost task is one that was on a killed worker.\n\n",
        );
        chaos_table(run).markdown(&mut out);
    }
    if !report.interleaved.is_empty() {
        out.push_str(
            "\n## Interleaved\n\nThe reference and the subject timed in alternating rounds \
             (a few runs of one, then of the other; `ab`); the ratio is the median over the \
             rounds of subject time / reference time, which the rest of the machine disturbs \
             far less than two medians measured apart.\n\n",
        );
        interleaved::table(&report.interleaved).markdown(&mut out);
    }
    for (title, targets) in target_sections(report) {
        let _ = writeln!(out, "\n## Targets: {title}\n");
        targets_table(targets).markdown(&mut out);
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
/// one bar per implementation. A group with a reference (the first of
/// `rayon`, `multiprocessing`, `serial` it has) shows each time relative to
/// it on a log scale, bars growing left (faster) or right (slower) from the
/// reference's dashed line; a group without one shows median times.
pub fn svg(report: &Report) -> String {
    const WIDTH: f64 = 800.0;
    const LABEL: f64 = 200.0;
    const BAR_MAX: f64 = 500.0;
    /// Room left beside the longest bar of a log panel for its label.
    const LABEL_ROOM: f64 = 70.0;
    /// A log panel spans at least 2x either way.
    const MIN_DECADES: f64 = 0.301;
    const ROW: f64 = 22.0;
    const BAR: f64 = 15.0;
    const PANEL_HEAD: f64 = 26.0;
    const GAP: f64 = 16.0;
    const TOP: f64 = 58.0;
    const PALETTE: &[&str] = &[
        "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
        "#9c755f", "#bab0ac", "#a0cbe8", "#8cd17d", "#b6992d", "#499894", "#d37295", "#86bcb6",
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
        r#"<text x="10" y="22" font-size="16" font-weight="bold">shoal bench: median time / reference (log scale, left is faster)</text>"#
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
        let reference = group.chart_reference();
        let rows_top = y + PANEL_HEAD;
        let title = match reference {
            Some(r) => format!("{}: median time / {r}", group.name),
            None => format!("{}: median time (no reference row)", group.name),
        };
        let _ = writeln!(
            out,
            r#"<text x="10" y="{}" font-weight="bold">{}</text>"#,
            y + 16.0,
            xml_escape(&title)
        );
        // Per row: bar start, bar width, label x, label anchor, label.
        let bars: Vec<(f64, f64, f64, &str, String)> = match reference {
            Some(r) => {
                let ratios: Vec<Option<f64>> =
                    group.rows.iter().map(|row| row.ratio(r).filter(|v| *v > 0.0)).collect();
                let decades =
                    ratios.iter().flatten().map(|v| v.log10().abs()).fold(MIN_DECADES, f64::max);
                let half = BAR_MAX / 2.0 - LABEL_ROOM;
                let mid = LABEL + BAR_MAX / 2.0;
                ratios
                    .iter()
                    .map(|v| match v {
                        Some(v) => {
                            let x = mid + v.log10() / decades * half;
                            let (start, width) = (x.min(mid), (x - mid).abs().max(1.0));
                            if *v < 1.0 {
                                (start, width, start - 4.0, "end", ratio(Some(*v)))
                            } else {
                                (start, width, start + width + 4.0, "start", ratio(Some(*v)))
                            }
                        }
                        None => (mid, 1.0, mid + 5.0, "start", "-".to_owned()),
                    })
                    .collect()
            }
            None => {
                let max = group.rows.iter().map(|r| r.measurement.median_ns).fold(0.0, f64::max);
                let scale = if max > 0.0 { BAR_MAX / max } else { 0.0 };
                group
                    .rows
                    .iter()
                    .map(|row| {
                        let width = (row.measurement.median_ns * scale).max(1.0);
                        let label = human_time(row.measurement.median_ns);
                        (LABEL, width, LABEL + width + 6.0, "start", label)
                    })
                    .collect()
            }
        };
        for (index, (row, (start, width, label_x, anchor, label))) in
            group.rows.iter().zip(&bars).enumerate()
        {
            let name = &row.measurement.implementation;
            let row_y = rows_top + index as f64 * ROW;
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                LABEL - 8.0,
                row_y + BAR - 3.0,
                xml_escape(name)
            );
            let _ = writeln!(
                out,
                r#"<rect x="{start:.1}" y="{row_y}" width="{width:.1}" height="{BAR}" fill="{}"><title>{}</title></rect>"#,
                colour(name),
                xml_escape(&format!(
                    "{}/{name}: {}",
                    group.name,
                    human_time(row.measurement.median_ns)
                ))
            );
            let _ = writeln!(
                out,
                r#"<text x="{label_x:.1}" y="{}" text-anchor="{anchor}">{}</text>"#,
                row_y + BAR - 3.0,
                xml_escape(label)
            );
        }
        if reference.is_some() {
            let x = LABEL + BAR_MAX / 2.0;
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
        .flat_map(|group| group.rows.iter().map(move |row| (group, row)))
        .map(|(group, row)| {
            let m = row.measurement;
            let throughput = m.throughput.map(|t| match t {
                Throughput::Elements(n) => json!({ "elements": n }),
                Throughput::Bytes(n) => json!({ "bytes": n }),
                Throughput::Bits(n) => json!({ "bits": n }),
            });
            let ratios: serde_json::Map<String, Value> =
                row.ratios.iter().map(|(r, v)| ((*r).to_owned(), json!(v))).collect();
            json!({
                "group": m.group,
                "implementation": m.implementation,
                "median_ns": m.median_ns,
                "mean_ns": m.mean_ns,
                "throughput_per_iteration": throughput,
                "throughput_per_second": m.per_second(),
                "ratios": ratios,
                "ratio_to_rayon": row.ratio("rayon"),
                "ratio_to_serial": row.ratio("serial"),
                "ratio_to_multiprocessing": row.ratio("multiprocessing"),
                "ratio_to_fastest_peer": row.ratio(FASTEST_PEER),
                "fastest_peer": group.fastest_peer,
                "detail": m.detail,
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
                "worker_peak_rss_kib": p.worker_peak_rss_kib,
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
                "bytes_per_item": row.bytes_per_item,
            })
        })
        .collect();
    let chaos = report.chaos.as_ref().map(|run| {
        json!({
            "tasks": run.tasks,
            "every": run.every,
            "kills": run.kills,
            "lost": run.lost,
            "other_errors": run.other_errors,
            "wrong": run.wrong,
            "seconds": run.seconds,
        })
    });
    let targets: Vec<Value> = target_sections(report)
        .into_iter()
        .flat_map(|(_, targets)| targets)
        .map(|t| json!({ "name": t.name, "measured": t.measured, "goal": t.goal, "met": t.met }))
        .collect();
    let value = json!({
        "schema": 2,
        "machine": {
            "nproc": machine.nproc,
            "rustc": machine.rustc,
            "python": machine.python,
            "date": machine.date,
            "quick": machine.quick,
        },
        "benchmarks": benchmarks,
        "memory": memory,
        "memory_growth": growth,
        "chaos": chaos,
        "interleaved": interleaved::json(&report.interleaved),
        "targets": targets,
        "notes": report.notes,
    });
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}
