//! `cargo xtask bench [--quick]`: runs the benchmark suites of
//! `shoal-benches` and the Python peers, prints one comparison and writes
//! `target/shoal-bench/{report.md, report.svg, results.json}`.
//!
//! Steps (each echoed as it runs):
//! 1. builds the threads plugin (`cargo build -p shoal-threads --release
//!    --features plugin-export`), so the `threads-plugin` rows can load
//!    `target/release/libshoal_threads.so`;
//! 2. the in-process criterion suite (`--bench workloads`, groups `W*` and
//!    `roundtrip`) and the process suite (`--bench process`, groups `P-*`),
//!    both with `--features plugin`;
//! 3. the Python peers: a virtualenv in `target/bench-venv` (made with
//!    `python3 -m venv`; numpy, loky and mpire installed into it with
//!    `pip install -r benches/py/requirements.txt`, again whenever that file
//!    changes), and shoal's wheel (built by [`crate::python::build_wheel`]),
//!    then `benches/py/peers.py [--quick]`: the `py-*` groups
//!    (multiprocessing.Pool, concurrent.futures, loky, mpire, and shoal's
//!    Python package when `import shoal` works in the venv), whose
//!    multiprocessing rows also join the `P-*` groups;
//! 4. builds the binaries `w6-memory`, `chaos` and `ab` once and runs them
//!    directly (so a run that overstays its time limit can be killed, with
//!    its workers): the W6 memory probe for every backend it lists
//!    (`process` too), the chaos run (many tasks while a worker process is
//!    SIGKILLed every 100 results), then W1 and W3 in alternating rounds
//!    (`ab`: threads against rayon, the threads plugin against the static
//!    backend), whose ratios the core's targets are checked against.
//!
//! What cannot run (no Python, no venv module, a failed probe) becomes a
//! note in the report and the run goes on; the exit code is non-zero only
//! when a Rust benchmark, probe or the chaos run failed.
//!
//! Contract with the benches crate:
//! - `cargo bench -p shoal-benches --bench <workloads|process> -- <criterion
//!   args>` runs benchmarks named `<group>/<implementation>`; their results
//!   are read from criterion's directory (see [`crate::report`]).
//! - `target/release/w6-memory --backend B --items N` prints one JSON line
//!   with `peak_rss_kib` (and `backend`, `items`, `pulled_before_first`,
//!   `seconds`, `worker_peak_rss_kib`); `--list-backends` prints one
//!   backend name per line.
//! - `target/release/chaos --tasks N --every K` prints one JSON line
//!   (`tasks`, `kills`, `lost`, `seconds`, ...).
//! - `python benches/py/peers.py [--quick]` prints one JSON document
//!   (`measurements`, `memory`, `notes`; see [`report::parse_peers`]).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::cmd::Cmd;
use crate::report::{self, Machine, Report};

/// Criterion arguments for `--quick` (criterion 0.8 flags; sample size >= 10).
const QUICK_CRITERION_ARGS: &[&str] =
    &["--warm-up-time", "0.5", "--measurement-time", "2", "--sample-size", "10"];

/// The criterion suites of `shoal-benches`, in the order they run.
const SUITES: &[&str] = &["workloads", "process"];

/// Builds the threads backend as a plugin library for `threads-plugin`.
const PLUGIN_BUILD: &[&str] =
    &["build", "-p", "shoal-threads", "--release", "--features", "plugin-export"];

/// Generator sizes of the W6 memory probe (the same with `--quick`: it is cheap).
const MEMORY_ITEMS: &[u64] = &[100_000, 1_000_000, 10_000_000];

/// Backends probed when `w6-memory --list-backends` gives nothing usable;
/// always probed in any case.
const DEFAULT_MEMORY_BACKENDS: &[&str] = &["serial", "threads", "process"];

/// Builds the binaries of `shoal-benches` (`w6-memory`, `chaos`, `ab`).
const BUILD_BINS: &[&str] =
    &["build", "-p", "shoal-benches", "--release", "--features", "plugin", "--bins"];

/// How long one W6 memory probe may run: (full, `--quick`). A healthy one
/// takes seconds.
const MEMORY_LIMIT: (Duration, Duration) = (Duration::from_secs(600), Duration::from_secs(30));

/// How long the chaos run may take: (full, `--quick`).
const CHAOS_LIMIT: (Duration, Duration) = (Duration::from_secs(600), Duration::from_secs(120));

/// Tasks of the chaos run (about 10 s, so `--quick` keeps them).
const CHAOS_TASKS: u64 = 100_000;

