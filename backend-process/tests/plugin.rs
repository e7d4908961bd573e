//! The process backend loaded as a plugin from its own cdylib
//! (`libshoal_process.so`, built by cargo next to this test with feature
//! `plugin-export`): the named-function conformance checks and a crash.

#![cfg(all(feature = "plugin-export", feature = "testkit"))]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use shoal_core::backend::Backend;
use shoal_core::error::ExitCause;
use shoal_core::plugin::Plugin;

const WORKER: &str = env!("CARGO_BIN_EXE_shoal-testkit-worker");

/// The cdylib cargo built with this test (`target/<profile>/deps/`), or, if
/// that is not a plugin, one built into `target/plugin-test` (this test's
/// cargo holds the lock of its own target directory).
fn plugin() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let deps = exe.parent().unwrap();
        let name = format!(
            "{}shoal_process{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        );
        for candidate in [deps.join(&name), deps.parent().unwrap().join(&name)] {
            if let Ok(p) = Plugin::load(&candidate) {
                return p;
            }
        }
        let target: PathBuf = deps.parent().unwrap().parent().unwrap().join("plugin-test");
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "shoal-process",
                "--features",
                "plugin-export,testkit",
            ])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .status()
            .expect("run cargo");
        assert!(status.success(), "cargo build of the plugin failed");
        Plugin::load(&target.join("debug").join(&name)).expect("the built plugin loads")
    })
}

fn make() -> Box<dyn Backend> {
    plugin().backend_with(&format!("program={WORKER},grace_ms=200")).expect("backend")
}

shoal_core::conformance_tests!(make, functions_only);

#[test]
fn a_crash_under_the_plugin_is_worker_lost() {
    let pool = shoal_core::Pool::builder().workers(1).build_boxed(make()).unwrap();
    let e = pool.submit_fn(&shoal_process::testkit::EXIT, 4).unwrap().wait().unwrap_err();
    match e.kind() {
        shoal_core::TaskErrorKind::WorkerLost { cause, pid, .. } => {
            assert_eq!(*cause, ExitCause::Code(4));
            assert!(pid.is_some());
        }
        other => panic!("expected WorkerLost, got {other:?}"),
    }
    let sq = pool.submit_fn(&shoal_core::testkit::SQUARE, 7).unwrap().wait().unwrap();
    assert_eq!(sq, 49);
}

#[test]
fn bad_options_name_the_option() {
    let e = plugin().backend_with("grace_ms=later").err().expect("refused");
    assert!(e.to_string().contains("grace_ms"), "{e}");
}
