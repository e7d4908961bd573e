//! `cargo xtask bench [--quick]`: runs the criterion suite of `shoal-benches`
//! and the W6 memory probe, prints one comparison and writes
//! `target/shoal-bench/{report.md, report.svg, results.json}`.
//!
//! Contract with the benches crate:
//! - `cargo bench -p shoal-benches --bench workloads -- <criterion args>` runs
//!   benchmarks named `<group>/<implementation>`; their results are read from
//!   criterion's directory (see [`crate::report`]).
//! - `cargo run -p shoal-benches --release --bin w6-memory -- --backend B
//!   --items N` prints one JSON line with `peak_rss_kib` (and `backend`,
//!   `items`, `pulled_before_first`, `seconds`); `--list-backends` prints one
//!   backend name per line.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::cmd::Cmd;
use crate::report::{self, Machine, Report};

/// Criterion arguments for `--quick` (criterion 0.8 flags; sample size >= 10).
const QUICK_CRITERION_ARGS: &[&str] =
    &["--warm-up-time", "0.5", "--measurement-time", "2", "--sample-size", "10"];

/// Generator sizes of the W6 memory probe (the same with `--quick`: it is cheap).
const MEMORY_ITEMS: &[u64] = &[100_000, 1_000_000, 10_000_000];

/// Backends probed when `w6-memory --list-backends` gives nothing usable;
/// always probed in any case.
const DEFAULT_MEMORY_BACKENDS: &[&str] = &["serial", "threads"];

/// Cargo arguments that run the W6 memory probe, before its own arguments.
const MEMORY_PROBE: &[&str] =
    &["run", "-p", "shoal-benches", "--release", "--bin", "w6-memory", "--"];

/// The cargo target directory (`$CARGO_TARGET_DIR` or `<root>/target`).
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// Where criterion writes (`$CRITERION_HOME` or `<target>/criterion`), as
/// criterion itself decides.
fn criterion_dir(root: &Path) -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map_or_else(|| target_dir(root).join("criterion"), PathBuf::from)
}

fn machine(root: &Path, quick: bool, started: SystemTime) -> Machine {
    let rustc = Cmd::new("rustc")
        .args(["--version"])
        .dir(root)
        .read()
        .map_or_else(|e| format!("unknown rustc ({e})"), |v| v.trim().to_owned());
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        rustc,
        date: report::utc_date(started),
        quick,
    }
}

/// Backends for the memory probe: the defaults plus what `--list-backends` prints.
fn memory_backends(root: &Path, notes: &mut Vec<String>) -> Vec<String> {
    let mut backends: Vec<String> =
        DEFAULT_MEMORY_BACKENDS.iter().map(|name| (*name).to_owned()).collect();
    let list = Cmd::cargo().args(MEMORY_PROBE.iter().copied()).args(["--list-backends"]);
    match list.dir(root).read() {
        Ok(stdout) => {
            for name in stdout.lines().map(str::trim) {
                let plausible = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                if plausible && !backends.iter().any(|known| known == name) {
                    backends.push(name.to_owned());
                }
            }
        }
        Err(error) => {
            notes.push(format!("{error}; probing only {}", DEFAULT_MEMORY_BACKENDS.join(" and ")))
        }
    }
    backends
}

/// Runs the probe for every backend and size; failures become notes and the
/// failed command lines are returned.
fn probe_memory(root: &Path, report: &mut Report) -> Vec<String> {
    let mut failed = Vec::new();
    for backend in memory_backends(root, &mut report.notes) {
        for &items in MEMORY_ITEMS {
            let items_arg = items.to_string();
            let cmd = Cmd::cargo()
                .args(MEMORY_PROBE.iter().copied())
                .args(["--backend", backend.as_str(), "--items", items_arg.as_str()])
                .dir(root);
            let result = cmd.read().map_err(|e| e.to_string()).and_then(|stdout| {
                report::parse_memory_probe(&stdout, &backend, items)
                    .map_err(|why| format!("`{}`: {why}", cmd.display()))
            });
            match result {
                Ok(probe) => report.memory.push(probe),
                Err(why) => {
                    report.notes.push(why);
                    failed.push(cmd.display());
                }
            }
        }
    }
    failed
}

/// Runs the suite and writes the report.
pub fn run(root: &Path, quick: bool) -> Result<(), String> {
    let started = SystemTime::now();
    if !root.join("benches").join("Cargo.toml").is_file() {
        eprintln!("note: {} does not exist yet", root.join("benches/Cargo.toml").display());
    }

    let mut criterion =
        Cmd::cargo().args(["bench", "-p", "shoal-benches", "--bench", "workloads", "--"]).dir(root);
    if quick {
        criterion = criterion.args(QUICK_CRITERION_ARGS.iter().copied());
    }
    criterion.run().map_err(|e| format!("benchmarks failed: {e}"))?;

    let criterion_dir = criterion_dir(root);
    // Only this run's results; mtimes may be a little coarse.
    let since = started.checked_sub(Duration::from_secs(2)).unwrap_or(started);
    let loaded = report::load_criterion(&criterion_dir, Some(since));
    if loaded.measurements.is_empty() {
        return Err(format!(
            "`{}` wrote no results under {} (expected <group>/<implementation>/new/estimates.json)",
            criterion.display(),
            criterion_dir.display()
        ));
    }
    let mut report = Report {
        machine: machine(root, quick, started),
        measurements: loaded.measurements,
        memory: Vec::new(),
        notes: Vec::new(),
    };
    report.notes.extend(
        loaded
            .skipped
            .iter()
            .filter(|s| !s.ends_with("left over from an earlier run"))
            .map(|s| format!("skipped criterion result {s}")),
    );

    let failed = probe_memory(root, &mut report);

    let out_dir = target_dir(root).join("shoal-bench");
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let files = [
        ("report.md", report::markdown(&report)),
        ("report.svg", report::svg(&report)),
        ("results.json", report::json(&report)),
    ];
    println!();
    print!("{}", report::text(&report));
    println!();
    for (name, contents) in &files {
        let path = out_dir.join(name);
        std::fs::write(&path, contents)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }

    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("W6 memory probe failed:\n  {}", failed.join("\n  ")))
    }
}
