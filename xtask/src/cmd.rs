//! Running external commands: each one is echoed as `$ program args` before it
//! runs, and a failure names the command that failed.

use std::ffi::OsString;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A command to run, echoed before it runs.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// What is executed (for `cargo`, the `$CARGO` that runs xtask).
    program: OsString,
    /// What is shown in the echo and in errors (`cargo`, not a toolchain path).
    shown: String,
    args: Vec<String>,
    dir: Option<PathBuf>,
}

impl Cmd {
    /// A command running `program` from `PATH`.
    pub fn new(program: &str) -> Cmd {
        Cmd { program: program.into(), shown: program.to_owned(), args: Vec::new(), dir: None }
    }

    /// A `cargo` command, using the same cargo that runs xtask when known.
    pub fn cargo() -> Cmd {
        let mut cmd = Cmd::new("cargo");
        if let Some(cargo) = std::env::var_os("CARGO") {
            cmd.program = cargo;
        }
        cmd
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs the command in `dir`.
    pub fn dir(mut self, dir: &Path) -> Cmd {
        self.dir = Some(dir.to_owned());
        self
    }

    /// The command line as shown to the user, e.g. `cargo fmt --all -- --check`.
    pub fn display(&self) -> String {
        let mut line = self.shown.clone();
        for arg in &self.args {
            line.push(' ');
            if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'') {
                line.push_str(&format!("'{}'", arg.replace('\'', r"'\''")));
            } else {
                line.push_str(arg);
            }
        }
        line
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).stdin(Stdio::null());
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        command
    }

    fn echo(&self) {
        // Flush our stdout first so that the echo and the child's output
        // appear in order in a CI log.
        let _ = std::io::stdout().flush();
        eprintln!("$ {}", self.display());
    }

    /// Echoes and runs the command with inherited stdout and stderr.
    pub fn run(&self) -> Result<(), CmdError> {
        self.echo();
        let status = self.command().status().map_err(|e| self.not_started(&e))?;
        if status.success() { Ok(()) } else { Err(self.failed(&status.to_string())) }
    }

    /// Echoes and runs the command, returning its stdout (stderr is inherited).
    pub fn read(&self) -> Result<String, CmdError> {
        self.echo();
        let output =
            self.command().stderr(Stdio::inherit()).output().map_err(|e| self.not_started(&e))?;
        if output.status.success() {
            String::from_utf8(output.stdout)
                .map_err(|_| self.failed("printed something that is not UTF-8"))
        } else {
            Err(self.failed(&output.status.to_string()))
        }
    }

    /// Echoes and runs the command with all output discarded; tells whether it
    /// succeeded. For probes such as `cargo fmt --version`.
    pub fn probe(&self) -> bool {
        self.echo();
        self.command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    fn not_started(&self, error: &std::io::Error) -> CmdError {
        CmdError {
            command: self.display(),
            reason: format!("could not be started ({error}); is `{}` on PATH?", self.shown),
        }
    }

    fn failed(&self, reason: &str) -> CmdError {
        CmdError { command: self.display(), reason: format!("failed: {reason}") }
    }
}

/// A command that could not be started or did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdError {
    /// The command line as it was echoed.
    pub command: String,
    /// Why it failed, e.g. `failed: exit status: 101`.
    pub reason: String,
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.command, self.reason)
    }
}

impl std::error::Error for CmdError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_when_needed() {
        let cmd = Cmd::new("cargo").args(["bench", "--", "a b", "", "it's"]);
        assert_eq!(cmd.display(), r"cargo bench -- 'a b' '' 'it'\''s'");
    }

    #[test]
    fn cargo_is_shown_as_cargo() {
        assert_eq!(Cmd::cargo().args(["fmt", "--all"]).display(), "cargo fmt --all");
    }

    #[test]
    fn failures_name_the_command() {
        let missing = Cmd::new("xtask-no-such-program").args(["--x"]);
        let error = missing.run().unwrap_err();
        assert_eq!(error.command, "xtask-no-such-program --x");
        assert!(error.to_string().contains("could not be started"), "{error}");
        assert!(!missing.probe());

        let error = Cmd::new("false").run().unwrap_err();
        assert_eq!(error.to_string(), "`false` failed: exit status: 1");
        assert_eq!(Cmd::new("echo").args(["hi"]).read().unwrap(), "hi\n");
    }
}
