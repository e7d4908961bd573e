//! The process backend loaded as a plugin from its own cdylib
//! (`libshoal_process.so`, built by cargo next to this test with feature
//! `plugin-export`): the named-function conformance checks and a crash.

#![cfg(all(feature = "plugin-export", feature = "testkit"))]

use std::sync::OnceLock;

use shoal_core::backend::Backend;
use shoal_core::error::ExitCause;
use shoal_core::plugin::Plugin;

const WORKER: &str = env!("CARGO_BIN_EXE_shoal-testkit-worker");

/// The process backend's cdylib, built with `plugin-export`.
fn plugin() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        let path = shoal_core::testkit::test_plugin(
            env!("CARGO_MANIFEST_DIR"),
            "shoal-process",
            "shoal_process",
            "plugin-export,testkit",
        );
        Plugin::load(&path).expect("the plugin loads")
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
