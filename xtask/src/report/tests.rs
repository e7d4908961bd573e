//! Tests of the report on a small fake criterion tree.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("xtask-report-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn estimate(ns: f64) -> String {
    format!(
        r#"{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":{lo},"upper_bound":{hi}}},"point_estimate":{ns},"standard_error":1.5}}"#,
        lo = ns * 0.9,
        hi = ns * 1.1
    )
}

/// Writes what criterion 0.8 writes for one benchmark; `throughput` is the
/// serde form of criterion's `Throughput`, or `null`.
fn write_bench(root: &Path, dir: &str, id: Option<(&str, &str)>, median: f64, throughput: &str) {
    let new = root.join(dir).join("new");
    std::fs::create_dir_all(&new).unwrap();
    let estimates = format!(
        r#"{{"mean":{},"median":{},"median_abs_dev":{},"slope":null,"std_dev":{}}}"#,
        estimate(median * 1.05),
        estimate(median),
        estimate(median * 0.01),
        estimate(median * 0.02)
    );
    std::fs::write(new.join("estimates.json"), estimates).unwrap();
    std::fs::write(
        new.join("sample.json"),
        r#"{"sampling_mode":"Linear","iters":[1.0],"times":[1.0]}"#,
    )
    .unwrap();
    if let Some((group, function)) = id {
        let benchmark = format!(
            r#"{{"group_id":"{group}","function_id":"{function}","value_str":null,"throughput":{throughput},"full_id":"{group}/{function}","directory_name":"{dir}","title":"{group}/{function}"}}"#
        );
        std::fs::write(new.join("benchmark.json"), benchmark).unwrap();
    }
}

