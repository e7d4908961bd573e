//! The W6 memory probe: `imap` over a generator of unknown length, trivial
//! work, summed; prints one JSON line with the peak RSS and how many items
//! the generator gave before the first result came out.
//!
//! ```text
//! w6-memory --backend <serial|threads|threads-plugin|process> --items <N> [--workers <W>]
//! w6-memory --list-backends
//! ```
//!
//! Output: `{"backend": "threads", "items": N, "peak_rss_kib": K,
//! "pulled_before_first": P, "seconds": S}` (peak RSS is `VmHWM` from
//! `/proc/self/status`, the high-water mark of this process, the parent:
//! with `process` it does not count the workers). With `process` the line
//! also has `"worker_peak_rss_kib"`: the largest peak RSS of one worker
//! process (`getrusage(RUSAGE_CHILDREN)` once the pool has reaped them).
//!
//! `process` runs `imap_fn` over the named function `bench.inc`; the
//! workers are copies of this program, which is why `main` calls
//! `shoal_process::worker_main` first.

use std::cell::Cell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use shoal_benches::workloads::{generator, w6_stream};
use shoal_benches::{Implementation, Runner};

const USAGE: &str = "usage: w6-memory --backend <serial|threads|threads-plugin|process> --items <N> [--workers <W>]\n       w6-memory --list-backends";

/// The backends this probe can run: every implementation with a lazy
/// ordered map (not rayon) that builds here.
const PROBED: [Implementation; 4] = [
    Implementation::Serial,
    Implementation::Threads,
    Implementation::ThreadsPlugin,
    Implementation::Process,
];

struct Args {
    backend: Implementation,
    items: u64,
    workers: usize,
}

enum Command {
    List,
    Run(Args),
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let (mut backend, mut items, mut workers) = (None, None, 2usize);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--list-backends" => return Ok(Command::List),
            "--backend" => {
                let name = value("--backend")?;
                backend = Some(
                    Implementation::from_name(&name)
                        .filter(|i| PROBED.contains(i))
                        .ok_or_else(|| format!("unknown backend `{name}`"))?,
                );
            }
            "--items" => {
                let v = value("--items")?;
                items = Some(v.parse().map_err(|e| format!("--items `{v}`: {e}"))?);
            }
            "--workers" => {
                let v = value("--workers")?;
                workers = v.parse().map_err(|e| format!("--workers `{v}`: {e}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    Ok(Command::Run(Args {
        backend: backend.ok_or("--backend is required")?,
        items: items.ok_or("--items is required")?,
        workers,
    }))
}

/// The process's peak resident set size in KiB (`VmHWM`).
fn peak_rss_kib() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM in /proc/self/status".to_string())
}

/// Whether `implementation` can be probed in this build and on this disk.
fn runs_here(implementation: Implementation) -> bool {
    match implementation {
        #[cfg(feature = "plugin")]
        Implementation::ThreadsPlugin => {
            shoal_benches::plugin::library_path().is_some_and(|p| p.is_file())
        }
        #[cfg(not(feature = "plugin"))]
        Implementation::ThreadsPlugin => false,
        Implementation::Rayon => false,
        Implementation::Serial | Implementation::Threads | Implementation::Process => true,
    }
}

fn run(args: &Args) -> Result<String, String> {
    let runner = Runner::new(args.backend, args.workers).map_err(|e| e.to_string())?;
    // Counted in the generator, read when the first result comes out.
    let pulled = Rc::new(Cell::new(0u64));
    let counter = pulled.clone();
    let items = generator(args.items).inspect(move |_| counter.set(counter.get() + 1));

    let started = Instant::now();
    let (sum, pulled_before_first) = {
        let mut results = w6_stream(&runner, items).map_err(|e| e.to_string())?;
        match results.next() {
            Some(first) => {
                let pulled_before_first = pulled.get();
                (results.fold(first, |acc, x| acc.wrapping_add(x)), pulled_before_first)
            }
            None => (0, 0),
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let want = args.items.wrapping_mul(args.items.wrapping_add(1)) / 2;
    if args.items < 1 << 32 && sum != want {
        return Err(format!("wrong sum: {sum}, expected {want}"));
    }
    drop(runner);
    let peak = peak_rss_kib()?;
    let workers = if args.backend == Implementation::Process {
        format!(", \"worker_peak_rss_kib\": {}", children_peak_rss_kib())
    } else {
        String::new()
    };
    Ok(format!(
        "{{\"backend\": \"{}\", \"items\": {}, \"peak_rss_kib\": {peak}, \"pulled_before_first\": {pulled_before_first}, \"seconds\": {seconds:.6}{workers}}}",
        args.backend, args.items
    ))
}

/// The largest peak RSS of one reaped child process, KiB (`ru_maxrss` of
/// `RUSAGE_CHILDREN`, which Linux gives in KiB).
fn children_peak_rss_kib() -> u64 {
    // SAFETY: getrusage(2) fills the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; a valid `who` and a valid pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } == 0 {
        u64::try_from(usage.ru_maxrss).unwrap_or(0)
    } else {
        0
    }
}

fn main() -> ExitCode {
    // With `--backend process` the workers are copies of this program: a
    // copy started as a worker runs here and never returns.
    shoal_process::worker_main(&shoal_benches::named::registry());

    match parse_args(std::env::args().skip(1)) {
        Ok(Command::List) => {
            for backend in PROBED.into_iter().filter(|&b| runs_here(b)) {
                println!("{backend}");
            }
            ExitCode::SUCCESS
        }
        Ok(Command::Run(args)) => match run(&args) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("w6-memory: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            if !e.is_empty() {
                eprintln!("w6-memory: {e}");
            }
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
