//! The threads backend loaded as a plugin from its own cdylib
//! (`libshoal_threads.so`, built by cargo next to this test with feature
//! `plugin-export`), and the loader's errors.

#![cfg(feature = "plugin-export")]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use shoal_core::backend::Backend;
use shoal_core::plugin::{self, Plugin, PluginErrorKind};
use shoal_core::{Message, Pool, TaskOptions, WorkerId, task};

/// The threads backend's cdylib, built with `plugin-export`.
fn plugin_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        shoal_core::testkit::test_plugin(
            env!("CARGO_MANIFEST_DIR"),
            "shoal-threads",
            "shoal_threads",
            "plugin-export",
        )
    })
}

fn plugin_backend() -> Box<dyn Backend> {
    plugin::load_backend(plugin_path()).unwrap_or_else(|e| panic!("{e}"))
}

fn pool(workers: usize) -> Pool {
    Pool::builder().workers(workers).build_boxed(plugin_backend()).unwrap()
}

#[test]
fn map_and_submit() {
    let pool = pool(2);
    assert_eq!(pool.backend_name(), "threads");
    let squares = pool.map(0..10_000u64, |x| x * x).unwrap();
    assert_eq!(squares.len(), 10_000);
    assert!(squares.iter().enumerate().all(|(i, &s)| s == (i as u64) * (i as u64)));
    let h = pool.submit(|| String::from("done")).unwrap();
    assert_eq!(h.wait().unwrap(), "done");
    let unordered: u64 = pool.map_unordered(1..=100u64, |x| x).map(|r| r.unwrap().1).sum();
    assert_eq!(unordered, 5050);
    pool.close();
    pool.join();
}

#[test]
fn a_panic_is_an_error_and_the_pool_goes_on() {
    let pool = pool(2);
    let e =
        pool.submit(|| -> u32 { panic!("boom in a plugin thread") }).unwrap().wait().unwrap_err();
    assert!(e.is_panic(), "{e}");
    assert!(e.to_string().contains("boom in a plugin thread"), "{e}");
    let e = pool.map(0..100u32, |x| if x == 42 { panic!("item {x}") } else { x }).unwrap_err();
    assert_eq!(e.index(), Some(42));
    assert!(e.task_error().is_some_and(|t| t.is_panic()), "{e}");
    assert_eq!(pool.submit(|| 7).unwrap().wait().unwrap(), 7);
}

#[test]
fn timeout_detaches_the_worker() {
    let pool = pool(2);
    let options = TaskOptions { timeout: Some(Duration::from_millis(50)), retries: 0 };
    let h = pool
        .submit_with(options, || {
            std::thread::sleep(Duration::from_secs(1));
            1
        })
        .unwrap();
    let e = h.wait().unwrap_err();
    assert!(e.is_timeout(), "{e}");
    // The detached worker is replaced; the pool keeps both slots.
    assert_eq!(pool.map(0..20u32, |x| x + 1).unwrap().len(), 20);
}

#[derive(Debug)]
struct Counter {
    worker: WorkerId,
    tasks: u64,
}

#[test]
fn worker_init_state_and_worker_id_in_tasks() {
    let exits = Arc::new(AtomicUsize::new(0));
    let exit_count = exits.clone();
    let pool = Pool::builder()
        .workers(2)
        .worker_init(|w| {
            assert_eq!(task::worker_id(), Some(w), "worker_id inside worker_init");
            Ok(Counter { worker: w, tasks: 0 })
        })
        .worker_exit(move |w, state: Option<Counter>| {
            let state = state.expect("the state made by worker_init");
            assert_eq!(state.worker, w);
            exit_count.fetch_add(1, Ordering::SeqCst);
        })
        .build_boxed(plugin_backend())
        .unwrap();
    let seen = pool
        .map(0..200u32, |_| {
            let w = task::worker_id().expect("worker_id inside a task");
            let state = task::with_state(|c: &mut Counter| {
                c.tasks += 1;
                c.worker
            });
            assert_eq!(state, Some(w), "with_state reaches the worker's own state");
            assert!(task::task_id().is_some());
            w
        })
        .unwrap();
    assert!(!seen.is_empty());
    // Outside a task the host's thread-locals are untouched.
    assert_eq!(task::worker_id(), None);
    pool.close();
    pool.join();
    drop(pool);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while exits.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(exits.load(Ordering::SeqCst), 2, "worker_exit ran in both workers");
}

#[test]
fn worker_init_errors_keep_their_message() {
    let pool = Pool::builder()
        .workers(1)
        .max_start_failures(1)
        .worker_init(|_| -> Result<(), String> { Err("no database".into()) })
        .build_boxed(plugin_backend())
        .unwrap();
    let e = pool.submit(|| 1).unwrap().wait().unwrap_err();
    assert!(e.is_broken(), "{e}");
    let text = e.to_string();
    assert!(text.contains("worker_init failed: no database"), "{text}");
    assert!(!text.contains("worker_init failed: worker_init failed"), "{text}");

    let pool = Pool::builder()
        .workers(1)
        .max_start_failures(1)
        .worker_init(|_| -> Result<(), String> { panic!("init exploded") })
        .build_boxed(plugin_backend())
        .unwrap();
    let e = pool.submit(|| 1).unwrap().wait().unwrap_err();
    assert!(e.to_string().contains("worker_init panicked: init exploded"), "{e}");
}

