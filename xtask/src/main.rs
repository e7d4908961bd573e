//! `cargo xtask`: the developer entry points of shoal (see `cargo xtask --help`).
//!
//! `cargo xtask` is an alias (in `.cargo/config.toml`) for
//! `cargo run --quiet --package xtask --`.

mod bench;
mod cmd;
mod python;
mod report;
mod test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
cargo xtask: developer entry points of shoal

USAGE:
    cargo xtask <COMMAND> [OPTIONS]

COMMANDS:
    test             Run every check and test of the repository, as CI does:
                     rustfmt, wasm32 check of shoal-core, clippy, cargo test
                     of each package (with doc tests), then the Python
                     package: wheel (maturin), fresh virtualenv, stubtest,
                     pytest. Installs missing rustup components and targets
                     and the Python tools (into target/py-*-venv).
    bench [--quick]  Run the benchmark suite (the in-process and process
                     workloads with criterion, the W6 memory probe, the chaos
                     run, and from Python: shoal's wheel beside
                     multiprocessing.Pool, concurrent.futures, loky and mpire
                     in target/bench-venv),
                     print one comparison table with the targets and write
                     target/shoal-bench/{report.md, report.svg, results.json}.
                     --quick: short warm-up and measurement.
    help             Print this message (also -h, --help).
";

/// What the command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    Help,
    Test,
    Bench { quick: bool },
}

fn parse_args(args: &[String]) -> Result<Task, String> {
    let Some((command, rest)) = args.split_first() else {
        return Err("no command given".to_owned());
    };
    let no_options = |task: Task| match rest {
        [] => Ok(task),
        [extra, ..] => Err(format!("unexpected argument `{extra}` for `{command}`")),
    };
    match command.as_str() {
        "-h" | "--help" | "help" => Ok(Task::Help),
        "test" => no_options(Task::Test),
        "bench" => {
            let mut quick = false;
            for arg in rest {
                match arg.as_str() {
                    "--quick" => quick = true,
                    "-h" | "--help" => return Ok(Task::Help),
                    other => return Err(format!("unexpected argument `{other}` for `bench`")),
                }
            }
            Ok(Task::Bench { quick })
        }
        other => Err(format!("unknown command `{other}`")),
    }
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_owned()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = match parse_args(&args) {
        Ok(task) => task,
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let root = workspace_root();
    let result = match task {
        Task::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Task::Test => test::run(&root),
        Task::Bench { quick } => bench::run(&root, quick),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Task, String> {
        parse_args(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_commands() {
        assert_eq!(parse(&["--help"]), Ok(Task::Help));
        assert_eq!(parse(&["help"]), Ok(Task::Help));
        assert_eq!(parse(&["test"]), Ok(Task::Test));
        assert_eq!(parse(&["bench"]), Ok(Task::Bench { quick: false }));
        assert_eq!(parse(&["bench", "--quick"]), Ok(Task::Bench { quick: true }));
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["tset"]).unwrap_err().contains("tset"));
        assert!(parse(&["test", "--quick"]).unwrap_err().contains("--quick"));
        assert!(parse(&["bench", "--fast"]).unwrap_err().contains("--fast"));
    }

    #[test]
    fn root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("xtask").is_dir());
    }
}
