//! Conversions across the boundary and the loader's checks that need no
//! plugin (the plugin itself is tested in backend-threads/tests/plugin.rs).

use std::path::Path;
use std::time::Duration;

use abi_stable::library::LibraryError;
use abi_stable::sabi_types::VersionNumber;

use super::PluginErrorKind;
use super::ffi::{FfiReport, FfiTaskError, FfiTaskMessage};
use super::load::library_error;
use crate::backend::{TaskMessage, WorkerReport};
use crate::error::{ExitCause, TaskError, TaskErrorKind};
use crate::ids::{TaskId, WorkerId};

fn round_trip(e: TaskError) -> TaskError {
    TaskError::from(FfiTaskError::from(e))
}

#[test]
fn task_errors_survive_the_boundary() {
    let errors = [
        TaskError::panic("boom").with_attempts(3),
        TaskError::new(TaskErrorKind::Panic {
            message: "raised".into(),
            traceback: Some("line 1\nline 2".into()),
        }),
        TaskError::timeout(Duration::from_millis(1500)),
        TaskError::worker_lost(WorkerId(7), Some(42), ExitCause::Signal(9)),
        TaskError::worker_lost(WorkerId(8), None, ExitCause::Vanished("gone".into())),
        TaskError::worker_lost(WorkerId(9), None, ExitCause::Protocol("bad frame".into())),
        TaskError::cancelled(),
        TaskError::serialization("bad bytes"),
        TaskError::broken("no workers"),
    ];
    for e in errors {
        assert_eq!(round_trip(e.clone()), e);
    }
}

#[test]
fn reports_and_messages_survive_the_boundary() {
    let reports = [
        WorkerReport::Ready(WorkerId(1)),
        WorkerReport::StartFailed(WorkerId(2), "worker_init failed: x".into()),
        WorkerReport::Returned(WorkerId(3), TaskId(4)),
        WorkerReport::Done(WorkerId(3), TaskId(4)),
        WorkerReport::Failed(WorkerId(5), TaskId(6), TaskError::panic("p")),
        WorkerReport::Exited { worker: WorkerId(7), pid: Some(99), cause: ExitCause::Code(3) },
        WorkerReport::Exited { worker: WorkerId(8), pid: None, cause: ExitCause::Detached },
    ];
    for r in reports {
        let text = format!("{r:?}");
        assert_eq!(format!("{:?}", WorkerReport::from(FfiReport::from(r))), text);
    }
    let messages =
        [TaskMessage::Progress(0.5), TaskMessage::Log("hi".into()), TaskMessage::Data(vec![1, 2])];
    for m in messages {
        assert_eq!(TaskMessage::from(FfiTaskMessage::from(m.clone())), m);
    }
}

#[test]
fn version_mismatch_names_both_versions() {
    let e = library_error(
        Path::new("/plugins/libold.so"),
        LibraryError::IncompatibleVersionNumber {
            library_name: "shoal_plugin",
            expected_version: VersionNumber { major: 0, minor: 2, patch: 0 },
            actual_version: VersionNumber { major: 0, minor: 1, patch: 5 },
        },
        Some("0.1.5"),
    );
    assert_eq!(e.kind(), PluginErrorKind::Incompatible);
    let text = e.to_string();
    assert!(text.contains("/plugins/libold.so"), "{text}");
    assert!(text.contains("0.1.5") && text.contains("0.2.0"), "{text}");
}

#[test]
fn loader_errors_without_a_plugin() {
    let e = super::load_backend(Path::new("/no/such/dir/libnothing.so")).err().unwrap();
    assert_eq!(e.kind(), PluginErrorKind::NotFound);
    assert!(e.to_string().contains("/no/such/dir/libnothing.so"), "{e}");

    let dir = std::env::temp_dir();
    let e = super::load_backend(&dir).err().unwrap();
    assert_eq!(e.kind(), PluginErrorKind::NotAPlugin, "{e}");

    let file = dir.join(format!("shoal-plugin-unit-{}.so", std::process::id()));
    std::fs::write(&file, b"\x7fELF but truncated").unwrap();
    let e = super::load_backend(&file).err().unwrap();
    let _ = std::fs::remove_file(&file);
    // An ELF header the loader refuses: a load error, not "not a library".
    assert_eq!(e.kind(), PluginErrorKind::Load, "{e}");

    let file = dir.join(format!("shoal-plugin-unit-{}.txt", std::process::id()));
    std::fs::write(&file, b"hi").unwrap();
    let e = super::load_backend(&file).err().unwrap();
    let _ = std::fs::remove_file(&file);
    assert_eq!(e.kind(), PluginErrorKind::NotAPlugin, "{e}");
}
