//! The standalone worker `shoal-worker --library PATH`: task functions come
//! from a shared library (here this crate's own cdylib, which exports the
//! testkit's functions with `export_functions!`). Runs the named-function
//! conformance checks on it.

use std::path::PathBuf;
use std::sync::OnceLock;

use shoal_core::backend::Backend;
use shoal_process::Process;

/// This crate's cdylib, built with the testkit's exports. `cargo test` does
/// not build cdylibs, and it holds the lock of its target directory while
/// tests run, so the library is built (once per run, incrementally) in
/// `target/fixtures`.
fn library() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        // target/debug/deps/library-HASH -> target/
        let exe = std::env::current_exe().unwrap();
        let target = exe.parent().unwrap().parent().unwrap().parent().unwrap();
        let fixtures = target.join("fixtures");
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "shoal-process", "--features", "testkit", "--lib"])
            .env("CARGO_TARGET_DIR", &fixtures)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the fixture library failed");
        fixtures.join("debug").join("libshoal_process.so")
    })
    .clone()
}

fn make() -> Box<dyn Backend> {
    Box::new(
        Process::new().program(env!("CARGO_BIN_EXE_shoal-worker")).arg("--library").arg(library()),
    )
}

shoal_core::conformance_tests!(make, functions_only);

#[test]
fn unknown_function_is_a_clear_error() {
    static NOT_EXPORTED: shoal_core::function::Function<u8, u8> =
        shoal_core::function::Function::new("not.exported", |x| x);
    let pool = shoal_core::Pool::builder().workers(1).build_boxed(make()).unwrap();
    let e = pool.submit_fn(&NOT_EXPORTED, 1).unwrap().wait().unwrap_err();
    assert!(e.is_serialization() && e.to_string().contains("not.exported"), "{e}");
}

#[test]
fn missing_library_fails_the_start() {
    let backend = Process::new()
        .program(env!("CARGO_BIN_EXE_shoal-worker"))
        .arg("--library")
        .arg("/nonexistent/libnothing.so");
    let pool = shoal_core::Pool::builder().workers(1).build(backend).unwrap();
    let e = pool.submit_fn(&shoal_core::testkit::SQUARE, 2).unwrap().wait().unwrap_err();
    assert!(e.is_broken(), "{e}");
}