/// A tree like the one `cargo bench -p shoal-benches --bench workloads` leaves.
fn fake_tree(root: &Path) {
    let elements = r#"{"Elements":1000000}"#;
    write_bench(root, "W1/serial", Some(("W1", "serial")), 4.0e6, elements);
    write_bench(root, "W1/rayon", Some(("W1", "rayon")), 2.0e6, elements);
    write_bench(root, "W1/threads", Some(("W1", "threads")), 2.6e6, elements);
    // No benchmark.json: names come from the directories.
    write_bench(root, "W1/process", None, 8.0e6, "null");
    // Criterion sanitizes names: the directory differs from the id.
    write_bench(
        root,
        "roundtrip/threads_plugin",
        Some(("roundtrip", "threads:plugin")),
        900.0,
        "null",
    );
    write_bench(root, "roundtrip/threads", Some(("roundtrip", "threads")), 800.0, "null");
    // No rayon in this group; bytes throughput.
    write_bench(root, "W5/serial", Some(("W5", "serial")), 1.0e8, r#"{"Bytes":200000000}"#);
    write_bench(root, "W5/threads", Some(("W5", "threads")), 5.0e7, r#"{"Bytes":200000000}"#);
    // Broken: skipped with a note.
    let broken = root.join("W4/rayon/new");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("estimates.json"), "{not json").unwrap();
    // Not benchmarks: a baseline copy and criterion's report folder.
    for not_new in ["W1/serial/base", "W1/serial/change"] {
        std::fs::create_dir_all(root.join(not_new)).unwrap();
        std::fs::write(root.join(not_new).join("estimates.json"), "{}").unwrap();
    }
    std::fs::create_dir_all(root.join("report")).unwrap();
    std::fs::write(root.join("report/index.html"), "<html/>").unwrap();
}

fn machine() -> Machine {
    Machine {
        nproc: 2,
        rustc: "rustc 1.95.0 (test)".to_owned(),
        date: "2026-01-02 03:04:05 UTC".to_owned(),
        quick: true,
        python: None,
    }
}

fn probe(backend: &str, items: u64, kib: u64) -> MemoryProbe {
    MemoryProbe {
        backend: backend.to_owned(),
        items,
        peak_rss_kib: kib,
        pulled_before_first: Some(64),
        seconds: Some(0.25),
        worker_peak_rss_kib: None,
    }
}

fn fake_report(root: &Path) -> Report {
    fake_tree(root);
    let loaded = load_criterion(root, None);
    Report {
        machine: machine(),
        measurements: loaded.measurements,
        memory: vec![
            probe("threads", 100_000, 2048),
            probe("threads", 1_000_000, 2100),
            probe("threads", 10_000_000, 2150),
            probe("serial", 100_000, 1000),
            probe("serial", 10_000_000, 900_000),
        ],
        chaos: None,
        interleaved: Vec::new(),
        notes: loaded.skipped,
    }
}

fn find<'a>(groups: &'a [Group<'a>], group: &str, implementation: &str) -> &'a Row<'a> {
    groups
        .iter()
        .find(|g| g.name == group)
        .and_then(|g| g.rows.iter().find(|r| r.measurement.implementation == implementation))
        .unwrap_or_else(|| panic!("no row {group}/{implementation}"))
}

#[test]
fn loads_the_fake_tree() {
    let dir = TempDir::new("load");
    fake_tree(&dir.0);
    let loaded = load_criterion(&dir.0, None);
    assert_eq!(loaded.measurements.len(), 8, "{:#?}", loaded.measurements);
    assert_eq!(loaded.skipped.len(), 1, "{:?}", loaded.skipped);
    assert!(loaded.skipped[0].contains("W4/rayon"), "{:?}", loaded.skipped);

    let w1_rayon =
        loaded.measurements.iter().find(|m| m.group == "W1" && m.implementation == "rayon");
    let w1_rayon = w1_rayon.unwrap();
    assert_eq!(w1_rayon.median_ns, 2.0e6);
    assert_eq!(w1_rayon.mean_ns, Some(2.1e6));
    assert_eq!(w1_rayon.throughput, Some(Throughput::Elements(1_000_000)));
    assert!(loaded.measurements.iter().any(|m| m.implementation == "threads:plugin"));
    let process = loaded.measurements.iter().find(|m| m.implementation == "process").unwrap();
    assert_eq!((process.group.as_str(), process.throughput), ("W1", None));
}

#[test]
fn results_older_than_the_run_are_skipped() {
    let dir = TempDir::new("stale");
    fake_tree(&dir.0);
    let later = SystemTime::now() + Duration::from_secs(3600);
    let loaded = load_criterion(&dir.0, Some(later));
    assert!(loaded.measurements.is_empty());
    assert!(loaded.skipped.iter().all(|s| s.ends_with("left over from an earlier run")));
    assert!(load_criterion(&dir.0.join("missing"), None).measurements.is_empty());
}

#[test]
fn groups_are_ordered_and_ratios_taken_against_rayon_and_serial() {
    let dir = TempDir::new("groups");
    let report = fake_report(&dir.0);
    let groups = groups(&report.measurements);
    let names: Vec<&str> = groups.iter().map(|g| g.name).collect();
    assert_eq!(names, ["W1", "W5", "roundtrip"]);
    let w1: Vec<&str> =
        groups[0].rows.iter().map(|r| r.measurement.implementation.as_str()).collect();
    assert_eq!(w1, ["serial", "rayon", "threads", "process"]);

    let threads = find(&groups, "W1", "threads");
    assert_eq!(threads.ratio("rayon"), Some(1.3));
    assert_eq!(threads.ratio("serial"), Some(0.65));
    assert_eq!(groups[0].references, ["rayon", "serial"]);
    assert_eq!(find(&groups, "W5", "threads").ratio("rayon"), None);
    assert_eq!(find(&groups, "W5", "threads").ratio("serial"), Some(0.5));
    assert_eq!(groups[1].references, ["serial"]);
    assert_eq!(find(&groups, "roundtrip", "threads").ratio("serial"), None);
    assert!(groups[2].references.is_empty());
}

#[test]
fn text_table_is_aligned() {
    let dir = TempDir::new("text");
    let text = text(&fake_report(&dir.0));
    assert!(text.starts_with("shoal bench: 2 cores, rustc 1.95.0 (test), 2026-01-02"), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let header = lines.iter().position(|l| l.trim_start().starts_with("implementation")).unwrap();
    let block = &lines[header..header + 5];
    let width = block[0].chars().count();
    assert!(block.iter().all(|l| l.chars().count() == width), "{block:#?}");
    assert!(block[2].contains("rayon") && block[2].contains("2.00 ms"), "{block:#?}");
    assert!(block[2].contains("500 Melem/s") && block[2].contains("1.00x"), "{block:#?}");
    assert!(block[3].contains("1.30x") && block[3].contains("0.65x"), "{block:#?}");
    assert!(text.contains("4000 MB/s"), "{text}");
    assert!(text.contains("peak 10^7 / 10^5"), "{text}");
    assert!(text.contains("W4/rayon"), "the skipped result is noted: {text}");
}

#[test]
fn variants_sort_next_to_their_base() {
    let m = |group: &str, implementation: &str| Measurement {
        group: group.into(),
        implementation: implementation.into(),
        median_ns: 1.0,
        mean_ns: None,
        throughput: None,
        detail: None,
    };
    let measurements = [
        m("zeta", "serial"),
        m("W2-chunk4", "serial"),
        m("W1-chunked", "rayon-spawn"),
        m("W1-chunked", "threads-plugin"),
        m("W1-chunked", "aaa"),
        m("W1-chunked", "rayon"),
        m("W1-chunked", "threads"),
        m("W2", "serial"),
        m("W1", "serial"),
    ];
    let groups = groups(&measurements);
    let names: Vec<&str> = groups.iter().map(|g| g.name).collect();
    assert_eq!(names, ["W1", "W1-chunked", "W2", "W2-chunk4", "zeta"]);
    let rows: Vec<&str> =
        groups[1].rows.iter().map(|r| r.measurement.implementation.as_str()).collect();
    assert_eq!(rows, ["rayon", "rayon-spawn", "threads", "threads-plugin", "aaa"]);
}

#[test]
fn memory_rows_report_growth() {
    let memory = [
        probe("threads", 100_000, 2000),
        probe("threads", 10_000_000, 3000),
        probe("serial", 1_000_000, 5),
    ];
    let (sizes, rows) = memory_rows(&memory);
    assert_eq!(sizes, [100_000, 1_000_000, 10_000_000]);
    assert_eq!(rows[0].backend, "serial");
    assert_eq!(rows[0].growth, None);
    assert_eq!(rows[1].growth, Some(1.5));
    assert_eq!(rows[1].bytes_per_item, Some(1000.0 * 1024.0 / 9_900_000.0));
}

#[test]
fn markdown_has_one_table_per_group_and_memory() {
    let dir = TempDir::new("markdown");
    let md = markdown(&fake_report(&dir.0));
    assert!(md.starts_with("# shoal benchmark report\n"));
    assert!(md.contains("- machine: 2 cores"));
    assert!(md.contains("`rustc 1.95.0 (test)`"));
    for heading in ["## W1\n", "## W5\n", "## roundtrip\n", "## W6 memory\n"] {
        assert!(md.contains(heading), "{heading} missing:\n{md}");
    }
    assert!(md.contains("| implementation | median | throughput | vs rayon | vs serial |"));
    assert!(md.contains("| --- | ---: | ---: | ---: | ---: |"));
    assert!(md.contains("| threads | 2.60 ms | 385 Melem/s | 1.30x | 0.65x |"), "{md}");
    assert!(
        md.contains("| serial | 1000 KiB | - | 879 MiB | 900.00x | 92.99 | 64 | 250 ms |"),
        "{md}"
    );
    assert!(
        md.contains("| threads | 2.00 MiB | 2.05 MiB | 2.10 MiB | 1.05x | 0.01 | 64 | 250 ms |"),
        "{md}"
    );
}

#[test]
fn svg_has_a_panel_per_group_and_a_bar_per_row() {
    let dir = TempDir::new("svg");
    let svg = svg(&fake_report(&dir.0));
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    // Background plus one bar per measurement.
    assert_eq!(svg.matches("<rect").count(), 1 + 8);
    assert!(svg.contains("W1: median time / rayon"));
    assert!(svg.contains("W5: median time / serial"));
    assert!(svg.contains("roundtrip: median time (no reference row)"));
    assert!(svg.contains(">1.30x<"));
    assert!(svg.contains("threads:plugin"));
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
    // Every opened tag is closed or self-closing (a cheap well-formedness check).
    let opened = svg.matches("<text").count() + svg.matches("<rect").count();
    let closed =
        svg.matches("</text>").count() + svg.matches("</rect>").count() + svg.matches("/>").count();
    assert_eq!(opened + svg.matches("<line").count(), closed);

    let empty = Report {
        machine: machine(),
        measurements: vec![],
        memory: vec![],
        chaos: None,
        interleaved: Vec::new(),
        notes: vec![],
    };
    assert!(super::svg(&empty).contains("no benchmark results"));
}

#[test]
fn json_holds_every_number() {
    let dir = TempDir::new("json");
    let report = fake_report(&dir.0);
    let value: Value = serde_json::from_str(&json(&report)).unwrap();
    assert_eq!(value["machine"]["nproc"], 2);
    let benchmarks = value["benchmarks"].as_array().unwrap();
    assert_eq!(benchmarks.len(), 8);
    let threads =
        benchmarks.iter().find(|b| b["group"] == "W1" && b["implementation"] == "threads").unwrap();
    assert_eq!(threads["median_ns"], 2.6e6);
    assert_eq!(threads["ratio_to_rayon"], 1.3);
    assert_eq!(threads["throughput_per_iteration"]["elements"], 1_000_000);
    let per_second = threads["throughput_per_second"].as_f64().unwrap();
    assert!((per_second - 1e6 / 2.6e-3).abs() < 1.0, "{per_second}");
    assert_eq!(value["memory"].as_array().unwrap().len(), 5);
    assert_eq!(value["memory_growth"][1]["backend"], "threads");
    assert_eq!(value["memory_growth"][1]["to_items"], 10_000_000);
}

#[test]
fn parses_the_memory_probe_line() {
    let out = "warming up\n{\"backend\": \"threads\", \"items\": 1000000, \"peak_rss_kib\": 5120, \"pulled_before_first\": 16, \"seconds\": 0.5}\n";
    let probe = parse_memory_probe(out, "x", 1).unwrap();
    assert_eq!(
        probe,
        MemoryProbe {
            backend: "threads".to_owned(),
            items: 1_000_000,
            peak_rss_kib: 5120,
            pulled_before_first: Some(16),
            seconds: Some(0.5),
            worker_peak_rss_kib: None,
        }
    );
    let sparse = parse_memory_probe(r#"{"peak_rss_kib": 10.0}"#, "serial", 100).unwrap();
    assert_eq!((sparse.backend.as_str(), sparse.items, sparse.peak_rss_kib), ("serial", 100, 10));
    assert!(parse_memory_probe("nothing here\n{\"items\": 3}", "serial", 1).is_err());
    assert!(parse_memory_probe(r#"{"peak_rss_kib": "big"}"#, "serial", 1).is_err());
}

#[test]
fn formats_numbers() {
    assert_eq!(human_time(950.0), "950 ns");
    assert_eq!(human_time(1_234.0), "1.23 µs");
    assert_eq!(human_time(12_345_678.0), "12.3 ms");
    assert_eq!(human_time(2.5e9), "2.50 s");
    assert_eq!(ratio(Some(1.234)), "1.23x");
    assert_eq!(ratio(Some(0.1)), "0.10x");
    assert_eq!(ratio(Some(0.0357)), "0.036x");
    assert_eq!(ratio(Some(0.00221)), "0.0022x");
    assert_eq!(ratio(Some(40413.62)), "40414x");
    assert_eq!(ratio(Some(0.0)), "0.00x");
    assert_eq!(ratio(None), "-");
    assert_eq!(items_label(100_000), "10^5");
    assert_eq!(items_label(10), "10^1");
    assert_eq!(items_label(1), "1");
    assert_eq!(items_label(300), "300");
    assert_eq!(human_kib(1023), "1023 KiB");
    assert_eq!(human_kib(1536), "1.50 MiB");
    assert_eq!(human_kib(3 * 1024 * 1024), "3.00 GiB");
    let bits = Measurement {
        group: "g".into(),
        implementation: "i".into(),
        median_ns: 1e9,
        mean_ns: None,
        throughput: Some(Throughput::Bits(8_000_000)),
        detail: None,
    };
    assert_eq!(human_throughput(&bits).as_deref(), Some("8.00 Mbit/s"));
}

#[test]
fn formats_dates() {
    let at = |secs| utc_date(UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(at(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(at(951_782_400), "2000-02-29 00:00:00 UTC");
    assert_eq!(at(1_767_323_045), "2026-01-02 03:04:05 UTC");
}

#[test]
fn parses_criterion_throughput_forms() {
    let parse = |text: &str| parse_throughput(&serde_json::from_str(text).unwrap());
    assert_eq!(parse(r#"{"Elements": 5}"#), Some(Throughput::Elements(5)));
    assert_eq!(parse(r#"{"BytesDecimal": 7}"#), Some(Throughput::Bytes(7)));
    assert_eq!(
        parse(r#"{"ElementsAndBytes": {"elements": 3, "bytes": 9}}"#),
        Some(Throughput::Elements(3))
    );
    assert_eq!(parse(r#"{"Furlongs": 1}"#), None);
    assert_eq!(parse("null"), None);
}

/// What `benches/py/peers.py` prints, trimmed.
const PEERS: &str = r#"{
 "schema": 2, "python": "3.11.7", "numpy": "2.4.6", "start_method": "fork",
 "versions": {"numpy": "2.4.6", "loky": "3.7.0", "mpire": "2.10.2", "shoal": null},
 "measurements": [
  {"group": "py-W1", "implementation": "multiprocessing", "median_ns": 28000000, "mean_ns": 29000000.0, "samples": 3, "throughput": {"Elements": 100000}, "detail": "chunksize 12500 (default)"},
  {"group": "py-W1", "implementation": "multiprocessing-best", "median_ns": 20000000, "mean_ns": 20000000.0, "samples": 3, "throughput": {"Elements": 100000}, "detail": "chunksize 5000"},
  {"group": "py-W1", "implementation": "concurrent-futures", "median_ns": 250000000, "mean_ns": 2.5e8, "samples": 3, "throughput": {"Elements": 5000}, "detail": "chunksize 1 (default), 5000 items"},
  {"group": "py-W1", "implementation": "loky-best", "median_ns": 25000000, "mean_ns": 2.5e7, "samples": 3, "throughput": {"Elements": 100000}, "detail": "chunksize 5000"},
  {"group": "py-W4", "implementation": "multiprocessing", "median_ns": 10000000, "mean_ns": 10000000.0, "samples": 3, "throughput": null, "detail": "fork"},
  {"group": "py-W4", "implementation": "multiprocessing-spawn", "median_ns": 200000000, "mean_ns": 2e8, "samples": 3, "throughput": null, "detail": "spawn"},
  {"group": "py-W5", "implementation": "multiprocessing", "median_ns": 500000000, "mean_ns": 5e8, "samples": 3, "throughput": {"Bytes": 209715200}, "detail": null},
  {"group": "py-W6", "implementation": "multiprocessing", "median_ns": 700000000, "mean_ns": 7e8, "samples": 1, "throughput": {"Elements": 20000}, "detail": "20000 items"},
  {"group": "py-W6", "implementation": "broken", "median_ns": 0}
 ],
 "memory": [
  {"backend": "multiprocessing-best", "items": 100000, "peak_rss_kib": 33000, "worker_peak_rss_kib": 22000, "pulled_before_first": 40000, "seconds": 0.05, "chunksize": 10000},
  {"backend": "multiprocessing-best", "items": 10000000, "peak_rss_kib": 36000, "worker_peak_rss_kib": 22000, "pulled_before_first": 50000, "seconds": 2.6, "chunksize": 10000}
 ],
 "interleaved": [
  {"interleaved": "py-W6", "subject": "shoal-py-process", "reference": "multiprocessing-unordered-best", "ratio": 0.45, "q1": 0.41, "q3": 0.49, "rounds": 7, "detail": "chunksize 10000"},
  {"interleaved": "py-W6", "subject": "shoal-py-threads", "ratio": 0.8},
  {"interleaved": "py-W1", "subject": "shoal-py-threads", "reference": "multiprocessing-best", "ratio": 0.5, "q1": 0.45, "q3": 0.55, "rounds": 7}
 ],
 "notes": ["P-W3 (numpy) skipped: numpy is not installed"]
}
"#;

fn measurement(
    group: &str,
    implementation: &str,
    ms: f64,
    throughput: Option<Throughput>,
) -> Measurement {
    Measurement {
        group: group.into(),
        implementation: implementation.into(),
        median_ns: ms * 1e6,
        mean_ns: None,
        throughput,
        detail: None,
    }
}

/// A report with the process suite's rows, the peers' and a chaos run.
fn process_report() -> Report {
    let peers = parse_peers(PEERS).unwrap();
    let mut measurements = vec![
        measurement("P-W1", "serial", 0.05, Some(Throughput::Elements(100_000))),
        measurement("P-W1", "process", 1.0, Some(Throughput::Elements(100_000))),
        measurement("P-W1", "process-chunked", 0.7, Some(Throughput::Elements(100_000))),
        measurement("P-W4", "process", 5.0, None),
        measurement("P-W5", "process", 100.0, Some(Throughput::Bytes(209_715_200))),
        measurement("P-W6", "process", 100.0, Some(Throughput::Elements(1_000_000))),
    ];
    measurements.extend(peers.measurements);
    let mut memory = vec![
        MemoryProbe { worker_peak_rss_kib: Some(3000), ..probe("process", 100_000, 4000) },
        MemoryProbe { worker_peak_rss_kib: Some(3100), ..probe("process", 10_000_000, 5000) },
    ];
    memory.extend(peers.memory);
    Report {
        machine: Machine { python: Some(peers.python), ..machine() },
        measurements,
        memory,
        chaos: Some(ChaosRun {
            tasks: 100_000,
            every: 100,
            kills: 1000,
            lost: 990,
            other_errors: 0,
            wrong: 0,
            seconds: 8.0,
        }),
        interleaved: Vec::new(),
        notes: peers.notes,
    }
}

#[test]
fn parses_the_peers_document() {
    let peers = parse_peers(PEERS).unwrap();
    assert_eq!(peers.python, "Python 3.11.7, numpy 2.4.6, loky 3.7.0, mpire 2.10.2");
    assert_eq!(peers.measurements.len(), 8 + 6, "the broken row is skipped, mp rows copied");
    let first = &peers.measurements[0];
    assert_eq!((first.group.as_str(), first.implementation.as_str()), ("py-W1", "multiprocessing"));
    assert_eq!(first.median_ns, 28e6);
    assert_eq!(first.mean_ns, Some(29e6));
    assert_eq!(first.throughput, Some(Throughput::Elements(100_000)));
    assert_eq!(first.detail.as_deref(), Some("chunksize 12500 (default)"));
    assert_eq!(peers.measurements[6].throughput, Some(Throughput::Bytes(209_715_200)));
    // The multiprocessing rows also join the process suite's groups, the
    // other peers do not.
    let copies: Vec<(&str, &str)> = peers.measurements[8..]
        .iter()
        .map(|m| (m.group.as_str(), m.implementation.as_str()))
        .collect();
    assert_eq!(
        copies,
        [
            ("P-W1", "multiprocessing"),
            ("P-W1", "multiprocessing-best"),
            ("P-W4", "multiprocessing"),
            ("P-W4", "multiprocessing-spawn"),
            ("P-W5", "multiprocessing"),
            ("P-W6", "multiprocessing"),
        ]
    );
    assert_eq!(peers.measurements[8].median_ns, 28e6);
    assert_eq!(peers.measurements[8].detail.as_deref(), Some("chunksize 12500 (default)"));
    // An older document without `versions`.
    let old = parse_peers(r#"{"python": "3.11.7", "numpy": "2.4.6", "measurements": []}"#);
    assert_eq!(old.unwrap().python, "Python 3.11.7, numpy 2.4.6");
    assert_eq!(peers.memory.len(), 2);
    assert_eq!(peers.memory[0].worker_peak_rss_kib, Some(22_000));
    assert_eq!(peers.memory[1].pulled_before_first, Some(50_000));
    // The whole interleaved comparison is read; the one without its
    // reference and quartiles is skipped with a note.
    assert_eq!(peers.interleaved.len(), 2);
    let i = &peers.interleaved[0];
    assert_eq!((i.group.as_str(), i.subject.as_str()), ("py-W6", "shoal-py-process"));
    assert_eq!((i.ratio, i.q1, i.q3, i.rounds), (0.45, 0.41, 0.49, 7));
    assert_eq!(peers.notes.len(), 3, "{:?}", peers.notes);
    assert!(peers.notes[1].contains("broken"), "{:?}", peers.notes);
    assert!(peers.notes[2].contains("interleaved comparison was skipped"), "{:?}", peers.notes);
    assert!(parse_peers("peers: oops").is_err());
    assert!(parse_peers("{}").is_err());
}

#[test]
fn parses_the_chaos_line() {
    let out = "{\"tasks\": 100000, \"every\": 100, \"kills\": 1000, \"lost\": 998, \"other_errors\": 0, \"wrong\": 0, \"worker_pids\": 999, \"seconds\": 7.5, \"first_other_error\": null}\n";
    let run = parse_chaos(out).unwrap();
    assert_eq!(
        run,
        ChaosRun {
            tasks: 100_000,
            every: 100,
            kills: 1000,
            lost: 998,
            other_errors: 0,
            wrong: 0,
            seconds: 7.5
        }
    );
    assert!(parse_chaos("{\"kills\": 1}").unwrap_err().contains("tasks"));
    assert!(parse_chaos("nothing").is_err());
}

#[test]
fn process_groups_compare_with_multiprocessing() {
    let report = process_report();
    let groups = groups(&report.measurements);
    let names: Vec<&str> = groups.iter().map(|g| g.name).collect();
    assert_eq!(names, ["P-W1", "P-W4", "P-W5", "P-W6", "py-W1", "py-W4", "py-W5", "py-W6"]);
    let w1 = &groups[0];
    assert_eq!(w1.references, ["serial", "multiprocessing"]);
    let order: Vec<&str> = w1.rows.iter().map(|r| r.measurement.implementation.as_str()).collect();
    assert_eq!(
        order,
        ["serial", "process", "process-chunked", "multiprocessing", "multiprocessing-best"]
    );
    let process = find(&groups, "P-W1", "process");
    assert!((process.ratio("multiprocessing").unwrap() - 1.0 / 28.0).abs() < 1e-12);
    assert_eq!(process.ratio("serial"), Some(20.0));
    assert_eq!(process.ratio("rayon"), None);
    // W4 variants sort after their base.
    let w4: Vec<&str> =
        groups[1].rows.iter().map(|r| r.measurement.implementation.as_str()).collect();
    assert_eq!(w4, ["process", "multiprocessing", "multiprocessing-spawn"]);
    // A peer that ran fewer items is compared per item.
    let w6 = find(&groups, "P-W6", "process").ratio("multiprocessing").unwrap();
    assert!((w6 - (100e6 / 1e6) / (700e6 / 2e4)).abs() < 1e-12, "{w6}");
}

#[test]
fn targets_are_checked_against_the_run() {
    let report = process_report();
    let targets = process_targets(&report);
    let by_name = |prefix: &str| targets.iter().find(|t| t.name.starts_with(prefix)).unwrap();
    let w1 = by_name("P-W1");
    assert_eq!((w1.measured.as_str(), w1.met), ("28.00x the items/s", Some(true)));
    let w4 = by_name("P-W4");
    assert_eq!((w4.measured.as_str(), w4.met), ("0.50x the time", Some(true)));
    let w5 = by_name("P-W5");
    assert_eq!((w5.measured.as_str(), w5.met), ("5.00x the MB/s", Some(true)));
    let memory = by_name("W6 memory");
    assert_eq!(memory.met, Some(true), "{memory:?}");
    assert!(
        memory.measured.contains("x1.25 from 10^5 to 10^7, 0.10 bytes per extra item"),
        "{memory:?}"
    );
    assert_eq!(by_name("chaos").met, Some(true));

    let mut slow = report.clone();
    slow.measurements.retain(|m| !(m.group == "P-W5" && m.implementation == "process"));
    slow.chaos = None;
    let targets = process_targets(&slow);
    let w5 = targets.iter().find(|t| t.name.starts_with("P-W5")).unwrap();
    assert_eq!((w5.measured.as_str(), w5.met), ("-", None));
}

#[test]
fn core_targets_compare_with_rayon_and_the_static_backend() {
    let w1 = Some(Throughput::Elements(1_000_000));
    let mut report = process_report();
    report.measurements.extend([
        measurement("W1", "rayon", 0.4, w1),
        measurement("W1", "threads", 0.56, w1),
        measurement("W1", "threads-plugin", 0.58, w1),
        measurement("W3", "rayon", 250.0, None),
        measurement("W3", "threads", 260.0, None),
        measurement("W3", "threads-plugin", 270.0, None),
        measurement("roundtrip", "threads", 0.004, None),
    ]);
    report.memory.extend([probe("threads", 100_000, 4000), probe("threads", 10_000_000, 4500)]);
    let targets = core_targets(&report);
    let by_name = |name: &str| targets.iter().find(|t| t.name == name).unwrap();
    let t = by_name("W1 threads vs rayon");
    assert_eq!((t.measured.as_str(), t.met), ("1.400x the time of rayon", Some(true)));
    assert_eq!(by_name("W3 threads vs rayon").met, Some(true));
    assert_eq!(by_name("roundtrip of one empty task, threads").met, Some(true));
    assert_eq!(by_name("W6 memory of threads").met, Some(true));
    assert_eq!(by_name("W1 threads-plugin vs threads").met, Some(false), "3.6% slower");
    assert_eq!(by_name("W3 threads-plugin vs threads").met, Some(false), "3.8% slower");
    assert!(markdown(&report).contains("## Targets: core and threads backend"));
    // An interleaved comparison, when it ran, is the one checked.
    report.interleaved = interleaved::parse(
        "W3: rayon 250 us, threads 255 us, ratio median 1.020\n\
         {\"interleaved\":\"W3\",\"subject\":\"threads-plugin\",\"reference\":\"threads\",\
         \"ratio\":1.01,\"q1\":0.99,\"q3\":1.02,\"rounds\":7}\n",
    );
    assert_eq!(report.interleaved.len(), 1);
    let t = core_targets(&report);
    let plugin = t.iter().find(|t| t.name == "W3 threads-plugin vs threads").unwrap();
    assert_eq!(plugin.met, Some(true), "{plugin:?}");
    assert!(plugin.measured.contains("median of 7 interleaved rounds"), "{plugin:?}");
    assert!(markdown(&report).contains("## Interleaved"));
    assert!(json(&report).contains("\"interleaved\""));
    // Without the rows, no verdict.
    report.measurements.retain(|m| m.group != "W3");
    assert_eq!(
        core_targets(&report).iter().find(|t| t.name == "W3 threads vs rayon").unwrap().met,
        None
    );
}

#[test]
fn text_and_markdown_show_peers_chaos_and_targets() {
    let report = process_report();
    let text = text(&report);
    assert!(text.contains("Python 3.11.7, numpy 2.4.6"), "{text}");
    let header = text.lines().find(|l| l.contains("vs multiprocessing")).unwrap();
    assert!(header.contains("vs serial") && header.trim_end().ends_with("how"), "{header}");
    assert!(text.contains("chunksize 12500 (default)"), "{text}");
    assert!(text.contains("worker peak (10^7)"), "{text}");
    assert!(text.contains("multiprocessing-best"), "{text}");
    assert!(text.contains("chaos (process backend"), "{text}");
    assert!(text.contains("100000          100    1000    990"), "{text}");
    assert!(text.contains("targets (process backend)"), "{text}");
    assert!(text.contains("numpy is not installed"), "{text}");

    let md = markdown(&report);
    assert!(
        md.contains(
            "| implementation | median | throughput | vs serial | vs multiprocessing | how |"
        ),
        "{md}"
    );
    assert!(md.contains("| --- | ---: | ---: | ---: | ---: | --- |"), "{md}");
    assert!(md.contains("## Chaos\n"), "{md}");
    assert!(
        md.contains(
            "| P-W1 process vs multiprocessing | 28.00x the items/s | >= 20x the items/s | yes |"
        ),
        "{md}"
    );
    assert!(md.contains("- peers: Python 3.11.7"), "{md}");
}

#[test]
fn svg_draws_log_ratios_around_the_reference() {
    let svg = svg(&process_report());
    assert!(svg.contains("P-W1: median time / multiprocessing"), "{svg}");
    assert!(svg.contains(">0.036x<"), "{svg}");
    // A faster row's bar ends at the reference line (x = 450) and its label
    // sits left of the bar.
    let line = svg.lines().find(|l| l.contains("P-W1/process: ")).unwrap();
    let x: f64 = line.split("x=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
    let width: f64 =
        line.split("width=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
    assert!((x + width - 450.0).abs() < 0.2, "{line}");
    assert!(svg.contains("text-anchor=\"end\">0.036x<"), "{svg}");
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
}

#[test]
fn json_has_ratios_chaos_and_targets() {
    let value: Value = serde_json::from_str(&json(&process_report())).unwrap();
    assert_eq!(value["schema"], 2);
    assert_eq!(value["machine"]["python"], "Python 3.11.7, numpy 2.4.6, loky 3.7.0, mpire 2.10.2");
    let rows = value["benchmarks"].as_array().unwrap();
    let spawn = rows
        .iter()
        .find(|b| b["group"] == "P-W4" && b["implementation"] == "multiprocessing-spawn")
        .unwrap();
    assert_eq!(spawn["ratios"]["multiprocessing"], 20.0);
    assert_eq!(spawn["ratio_to_multiprocessing"], 20.0);
    assert_eq!(spawn["ratio_to_fastest_peer"], Value::Null);
    assert_eq!(spawn["detail"], "spawn");
    let loky = rows.iter().find(|b| b["implementation"] == "loky-best").unwrap();
    assert_eq!(loky["ratio_to_fastest_peer"], 1.25);
    assert_eq!(loky["fastest_peer"], "multiprocessing-best");
    assert_eq!(value["chaos"]["kills"], 1000);
    // 5 of the process backend, 9 for each of the two shoal rows.
    let targets = value["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 5 + 2 * 9);
    assert!(targets[5..].iter().all(|t| t["met"].is_null() && t["measured"] == "-"));
    assert_eq!(value["memory"][0]["worker_peak_rss_kib"], 3000);
}

/// The contract with `benches/py/peers.py`, on its cheapest group (skipped
/// without `python3`).
#[test]
fn the_peers_script_prints_what_parse_peers_reads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let script = root.join("benches/py/peers.py");
    let out = match std::process::Command::new("python3")
        .arg(&script)
        .args(["--quick", "--only", "W4"])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: no python3 ({e})");
            return;
        }
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let peers = parse_peers(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert!(peers.python.starts_with("Python 3."), "{}", peers.python);
    let w4: Vec<&str> = peers
        .measurements
        .iter()
        .filter(|m| m.group == "P-W4")
        .map(|m| m.implementation.as_str())
        .collect();
    assert!(w4.contains(&"multiprocessing"), "{w4:?}");
    assert!(peers.measurements.iter().all(|m| m.median_ns > 0.0 && m.detail.is_some()));
    // The standard library's peer runs with any python3; the others run or
    // are noted.
    let py_w4: Vec<&str> = peers
        .measurements
        .iter()
        .filter(|m| m.group == "py-W4")
        .map(|m| m.implementation.as_str())
        .collect();
    assert!(py_w4.contains(&"concurrent-futures"), "{py_w4:?}");
    for name in ["loky", "mpire", "shoal-py-process"] {
        assert!(
            py_w4.contains(&name) || peers.notes.iter().any(|n| n.starts_with(name)),
            "{name}: {py_w4:?} {:?}",
            peers.notes
        );
    }
}

#[test]
fn peers_and_copies_are_told_apart() {
    for peer in
        ["multiprocessing", "multiprocessing-best", "loky-best", "concurrent-futures", "mpire"]
    {
        assert!(python::is_peer(peer), "{peer}");
    }
    for other in ["shoal-py-process", "python-serial", "lokyx", "process", "serial"] {
        assert!(!python::is_peer(other), "{other}");
    }
    let rows = [
        measurement("py-W3", "python-serial", 2000.0, Some(Throughput::Elements(1000))),
        measurement("py-W3", "multiprocessing-malloc", 900.0, Some(Throughput::Elements(1000))),
        measurement("py-W3", "mpire", 1800.0, Some(Throughput::Elements(1000))),
        measurement("py-W3", "shoal-py-process", 500.0, Some(Throughput::Elements(1000))),
        measurement("W3", "multiprocessing", 1.0, None),
    ];
    let copies = python::process_copies(&rows);
    let names: Vec<(&str, &str)> =
        copies.iter().map(|m| (m.group.as_str(), m.implementation.as_str())).collect();
    assert_eq!(names, [("P-W3", "python-serial"), ("P-W3", "multiprocessing-malloc")]);
}

#[test]
fn python_groups_compare_with_the_fastest_peer() {
    let report = process_report();
    let groups = groups(&report.measurements);
    let w1 = groups.iter().find(|g| g.name == "py-W1").unwrap();
    assert_eq!(w1.references, ["multiprocessing", FASTEST_PEER]);
    assert_eq!(w1.fastest_peer, Some("multiprocessing-best"));
    let order: Vec<&str> = w1.rows.iter().map(|r| r.measurement.implementation.as_str()).collect();
    assert_eq!(
        order,
        ["multiprocessing", "multiprocessing-best", "concurrent-futures", "loky-best"]
    );
    assert_eq!(find(&groups, "py-W1", "loky-best").ratio(FASTEST_PEER), Some(1.25));
    // 5000 items in 250 ms against 100000 in 20 ms: 250x per item.
    let futures = find(&groups, "py-W1", "concurrent-futures").ratio(FASTEST_PEER).unwrap();
    assert!((futures - 250.0).abs() < 1e-9, "{futures}");
    // A process group has no such column; a group without peers neither.
    let p_w1 = groups.iter().find(|g| g.name == "P-W1").unwrap();
    assert_eq!((p_w1.fastest_peer, p_w1.references.contains(&FASTEST_PEER)), (None, false));
    let lonely = [measurement("py-W2", "shoal-py-threads", 650.0, None)];
    let lonely = super::groups(&lonely);
    assert!(lonely[0].references.is_empty() && lonely[0].fastest_peer.is_none());

    let md = markdown(&report);
    assert!(md.contains("## py-W1 (fastest peer: multiprocessing-best)\n"), "{md}");
    assert!(
        md.contains(
            "| implementation | median | throughput | vs multiprocessing | vs fastest peer | how |"
        ),
        "{md}"
    );
    assert!(md.contains("| loky-best | 25.0 ms | 4.00 Melem/s | 0.89x | 1.25x | chunksize 5000 |"));
    assert_eq!(md.matches("The `py-*` groups run the workloads from Python").count(), 1, "{md}");
    assert!(md.contains("## Targets: process backend\n"), "{md}");
    assert!(md.contains("## Targets: Python binding\n"), "{md}");
    assert!(
        md.contains("| py-W1 shoal-py-process vs the fastest peer | - | >= 1.5x the items/s"),
        "{md}"
    );
    let text = text(&report);
    assert!(text.contains("py-W6 (fastest peer: multiprocessing)"), "{text}");
    assert!(text.contains("targets (Python binding)"), "{text}");
}

/// The process report plus shoal's rows, the peers the targets need and
/// the peers' interleaved comparison.
fn shoal_report() -> Report {
    let mut report = process_report();
    report.interleaved = parse_peers(PEERS).unwrap().interleaved;
    let elements = |n| Some(Throughput::Elements(n));
    report.measurements.extend([
        measurement("py-W1", "shoal-py-process", 12.0, elements(100_000)),
        measurement("py-W1", "shoal-py-threads", 40.0, elements(100_000)),
        measurement("py-W2", "shoal-py-process", 650.0, None),
        measurement("py-W2", "shoal-py-threads", 700.0, None),
        measurement("py-W3", "python-serial", 1900.0, elements(1000)),
        measurement("py-W3", "multiprocessing", 1800.0, elements(1000)),
        measurement("py-W3", "shoal-py-process", 900.0, elements(1000)),
        measurement("py-W3", "shoal-py-threads", 1200.0, elements(1000)),
        measurement("py-W4", "shoal-py-process", 8.0, None),
        measurement("py-W5", "shoal-py-process", 100.0, Some(Throughput::Bytes(209_715_200))),
        measurement("py-W6", "multiprocessing-unordered", 600.0, elements(20_000)),
        measurement("py-W6", "multiprocessing-unordered-best", 150.0, elements(1_000_000)),
        measurement("py-W6", "shoal-py-process", 70.0, elements(1_000_000)),
        measurement("py-W6", "shoal-py-threads", 80.0, elements(1_000_000)),
    ]);
    report.memory.extend([
        probe("shoal-py-process", 100_000, 20_000),
        probe("shoal-py-process", 1_000_000, 20_100),
        probe("shoal-py-process", 10_000_000, 20_200),
        probe("shoal-py-threads", 100_000, 20_000),
        probe("shoal-py-threads", 1_000_000, 60_000),
    ]);
    report
}

/// A search's pick is noisy: when multiprocessing's default row beats its
/// `-best` row, W1 still takes the alternating rounds (which time both).
#[test]
fn py_w1_takes_the_interleaved_best_when_the_default_row_is_fastest() {
    let mut report = shoal_report();
    let default = report
        .measurements
        .iter_mut()
        .find(|m| m.group == "py-W1" && m.implementation == "multiprocessing")
        .unwrap();
    default.median_ns = 15_000_000.0;
    let targets = python::targets(&report);
    let get = |name: &str| targets.iter().find(|t| t.name == name).unwrap();
    let threads = get("py-W1 shoal-py-threads vs the fastest peer");
    assert_eq!(
        (threads.measured.as_str(), threads.met),
        ("2.00x the items/s of multiprocessing-best (median of 7 interleaved rounds)", Some(true)),
    );
    // No rounds for the process backend: its own row against the fastest.
    let process = get("py-W1 shoal-py-process vs the fastest peer");
    assert_eq!(
        (process.measured.as_str(), process.met),
        ("1.25x the items/s of multiprocessing", Some(false)),
    );
}

#[test]
fn python_targets_are_checked_for_each_shoal_backend() {
    let report = shoal_report();
    let targets = python::targets(&report);
    assert_eq!(targets.len(), 18);
    let get = |name: &str| {
        targets
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no target {name}: {targets:#?}"))
    };
    let check = |name: &str, measured: &str, met: Option<bool>| {
        let t = get(name);
        assert_eq!((t.measured.as_str(), t.met), (measured, met), "{t:?}");
    };
    check(
        "py-W1 shoal-py-process vs the fastest peer",
        "1.67x the items/s of multiprocessing-best",
        Some(true),
    );
    // Timed in alternating rounds against the fastest peer: that ratio.
    check(
        "py-W1 shoal-py-threads vs the fastest peer",
        "2.00x the items/s of multiprocessing-best (median of 7 interleaved rounds)",
        Some(true),
    );
    check("py-W2 shoal-py-process makespan", "650 ms (1.009x greedy)", Some(true));
    check("py-W2 shoal-py-threads makespan", "700 ms (1.087x greedy)", Some(false));
    assert!(get("py-W2 shoal-py-process makespan").goal.starts_with("<= 0.657 s"));
    check("py-W3 shoal-py-process speedup over python-serial", "2.11x", Some(true));
    check("py-W3 shoal-py-threads speedup over python-serial", "1.58x", Some(false));
    check("py-W3 shoal-py-process vs multiprocessing", "2.00x the tasks/s", Some(true));
    check("py-W4 shoal-py-process vs multiprocessing (fork)", "0.80x the time", Some(true));
    check("py-W4 shoal-py-threads vs multiprocessing (fork)", "-", None);
    check("py-W5 shoal-py-process vs multiprocessing", "5.00x the MB/s", Some(true));
    // Timed in alternating rounds: that ratio is the one checked.
    check(
        "py-W6 shoal-py-process imap vs multiprocessing imap_unordered at its best chunksize",
        "0.450x the time (median of 7 interleaved rounds)",
        Some(true),
    );
    check(
        "py-W6 shoal-py-threads imap vs multiprocessing imap_unordered at its best chunksize",
        "0.533x the time",
        Some(false),
    );
    // As a user calls it: per item (20 000 items in 600 ms: 30 µs each).
    check(
        "py-W6 shoal-py-threads imap vs multiprocessing imap_unordered as called \
         (default chunksize 1), per item",
        "0.003x the time",
        Some(true),
    );
    let memory = get("W6 memory of shoal-py-process");
    assert_eq!(memory.met, Some(true), "{memory:?}");
    assert!(memory.measured.contains("from 10^5 to 10^7, 0.02 bytes"), "{memory:?}");
    // Probed only up to 10^6: judged over what it has.
    let threads = get("W6 memory of shoal-py-threads");
    assert_eq!(threads.met, Some(false), "{threads:?}");
    assert!(threads.measured.contains("x3.00 from 10^5 to 10^6, 45.51 bytes"), "{threads:?}");
    // The issue's order for one backend.
    let order: Vec<&str> = targets[..9].iter().map(|t| t.name.split(' ').next().unwrap()).collect();
    assert_eq!(
        order,
        ["py-W1", "py-W2", "py-W3", "py-W3", "py-W4", "py-W5", "py-W6", "py-W6", "W6"]
    );
}

#[test]
fn memory_rows_with_a_shorter_span_say_so() {
    let report = shoal_report();
    let md = markdown(&report);
    // The memory table is the last with these rows.
    let row = md.lines().rfind(|l| l.starts_with("| shoal-py-threads |")).unwrap();
    assert_eq!(
        row,
        "| shoal-py-threads | 19.5 MiB | 58.6 MiB | - | 3.00x (10^5 to 10^6) | 45.51 | - | \
         64 (10^6) | 250 ms (10^6) |"
    );
    let full = md.lines().rfind(|l| l.starts_with("| shoal-py-process |")).unwrap();
    assert!(full.ends_with("| 1.01x | 0.02 | - | 64 | 250 ms |"), "{full}");
}
