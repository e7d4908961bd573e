//! The chaos run (see `shoal_benches::chaos`): `--tasks` small named tasks
//! on a process pool of `--workers`, a random worker SIGKILLed after every
//! `--every` results; prints one JSON line and fails (exit 1) if a task
//! returned a wrong result, failed with anything but `WorkerLost`, or more
//! tasks were lost than workers killed.
//!
//! ```text
//! chaos [--tasks N] [--every K] [--workers W]     (defaults: 100000, 100, 2)
//! ```
//!
//! Output: `{"tasks": N, "every": K, "kills": .., "lost": .., "other_errors":
//! .., "wrong": .., "worker_pids": .., "seconds": .., "first_other_error": ..}`.

use std::process::ExitCode;

use shoal_benches::{chaos, named};

const USAGE: &str = "usage: chaos [--tasks N] [--every K] [--workers W]";

struct Args {
    tasks: u64,
    every: u64,
    workers: usize,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args { tasks: 100_000, every: 100, workers: 2 };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--tasks" => {
                let v = value("--tasks")?;
                parsed.tasks = v.parse().map_err(|e| format!("--tasks `{v}`: {e}"))?;
            }
            "--every" => {
                let v = value("--every")?;
                parsed.every = v.parse().map_err(|e| format!("--every `{v}`: {e}"))?;
            }
            "--workers" => {
                let v = value("--workers")?;
                parsed.workers = v.parse().map_err(|e| format!("--workers `{v}`: {e}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    // A copy of this program started as a worker runs here and never returns.
    shoal_process::worker_main(&named::registry());

    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("chaos: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let pool = match named::process_pool(args.workers) {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("chaos: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = chaos::run(&pool, args.tasks, args.every);
    drop(pool);
    println!("{}", outcome.json());
    eprintln!("chaos: {outcome}");
    match outcome.check() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chaos: {e}");
            ExitCode::FAILURE
        }
    }
}
