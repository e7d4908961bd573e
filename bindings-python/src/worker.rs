//! Worker processes: a Python interpreter started by the process backend
//! runs `shoal._worker`, which calls [`worker_main`]. That is the Rust
//! worker loop of `shoal-process` (handshake, frames, shared memory, crash
//! semantics), with one function, [`crate::chunk::PY_FUNCTION`], that hands
//! each chunk to `shoal._codec.run_chunk` under the interpreter lock, and
//! its variant for `map` chunks, [`crate::chunk::PY_MAP_FUNCTION`], which
//! sends the chunk's header back in front of the results.

use pyo3::exceptions::{PyException, PyRuntimeError, PySystemExit};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use std::sync::Arc;

use shoal_core::WorkerId;
use shoal_core::backend::WorkerState;
use shoal_core::function::{NamedFunction, Registry};
use shoal_process::WorkerHooks;

use crate::chunk::{CALL, MAP_HEADER, MAP_RESULTS_HEADER, PY_FUNCTION, PY_MAP_FUNCTION, with_view};
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
                let chunk = packed::PackedChunk::parse(arguments)?;
                if chunk.mode == CALL {
                    run_calls(&codec, &chunk)?
                } else {
                    let (function, mode, items) = packed::unpack_chunk(py, arguments)?;
                    codec.getattr("run_loaded")?.call1((function, mode, items))?
                }
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

/// Runs a packed chunk of `f(x)` calls in a loop here: each item made into
/// an object just before its call and freed after it, each result packed
/// and freed at once, so that no list of items or results is made and the
/// same few objects' memory serves every item (py-W1's workers spent ~85
/// ns per item in `shoal._codec.run_loaded`'s unpack, `map` and pack, ~56
/// of them in the calls themselves). The first call that raises or
/// returns a result that does not pack hands the rest of the chunk to
/// `shoal._codec.finish_loaded`, which runs it as `run_loaded` would have.
/// Returns `(bytes, first failure)` as `run_loaded` does.
fn run_calls<'py>(
    codec: &Bound<'py, PyModule>,
    chunk: &packed::PackedChunk<'_>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = codec.py();
    let func = codec.getattr("load_function")?.call1((PyBytes::new(py, chunk.function),))?;
    let n = chunk.len();
    let mut packer = packed::Packer::new(n);
    for i in 0..n {
        // SAFETY: a new reference or null with the error set.
        let x = unsafe { Bound::from_owned_ptr_or_err(py, chunk.object(i)) }?;
        // SAFETY: `func` and `x` are live; the result is a new reference
        // or null with the error set.
        let r = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyObject_CallOneArg(func.as_ptr(), x.as_ptr()))
        };
        drop(x);
        let (results, failed) = match r {
            Ok(r) if packer.push(r.as_ptr()) => continue,
            Ok(r) => {
                let results = packer.list(py)?;
                results.append(r)?;
                (results, PyList::empty(py))
            }
            // Not an `Exception` (KeyboardInterrupt, SystemExit): the
            // chunk fails, as in `run_items`.
            Err(e) if !e.is_instance_of::<PyException>(py) => return Err(e),
            Err(e) => {
                let results = packer.list(py)?;
                // With its traceback, which `finish` formats.
                results.append(codec.getattr("Failure")?.call1((e.into_value(py),))?)?;
                (results, PyList::new(py, [i])?)
            }
        };
        let rest = chunk.list(py, i + 1..n)?;
        return codec.getattr("finish_loaded")?.call1((func, results, failed, rest));
    }
    // Every result packed (fewer than a packed list's minimum: pickled).
    match packer.bytes().filter(|_| n >= packed::MIN_ITEMS) {
        Some(bytes) => {
            codec.getattr("flush_output")?.call0()?;
            (PyBytes::new(py, bytes), -1i64).into_pyobject(py).map(Bound::into_any)
        }
        None => codec.getattr("finish")?.call1((packer.list(py)?, PyList::empty(py))),
    }
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
