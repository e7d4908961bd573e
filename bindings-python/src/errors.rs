//! Rust errors as the Python exceptions of `shoal._errors`.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use shoal_core::error::{BatchError, TaskError, TaskErrorKind};

/// An instance of `shoal._errors.<class>` with `message`.
fn shoal_exception(py: Python<'_>, class: &str, message: String) -> PyErr {
    let made = py
        .import("shoal._errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.call1((message.clone(),)));
    match made {
        Ok(e) => PyErr::from_value(e),
        Err(_) => PyRuntimeError::new_err(message),
    }
}

/// The exception a task's error raises in the caller.
pub(crate) fn task_error(py: Python<'_>, e: &TaskError) -> PyErr {
    let (class, message) = match e.kind() {
        TaskErrorKind::Panic { message, .. } => ("TaskError", message.clone()),
        TaskErrorKind::Timeout { after } => {
            ("TaskTimeoutError", format!("the task ran longer than its timeout of {after:?}"))
        }
        TaskErrorKind::WorkerLost { worker, pid, cause } => (
            "WorkerLostError",
            match pid {
                Some(pid) => format!("worker {} (pid {pid}) died with the task: {cause}", worker.0),
                None => format!("worker {} died with the task: {cause}", worker.0),
            },
        ),
        TaskErrorKind::Cancelled => ("CancelledError", "the task was cancelled".to_string()),
        TaskErrorKind::Serialization { message } => ("SerializationError", message.clone()),
        TaskErrorKind::Broken { message } => {
            ("BrokenPoolError", format!("the pool cannot start workers: {message}"))
        }
        _ => ("TaskError", e.to_string()),
    };
    shoal_exception(py, class, message)
}

/// The exception a batch's error raises.
pub(crate) fn batch_error(py: Python<'_>, e: &BatchError) -> PyErr {
    match e {
        BatchError::Failed { error, .. } => task_error(py, error),
        BatchError::InvalidOption(b) => PyValueError::new_err(b.to_string()),
        BatchError::Closed => PyValueError::new_err("Pool not running"),
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

/// A Python exception as one line of text (type: message).
pub(crate) fn describe(py: Python<'_>, e: &PyErr) -> String {
    let name = e.get_type(py).name().map(|n| n.to_string()).unwrap_or_else(|_| "Exception".into());
    format!("{name}: {}", e.value(py))
}