/// A worker is killed after every this many results in the chaos run.
const CHAOS_EVERY: u64 = 100;

/// Rounds of each interleaved comparison (`ab`): (full, `--quick`). A W3
/// round takes ~1.5 s on 2 cores.
const INTERLEAVED_ROUNDS: (u32, u32) = (15, 7);

/// How long each `ab` run may take: (full, `--quick`).
const INTERLEAVED_LIMIT: (Duration, Duration) =
    (Duration::from_secs(300), Duration::from_secs(150));

/// The peers' script, relative to the workspace root.
const PEERS_SCRIPT: &str = "benches/py/peers.py";

/// What the peers need from PyPI (pinned), relative to the workspace root.
const PEERS_REQUIREMENTS: &str = "benches/py/requirements.txt";

/// A copy of the requirements last installed, inside the venv: when it
/// differs from [`PEERS_REQUIREMENTS`], pip runs again.
const INSTALLED_REQUIREMENTS: &str = "shoal-bench-requirements.txt";

/// Modules the peers import: a venv that lacks one is installed into again.
const PEERS_MODULES: &[&str] = &["numpy", "loky", "mpire"];

/// The Debian package that provides `python3 -m venv` (and `ensurepip`).
const VENV_PACKAGE: &str = "python3-venv";

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

/// A binary of `shoal-benches`, as `BUILD_BINS` leaves it.
fn bench_bin(root: &Path, bin: &str) -> PathBuf {
    target_dir(root).join("release").join(bin)
}

/// Runs `program` with `args` (echoed like [`Cmd`]), stderr inherited, and
/// returns its stdout; kills it if it runs longer than `limit`.
fn read_within(program: &Path, args: &[&str], limit: Duration) -> Result<String, String> {
    let shown = format!("{} {}", program.display(), args.join(" "));
    let _ = std::io::stdout().flush();
    eprintln!("$ {shown}");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("`{shown}` could not be started: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).map(|_| out)
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("`{shown}` did not finish within {} s", limit.as_secs()));
            }
            Err(e) => return Err(format!("`{shown}`: {e}")),
        }
    };
    let out = reader
        .join()
        .map_err(|_| format!("`{shown}`: reading its output failed"))?
        .map_err(|e| format!("`{shown}` printed something that is not UTF-8: {e}"))?;
    if status.success() { Ok(out) } else { Err(format!("`{shown}` failed: {status}")) }
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
        python: None,
    }
}

/// Backends for the memory probe: the defaults plus what `--list-backends` prints.
fn memory_backends(root: &Path, notes: &mut Vec<String>) -> Vec<String> {
    let mut backends: Vec<String> =
        DEFAULT_MEMORY_BACKENDS.iter().map(|name| (*name).to_owned()).collect();
    match read_within(&bench_bin(root, "w6-memory"), &["--list-backends"], MEMORY_LIMIT.1) {
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
            notes.push(format!("{error}; probing only {}", DEFAULT_MEMORY_BACKENDS.join(", ")))
        }
    }
    backends
}

/// Runs the probe for every backend and size; failures become notes and are
/// returned.
fn probe_memory(root: &Path, quick: bool, report: &mut Report) -> Vec<String> {
    let mut failed = Vec::new();
    let limit = if quick { MEMORY_LIMIT.1 } else { MEMORY_LIMIT.0 };
    let probe = bench_bin(root, "w6-memory");
    for backend in memory_backends(root, &mut report.notes) {
        for &items in MEMORY_ITEMS {
            let items_arg = items.to_string();
            let args = ["--backend", backend.as_str(), "--items", items_arg.as_str()];
            let result = read_within(&probe, &args, limit).and_then(|stdout| {
                report::parse_memory_probe(&stdout, &backend, items)
                    .map_err(|why| format!("w6-memory {}: {why}", args.join(" ")))
            });
            match result {
                Ok(probe) => report.memory.push(probe),
                Err(why) => {
                    report.notes.push(format!("W6 memory probe: {why}"));
                    failed.push(why);
                }
            }
        }
    }
    failed
}