#[test]
fn progress_log_and_data_reach_the_handle() {
    let pool = pool(1);
    let h = pool
        .submit(|| {
            task::progress(0.25);
            task::log("half way");
            task::data(vec![1u8, 2, 3]);
            task::progress(1.0);
            "ok"
        })
        .unwrap();
    let messages: Vec<Message<&str>> = h.messages().collect();
    assert!(matches!(messages.first(), Some(Message::Scheduled)), "{messages:?}");
    assert!(matches!(messages.get(1), Some(Message::Started(_))), "{messages:?}");
    assert_eq!(
        &messages[2..],
        &[
            Message::Progress(0.25),
            Message::Log("half way".into()),
            Message::Data(vec![1, 2, 3]),
            Message::Progress(1.0),
            Message::Done("ok"),
        ],
        "{messages:?}"
    );
}

#[test]
fn options_string() {
    let backend = plugin::load_backend_with(plugin_path(), "thread_name=plugged, pin_cores=false")
        .unwrap_or_else(|e| panic!("{e}"));
    let pool = Pool::builder().workers(1).build_boxed(backend).unwrap();
    // The plugin's copy of std named the thread; the host's std does not
    // know that name, the OS does.
    #[cfg(target_os = "linux")]
    {
        let name = pool.submit(|| std::fs::read_to_string("/proc/thread-self/comm")).unwrap();
        let name = name.wait().unwrap().unwrap();
        assert!(name.starts_with("plugged-"), "{name}");
    }
    assert_eq!(pool.submit(|| 5).unwrap().wait().unwrap(), 5);

    let e = plugin::load_backend_with(plugin_path(), "colour=blue").err().expect("an error");
    assert_eq!(e.kind(), PluginErrorKind::Init);
    assert!(e.to_string().contains("unknown option `colour`"), "{e}");
    assert!(e.to_string().contains(&plugin_path().display().to_string()), "{e}");
}

#[test]
fn several_backends_from_one_plugin() {
    let plugin = Plugin::load(plugin_path()).unwrap();
    assert_eq!(plugin.core_version(), env!("CARGO_PKG_VERSION"));
    let a = Pool::builder().workers(1).build_boxed(plugin.backend().unwrap()).unwrap();
    let b = Pool::builder()
        .workers(1)
        .build_boxed(plugin::load_backend(plugin_path()).unwrap())
        .unwrap();
    let ha = a.submit(|| 1).unwrap();
    let hb = b.submit(|| 2).unwrap();
    assert_eq!(ha.wait().unwrap() + hb.wait().unwrap(), 3);
}

#[test]
fn a_missing_file_is_not_found() {
    let path = std::env::temp_dir().join("shoal-no-such-plugin.so");
    let e = plugin::load_backend(&path).err().expect("an error");
    assert_eq!(e.kind(), PluginErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("shoal-no-such-plugin.so"), "{e}");
}

#[test]
fn a_file_that_is_not_a_library_is_not_a_plugin() {
    let path = std::env::temp_dir().join(format!("shoal-not-a-library-{}.so", std::process::id()));
    std::fs::write(&path, "this is not a shared library\n").unwrap();
    let e = plugin::load_backend(&path).err().expect("an error");
    let _ = std::fs::remove_file(&path);
    assert_eq!(e.kind(), PluginErrorKind::NotAPlugin, "{e}");
    assert!(e.to_string().contains("not a shared library"), "{e}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");

    let e = plugin::load_backend(&std::env::temp_dir()).err().expect("an error");
    assert_eq!(e.kind(), PluginErrorKind::NotAPlugin, "{e}");
}

#[test]
fn a_library_that_is_not_a_shoal_plugin() {
    let candidates = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/aarch64-linux-gnu/libc.so.6",
        "/usr/lib/aarch64-linux-gnu/libc.so.6",
        "/lib64/libc.so.6",
        "/usr/lib64/libc.so.6",
        "/usr/lib/libc.so.6",
        "/usr/lib/libSystem.B.dylib",
    ];
    let Some(libc) = candidates.iter().map(Path::new).find(|p| p.exists()) else {
        eprintln!("no libc found at a known path; skipped");
        return;
    };
    let e = plugin::load_backend(libc).err().expect("an error");
    assert_eq!(e.kind(), PluginErrorKind::NotAPlugin, "{e}");
    assert!(e.to_string().contains("not a shoal plugin"), "{e}");
    assert!(e.to_string().contains(&libc.display().to_string()), "{e}");
}

/// The whole conformance suite on the plugin-loaded threads backend.
fn make_plugin_backend() -> Box<dyn Backend> {
    plugin_backend()
}

shoal_core::conformance_tests!(make_plugin_backend);
