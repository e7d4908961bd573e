//! `cargo xtask test`: every check and test of the repository, in the order CI
//! runs them, stopping at the first failure.
//!
//! Each step is a cargo command plus what it needs installed first (a rustup
//! component or target). Missing tools are installed with rustup, so the
//! command works on a fresh clone and a fresh machine. The last step builds
//! and tests the Python package ([`crate::python`]).

use std::path::Path;

use crate::cmd::{Cmd, CmdError};

/// The wasm target that shoal-core must build for.
const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// The workspace's packages, tested one at a time with all their features.
/// Not `cargo test --workspace --all-features`: that would turn on
/// `plugin-export` in two backends at once, and a program linking both
/// would export the plugin root symbol twice. Add a row for a new crate.
const PACKAGES: &[&[&str]] = &[
    &["test", "-p", "shoal-core", "--all-features"],
    &["test", "-p", "shoal-threads", "--all-features"],
    &["test", "-p", "shoal-process", "--all-features"],
    &["test", "-p", "shoal-benches", "--all-features"],
    &["test", "-p", "xtask"],
];

/// What a step needs installed before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// Nothing beyond cargo.
    Nothing,
    /// A rustup component, present when `cargo <probe>` succeeds.
    Component { component: &'static str, probe: &'static [&'static str] },
    /// A rustup target of the active toolchain.
    Target(&'static str),
}

/// One step of `cargo xtask test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    /// Short name used in the progress lines.
    name: &'static str,
    /// Arguments of the `cargo` command.
    args: &'static [&'static str],
    /// Installed before the command runs.
    needs: Needs,
}

/// The steps, in the order they run.
fn steps() -> Vec<Step> {
    let mut steps = vec![
        Step {
            name: "format",
            args: &["fmt", "--all", "--", "--check"],
            needs: Needs::Component { component: "rustfmt", probe: &["fmt", "--version"] },
        },
        Step {
            name: "shoal-core on wasm32",
            args: &["check", "-p", "shoal-core", "--target", WASM_TARGET, "--no-default-features"],
            needs: Needs::Target(WASM_TARGET),
        },
    ];
    steps.extend([Step {
        name: "clippy",
        args: &["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"],
        needs: Needs::Component { component: "clippy", probe: &["clippy", "--version"] },
    }]);
    // Plain `cargo test` (not nextest) so that doc tests run too.
    steps.extend(PACKAGES.iter().map(|&args| Step { name: args[2], args, needs: Needs::Nothing }));
    steps
}

/// Installs what `needs` asks for, if it is missing.
fn ensure(needs: Needs, root: &Path) -> Result<(), CmdError> {
    match needs {
        Needs::Nothing => Ok(()),
        Needs::Component { component, probe } => {
            if Cmd::cargo().args(probe.iter().copied()).dir(root).probe() {
                Ok(())
            } else {
                Cmd::new("rustup").args(["component", "add", component]).dir(root).run()
            }
        }
        Needs::Target(target) => {
            let installed =
                Cmd::new("rustup").args(["target", "list", "--installed"]).dir(root).read()?;
            if installed.lines().any(|line| line.trim() == target) {
                Ok(())
            } else {
                Cmd::new("rustup").args(["target", "add", target]).dir(root).run()
            }
        }
    }
}

/// Runs all steps; prints `xtask test: N passed, M failed` at the end.
pub fn run(root: &Path) -> Result<(), String> {
    let steps = steps();
    // The cargo steps, then the Python package (see `crate::python`).
    let total = steps.len() + 1;
    let mut passed = 0;
    for (index, step) in steps.iter().enumerate() {
        let cmd = Cmd::cargo().args(step.args.iter().copied()).dir(root);
        eprintln!("\n== xtask test: step {}/{total}: {}", index + 1, step.name);
        let outcome = ensure(step.needs, root).and_then(|()| cmd.run());
        if let Err(error) = outcome {
            println!("xtask test: {passed} passed, 1 failed");
            return Err(format!(
                "step {}/{total} ({}) failed: {error}\n       {} later step(s) not run",
                index + 1,
                step.name,
                total - index - 1
            ));
        }
        passed += 1;
    }
    eprintln!("\n== xtask test: step {total}/{total}: python package (bindings-python)");
    if let Err(error) = crate::python::test(root) {
        println!("xtask test: {passed} passed, 1 failed");
        return Err(format!("step {total}/{total} (python package) failed: {error}"));
    }
    passed += 1;
    println!("xtask test: {passed} passed, 0 failed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(steps: &[Step], first_arg: &str) -> usize {
        steps.iter().position(|s| s.args[0] == first_arg).unwrap()
    }

    #[test]
    fn steps_run_in_the_agreed_order() {
        let steps = steps();
        let order: Vec<&str> = steps.iter().map(|s| s.args[0]).collect();
        assert_eq!(order, ["fmt", "check", "clippy", "test", "test", "test", "test", "test"]);
        // Every package is tested, one at a time.
        let tested: Vec<&str> =
            steps.iter().filter(|s| s.args[0] == "test").map(|s| s.args[2]).collect();
        assert_eq!(
            tested,
            ["shoal-core", "shoal-threads", "shoal-process", "shoal-benches", "xtask"]
        );
    }

    #[test]
    fn fmt_clippy_and_wasm_install_what_they_need() {
        let steps = steps();
        assert_eq!(steps[position(&steps, "check")].needs, Needs::Target(WASM_TARGET));
        for (arg, component) in [("fmt", "rustfmt"), ("clippy", "clippy")] {
            assert!(matches!(
                steps[position(&steps, arg)].needs,
                Needs::Component { component: c, .. } if c == component
            ));
        }
    }

    #[test]
    fn clippy_denies_warnings_and_tests_keep_doc_tests() {
        let steps = steps();
        let clippy = steps[position(&steps, "clippy")].args;
        assert!(clippy.ends_with(&["--", "-D", "warnings"]));
        let test = steps[position(&steps, "test")].args;
        assert!(!test.contains(&"--lib") && !test.contains(&"--tests"));
    }
}