/// W1 and W3 in alternating rounds (`ab`): threads against rayon, and the
/// threads plugin against the static backend; a failure becomes a note
/// and is returned.
fn interleaved(root: &Path, quick: bool, report: &mut Report) -> Vec<String> {
    let rounds = if quick { INTERLEAVED_ROUNDS.1 } else { INTERLEAVED_ROUNDS.0 }.to_string();
    let limit = if quick { INTERLEAVED_LIMIT.1 } else { INTERLEAVED_LIMIT.0 };
    let mut failed = Vec::new();
    for extra in [None, Some("--plugin")] {
        let mut args = vec!["w1", "w3", "--json", "--rounds", rounds.as_str()];
        args.extend(extra);
        let result = read_within(&bench_bin(root, "ab"), &args, limit).and_then(|stdout| {
            let found = report::interleaved::parse(&stdout);
            if found.is_empty() { Err("no comparison in its output".to_owned()) } else { Ok(found) }
        });
        match result {
            Ok(found) => report.interleaved.extend(found),
            Err(why) => {
                let why = format!("ab {}: {why}", args.join(" "));
                eprintln!("note: {why}");
                report.notes.push(format!("interleaved comparison failed: {why}"));
                failed.push(why);
            }
        }
    }
    failed
}

/// The chaos run; a failure becomes a note and is returned.
fn chaos(root: &Path, quick: bool, report: &mut Report) -> Option<String> {
    let (tasks, every) = (CHAOS_TASKS.to_string(), CHAOS_EVERY.to_string());
    let limit = if quick { CHAOS_LIMIT.1 } else { CHAOS_LIMIT.0 };
    let args = ["--tasks", tasks.as_str(), "--every", every.as_str()];
    let result = read_within(&bench_bin(root, "chaos"), &args, limit)
        .and_then(|stdout| report::parse_chaos(&stdout).map_err(|why| format!("chaos: {why}")));
    match result {
        Ok(run) => {
            report.chaos = Some(run);
            None
        }
        Err(why) => {
            report.notes.push(format!("chaos run failed: {why}"));
            Some(why)
        }
    }
}

/// The virtualenv's interpreter, made (or repaired) with the pinned
/// requirements of the peers in it. On failure, says exactly what is
/// missing; a failed install that leaves a usable interpreter is a note
/// (the peers that cannot run say so themselves).
fn python_venv(root: &Path, notes: &mut Vec<String>) -> Result<PathBuf, String> {
    let venv = target_dir(root).join("bench-venv");
    let python = venv.join("bin").join("python");
    let python_arg = python.to_string_lossy().into_owned();
    let requirements = root.join(PEERS_REQUIREMENTS);
    let wanted = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("cannot read {}: {e}", requirements.display()))?;
    let stamp = venv.join(INSTALLED_REQUIREMENTS);
    let has = |module: &str| {
        python.is_file() && Cmd::new(&python_arg).args(["-c", &format!("import {module}")]).probe()
    };
    let installed = std::fs::read_to_string(&stamp).is_ok_and(|text| text == wanted);
    if installed && has(&PEERS_MODULES.join(", ")) {
        return Ok(python);
    }
    if !has("pip") {
        if !Cmd::new("python3").args(["--version"]).probe() {
            return Err(format!(
                "python3 is not installed (on Debian/Ubuntu: `apt-get install python3 {VENV_PACKAGE}`)"
            ));
        }
        if !Cmd::new("python3").args(["-c", "import venv, ensurepip"]).probe() {
            return Err(format!(
                "python3 has no working `venv`/`ensurepip` module: install the Debian package \
                 {VENV_PACKAGE} (`apt-get install {VENV_PACKAGE}`)"
            ));
        }
        let venv_arg = venv.to_string_lossy().into_owned();
        Cmd::new("python3").args(["-m", "venv", "--clear", venv_arg.as_str()]).run().map_err(
            |e| {
                format!(
                    "cannot create the virtualenv: {e} (on Debian/Ubuntu the venv module is in \
                     {VENV_PACKAGE})"
                )
            },
        )?;
    }
    let requirements_arg = requirements.to_string_lossy().into_owned();
    let install = Cmd::new(&python_arg)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
        .args([requirements_arg.as_str()])
        .run();
    match install {
        Ok(()) => {
            if let Err(e) = std::fs::write(&stamp, &wanted) {
                notes.push(format!("cannot write {}: {e}", stamp.display()));
            }
        }
        Err(e) if python.is_file() => {
            let missing: Vec<&str> = PEERS_MODULES.iter().copied().filter(|m| !has(m)).collect();
            notes.push(format!(
                "Python peers: cannot install {PEERS_REQUIREMENTS} into {}: {e}; {}",
                venv.display(),
                if missing.is_empty() {
                    "running with the packages already there".to_owned()
                } else {
                    format!("missing: {}", missing.join(", "))
                }
            ));
        }
        Err(e) => return Err(format!("cannot install into {}: {e}", venv.display())),
    }
    Ok(python)
}

