//! Finding a backend's plugin library from that backend's own tests.

use std::path::{Path, PathBuf};

use crate::plugin::Plugin;

/// The cdylib `lib<name>.so` of the package under test, built with the
/// features that export its plugin. `cargo test` builds a package's cdylib
/// with the test's features into `target/<profile>/deps/` but copies it up
/// to `target/<profile>/` only on `cargo build`; if neither file is a
/// loadable plugin (say, built without the export feature), the library is
/// built into `target/plugin-test` (the test's cargo holds the lock of its
/// own target directory).
///
/// `manifest_dir` is the package's `CARGO_MANIFEST_DIR`, `package` its
/// name, `lib` its library name (`shoal_threads`), `features` the cargo
/// features to build it with.
pub fn test_plugin(manifest_dir: &str, package: &str, lib: &str, features: &str) -> PathBuf {
    let file = format!("{}{lib}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let profile = deps.parent().expect("target/<profile>");
    for candidate in [deps.join(&file), profile.join(&file)] {
        if Plugin::load(&candidate).is_ok() {
            return candidate;
        }
    }
    let target = profile.parent().expect("target").join("plugin-test");
    let status = std::process::Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()))
        .args(["build", "--quiet", "-p", package, "--features", features, "--manifest-path"])
        .arg(Path::new(manifest_dir).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("run cargo");
    assert!(status.success(), "cargo build of the {package} plugin failed");
    target.join("debug").join(file)
}
