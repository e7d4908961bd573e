//! Worker processes: a Python interpreter started by the process backend
//! runs `shoal._worker`, which calls [`worker_main`]. That is the Rust
//! worker loop of `shoal-process` (handshake, frames, shared memory, crash
//! semantics), with one function, [`crate::chunk::PY_FUNCTION`], that hands
//! each chunk to `shoal._codec.run_chunk` under the interpreter lock, and
//! its variant for `map` chunks, [`crate::chunk::PY_MAP_FUNCTION`], which
//! sends the chunk's header back in front of the results.

use pyo3::exceptions::{PyRuntimeError, PySystemExit};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::sync::Arc;

use shoal_core::WorkerId;
use shoal_core::backend::WorkerState;
use shoal_core::function::{NamedFunction, Registry};
use shoal_process::WorkerHooks;

use crate::chunk::{MAP_HEADER, MAP_RESULTS_HEADER, PY_FUNCTION, PY_MAP_FUNCTION, with_view};
use crate::errors::describe;
use crate::packed;

struct PythonChunks;

impl NamedFunction for PythonChunks {
    fn name(&self) -> &'static str {
        PY_FUNCTION
    }

    fn call_chunk(&self, arguments: &[u8]) -> Result<Vec<u8>, String> {
        run_chunk(arguments, None)
    }
}

/// `map` chunks: a [`PythonChunks`] chunk behind a header, sent back
/// with the offset of the chunk's first failure (see [`MAP_RESULTS_HEADER`]).
struct PythonMapChunks;

impl NamedFunction for PythonMapChunks {
    fn name(&self) -> &'static str {
        PY_MAP_FUNCTION
    }

    fn call_chunk(&self, arguments: &[u8]) -> Result<Vec<u8>, String> {
        if arguments.len() < MAP_HEADER {
            return Err("a map chunk lacks its header".to_string());
        }
        let (header, chunk) = arguments.split_at(MAP_HEADER);
        run_chunk(chunk, Some(header))
    }
}

/// Runs one pickled chunk. With a map chunk's `header`, the results'
/// bytes follow it and the offset of the first failure
/// (`MAP_RESULTS_HEADER`, `u64::MAX` for none).
fn run_chunk(arguments: &[u8], header: Option<&[u8]>) -> Result<Vec<u8>, String> {
    Python::attach(|py| {
        let run = || -> PyResult<Vec<u8>> {
            let codec = py.import("shoal._codec")?;
            let out = if packed::is_packed_chunk(arguments) {
                let (function, mode, items) = packed::unpack_chunk(py, arguments)?;
                codec.getattr("run_loaded")?.call1((function, mode, items))?
            } else {
                let run_chunk = codec.getattr("run_chunk")?;
                with_view(py, arguments, |v| run_chunk.call1((v,)))?
            };
            let (out, first_bad): (Bound<'_, PyBytes>, i64) = out.extract()?;
            let out = out.as_bytes();
            let Some(header) = header else { return Ok(out.to_vec()) };
            let first_bad = u64::try_from(first_bad).unwrap_or(u64::MAX);
            let mut bytes = Vec::with_capacity(MAP_RESULTS_HEADER + out.len());
            bytes.extend_from_slice(header);
            bytes.extend_from_slice(&first_bad.to_le_bytes());
            bytes.extend_from_slice(out);
            Ok(bytes)
        };
        run().map_err(|e| {
            // A task called sys.exit(): the worker exits, as it would
            // in multiprocessing; the parent sees the worker lost.
            if e.is_instance_of::<PySystemExit>(py) {
                let code = e.value(py).getattr("code").ok().and_then(|c| c.extract::<i32>().ok());
                std::process::exit(code.unwrap_or(1));
            }
            describe(py, &e)
        })
    })
}

static PYTHON_CHUNKS: PythonChunks = PythonChunks;
static PYTHON_MAP_CHUNKS: PythonMapChunks = PythonMapChunks;

/// Runs this process as a shoal worker and exits when the pool lets it go.
/// `init(worker_id)` runs before the first task (an exception is the
/// worker's start failure) and `exit(worker_id)` after the last. Raises
/// `RuntimeError` in a process that no shoal pool started.
#[pyfunction]
#[pyo3(signature = (init=None, exit=None))]
pub(crate) fn worker_main(
    py: Python<'_>,
    init: Option<Py<PyAny>>,
    exit: Option<Py<PyAny>>,
) -> PyResult<()> {
    let registry = Registry::new()
        .with(&PYTHON_CHUNKS)
        .and_then(|r| r.with(&PYTHON_MAP_CHUNKS))
        .map_err(PyRuntimeError::new_err)?;
    let mut hooks = WorkerHooks::default();
    if let Some(init) = init {
        hooks.init = Some(Arc::new(move |w: WorkerId| {
            Python::attach(|py| match init.call1(py, (w.0,)) {
                Ok(_) => Ok(Box::new(()) as WorkerState),
                Err(e) => Err(describe(py, &e)),
            })
        }));
    }
    if let Some(exit) = exit {
        hooks.exit = Some(Arc::new(move |w: WorkerId, _| {
            Python::attach(|py| {
                if let Err(e) = exit.call1(py, (w.0,)) {
                    e.print(py);
                }
            })
        }));
    }
    py.detach(|| shoal_process::worker_main_with(&registry, hooks));
    Err(PyRuntimeError::new_err("shoal worker_main: this process was not started by a shoal pool"))
}