/// Runs the Python peers and merges their rows; what goes wrong becomes a
/// note (the Rust rows stand on their own).
fn python_peers(root: &Path, quick: bool, report: &mut Report) {
    let python = match python_venv(root, &mut report.notes) {
        Ok(python) => python,
        Err(why) => {
            eprintln!("note: the Python peers are left out: {why}");
            report.notes.push(format!("Python peers left out: {why}"));
            return;
        }
    };
    // shoal's own rows: the current wheel, built and installed into the venv.
    match crate::python::build_wheel(root).and_then(|w| crate::python::install_wheel(&python, &w)) {
        Ok(()) => {}
        Err(why) => {
            eprintln!("note: shoal's Python rows are left out: {why}");
            report.notes.push(format!("shoal (Python) left out: {why}"));
        }
    }
    let mut cmd = Cmd::new(&python.to_string_lossy()).args([PEERS_SCRIPT]).dir(root);
    if quick {
        cmd = cmd.args(["--quick"]);
    }
    let peers = cmd.read().map_err(|e| e.to_string()).and_then(|stdout| {
        report::parse_peers(&stdout).map_err(|why| format!("`{}`: {why}", cmd.display()))
    });
    match peers {
        Ok(peers) => {
            report.machine.python = Some(peers.python);
            report.measurements.extend(peers.measurements);
            report.memory.extend(peers.memory);
            report.interleaved.extend(peers.interleaved);
            report.notes.extend(peers.notes.into_iter().map(|n| format!("Python peers: {n}")));
        }
        Err(why) => {
            eprintln!("note: the Python peers failed: {why}");
            report.notes.push(format!("Python peers failed: {why}"));
        }
    }
}

/// Runs everything and writes the report.
pub fn run(root: &Path, quick: bool) -> Result<(), String> {
    let started = SystemTime::now();
    if !root.join("benches").join("Cargo.toml").is_file() {
        eprintln!("note: {} does not exist yet", root.join("benches/Cargo.toml").display());
    }
    let mut notes = Vec::new();
    let mut failed = Vec::new();

    let plugin = Cmd::cargo().args(PLUGIN_BUILD.iter().copied()).dir(root);
    if let Err(e) = plugin.run() {
        notes.push(format!("threads-plugin rows are missing: {e}"));
    }

    let mut ran = Vec::new();
    for suite in SUITES {
        let mut criterion = Cmd::cargo()
            .args(["bench", "-p", "shoal-benches", "--features", "plugin", "--bench", suite, "--"])
            .dir(root);
        if quick {
            criterion = criterion.args(QUICK_CRITERION_ARGS.iter().copied());
        }
        match criterion.run() {
            Ok(()) => ran.push(criterion),
            Err(e) => {
                notes.push(format!("benchmarks failed: {e}"));
                failed.push(criterion.display());
            }
        }
    }

    let criterion_dir = criterion_dir(root);
    // Only this run's results; mtimes may be a little coarse.
    let since = started.checked_sub(Duration::from_secs(2)).unwrap_or(started);
    let loaded = report::load_criterion(&criterion_dir, Some(since));
    if loaded.measurements.is_empty() {
        return Err(format!(
            "{} wrote no results under {} (expected <group>/<implementation>/new/estimates.json)",
            if ran.is_empty() {
                "the benchmarks".to_owned()
            } else {
                ran.iter().map(|c| format!("`{}`", c.display())).collect::<Vec<_>>().join(" and ")
            },
            criterion_dir.display()
        ));
    }
    let mut report = Report {
        machine: machine(root, quick, started),
        measurements: loaded.measurements,
        memory: Vec::new(),
        chaos: None,
        interleaved: Vec::new(),
        notes,
    };
    report.notes.extend(
        loaded
            .skipped
            .iter()
            .filter(|s| !s.ends_with("left over from an earlier run"))
            .map(|s| format!("skipped criterion result {s}")),
    );

    python_peers(root, quick, &mut report);
    let bins = Cmd::cargo().args(BUILD_BINS.iter().copied()).dir(root);
    match bins.run() {
        Ok(()) => {
            failed.extend(probe_memory(root, quick, &mut report));
            failed.extend(chaos(root, quick, &mut report));
            failed.extend(interleaved(root, quick, &mut report));
        }
        Err(e) => {
            report.notes.push(format!("no W6 memory probe and no chaos run: {e}"));
            failed.push(bins.display());
        }
    }

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
        Err(format!("these Rust benchmarks failed:\n  {}", failed.join("\n  ")))
    }
}
