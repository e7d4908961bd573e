//! `shoal._shoal`: the Rust side of the `shoal` Python package.
//!
//! The Python layer (`bindings-python/python/shoal`) gives users the
//! `multiprocessing.Pool` and `concurrent.futures` API; this module gives it
//! the Rust core underneath:
//! - [`pool::Core`]: one `shoal_core::Pool` on the threads or process
//!   backend; [`batch::Batch`], the iterator over one batch's results
//!   ([`iternext`]: its iterator slot, fast for ready values);
//! - [`chunk`]: how a chunk of Python items runs (threads: a direct call
//!   under the interpreter lock, once per chunk) or travels (process:
//!   pickled by `shoal._codec`);
//! - [`worker`]: the entry point of worker processes, which run the Rust
//!   worker loop of `shoal-process` and call back into Python per chunk;
//! - [`packed`]: lists of plain numbers cross to worker processes as
//!   arrays of 8-byte values instead of pickles;
//! - the in-task calls `progress`, `log`, `worker_id`; [`message`] names
//!   the item of a chunk that sent a message.
//!
//! The interpreter lock is released whenever Rust waits (for results, for
//! workers to exit), so other Python threads keep running.

mod batch;
mod chunk;
mod errors;
mod forkserver;
mod interrupt;
mod iternext;
mod message;
mod packed;
mod pool;
mod quiesce;
mod store;
mod worker;

use pyo3::prelude::*;

/// Reports the running task's progress, a fraction in [0, 1].
#[pyfunction]
fn progress(fraction: f32) -> PyResult<()> {
    if !(0.0..=1.0).contains(&fraction) {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "progress: fraction must be in [0, 1] (got {fraction})"
        )));
    }
    message::send(shoal_core::backend::TaskMessage::Progress(fraction));
    Ok(())
}

/// Sends a line of text to the running task's message stream.
#[pyfunction]
fn log(text: String) {
    message::send(shoal_core::backend::TaskMessage::Log(text));
}

/// The id of the worker running the current task, or `None` outside a task.
#[pyfunction]
fn worker_id() -> Option<u64> {
    shoal_core::task::worker_id().map(|w| w.0)
}

#[pymodule]
fn _shoal(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<pool::Core>()?;
    m.add_class::<batch::Batch>()?;
    iternext::install(&m.py().get_type::<batch::Batch>())?;
    m.add_class::<batch::Stream>()?;
    m.add_function(wrap_pyfunction!(progress, m)?)?;
    m.add_function(wrap_pyfunction!(log, m)?)?;
    m.add_function(wrap_pyfunction!(worker_id, m)?)?;
    m.add_function(wrap_pyfunction!(message::running_item, m)?)?;
    m.add_function(wrap_pyfunction!(worker::worker_main, m)?)?;
    m.add_class::<forkserver::ForkedServer>()?;
    m.add_class::<chunk::Pending>()?;
    m.add_function(wrap_pyfunction!(quiesce::quiesce, m)?)?;
    m.add_function(wrap_pyfunction!(forkserver::fork_sibling, m)?)?;
    m.add_function(wrap_pyfunction!(forkserver::become_worker, m)?)?;
    m.add_function(wrap_pyfunction!(forkserver::die_with_parent, m)?)?;
    m.add_function(wrap_pyfunction!(forkserver::forkserver_preload, m)?)?;
    m.add("WORKER_FUNCTION", chunk::PY_FUNCTION)?;
    m.add("ITEM_MESSAGES", message::ITEM_MESSAGES)?;
    m.add_function(wrap_pyfunction!(packed::py_pack, m)?)?;
    m.add_function(wrap_pyfunction!(packed::py_unpack, m)?)?;
    Ok(())
}
