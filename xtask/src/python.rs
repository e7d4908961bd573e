//! The Python package (`bindings-python`) in `cargo xtask test`: build the
//! wheel with maturin, install it into a fresh virtualenv, check the stubs
//! and run the pytest suite.
//!
//! 1. `target/py-build-venv` holds maturin ([`BUILD_PACKAGES`]); it is made
//!    once and reused.
//! 2. `maturin build --release` writes the wheel to `target/wheels` (older
//!    shoal wheels there are removed first, so exactly one is installed).
//! 3. `target/py-test-venv` is made anew on every run (`venv --clear`): the
//!    wheel (pip fetches its dependency, cloudpickle) plus
//!    [`TEST_PACKAGES`]. A fresh environment catches a wheel that only
//!    works next to the source tree.
//! 4. `python -m mypy.stubtest shoal._shoal` checks `_shoal.pyi` against
//!    the built module, `mypy` type-checks the package's sources (settings
//!    in `bindings-python/pyproject.toml`); then `python -m pytest
//!    bindings-python/tests`.
//!
//! Needs `python3` (3.9 or newer) with the `venv` module (Debian:
//! `python3-venv`) and network access to PyPI; says so when missing.

use std::path::{Path, PathBuf};

use crate::cmd::Cmd;

/// What builds the wheel.
pub const BUILD_PACKAGES: &[&str] = &["maturin==1.16.0"];
/// What the tests need beside the wheel.
pub const TEST_PACKAGES: &[&str] =
    &["pytest==9.2.0", "numpy==2.4.6", "mypy==2.4.1", "tqdm==4.70.1"];

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// A virtualenv at `dir` with `packages`; made anew when `fresh`, else
/// only when missing. Returns its python.
fn venv(dir: &Path, packages: &[&str], fresh: bool) -> Result<PathBuf, String> {
    let python = dir.join("bin").join("python");
    if fresh || !python.exists() {
        if !Cmd::new("python3").args(["-c", "import venv, ensurepip"]).probe() {
            return Err("python3 with the `venv` module is missing: install Python 3.9+ \
                        (Debian: `apt-get install python3 python3-venv`)"
                .to_owned());
        }
        let dir_arg = dir.to_string_lossy().into_owned();
        Cmd::new("python3")
            .args(["-m", "venv", "--clear", dir_arg.as_str()])
            .run()
            .map_err(|e| format!("cannot create the virtualenv {}: {e}", dir.display()))?;
    }
    let python_arg = python.to_string_lossy().into_owned();
    Cmd::new(&python_arg)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(packages.iter().copied())
        .run()
        .map_err(|e| format!("cannot install {packages:?} from PyPI: {e}"))?;
    Ok(python)
}

/// Builds the release wheel of the `shoal` package; returns its path.
pub fn build_wheel(root: &Path) -> Result<PathBuf, String> {
    let target = target_dir(root);
    let python = venv(&target.join("py-build-venv"), BUILD_PACKAGES, false)?;
    let wheels = target.join("wheels");
    if let Ok(entries) = std::fs::read_dir(&wheels) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("shoal-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let maturin = python.with_file_name("maturin").to_string_lossy().into_owned();
    let (py, out) = (python.to_string_lossy().into_owned(), wheels.to_string_lossy().into_owned());
    Cmd::new(&maturin)
        .args(["build", "--release", "--interpreter", py.as_str(), "--out", out.as_str()])
        .dir(&root.join("bindings-python"))
        .run()
        .map_err(|e| e.to_string())?;
    let wheel = std::fs::read_dir(&wheels)
        .map_err(|e| format!("{}: {e}", wheels.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("shoal-")))
        .ok_or_else(|| format!("maturin wrote no shoal wheel into {}", wheels.display()))?;
    Ok(wheel)
}

/// Installs `wheel` into the environment of `python` (replacing an older
/// shoal).
pub fn install_wheel(python: &Path, wheel: &Path) -> Result<(), String> {
    let (py, whl) = (python.to_string_lossy().into_owned(), wheel.to_string_lossy().into_owned());
    Cmd::new(&py)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(["--force-reinstall", whl.as_str()])
        .run()
        .map_err(|e| format!("cannot install the shoal wheel: {e}"))
}

/// Steps 1-4 of the module docs.
pub fn test(root: &Path) -> Result<(), String> {
    let wheel = build_wheel(root)?;
    let python = venv(&target_dir(root).join("py-test-venv"), TEST_PACKAGES, true)?;
    install_wheel(&python, &wheel)?;
    let py = python.to_string_lossy().into_owned();
    // Run outside the source tree so `import shoal` is the installed wheel.
    let tests = root.join("bindings-python").join("tests");
    Cmd::new(&py)
        .args(["-m", "mypy.stubtest", "shoal._shoal"])
        .dir(&tests)
        .run()
        .map_err(|e| format!("the stubs in _shoal.pyi do not match the module: {e}"))?;
    let package = root.join("bindings-python");
    Cmd::new(&py)
        .args(["-m", "mypy", "--config-file", "pyproject.toml", "python/shoal"])
        .dir(&package)
        .run()
        .map_err(|e| format!("the Python sources do not type-check: {e}"))?;
    Cmd::new(&py)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "."])
        .dir(&tests)
        .run()
        .map_err(|e| e.to_string())
}
