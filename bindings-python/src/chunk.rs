//! How a chunk of Python items runs on each backend.
//!
//! Both backends run a chunk with `shoal._codec.run_items(func, mode,
//! items)`, which turns each item's exception into a `Failure` value, so a
//! chunk's results are plain Python objects, one per item.
//! - threads: [`LocalRun`] takes the interpreter lock once per chunk and
//!   calls `run_items` on the worker thread;
//! - process: [`codec`] pickles the chunk in the parent
//!   (`encode_chunk`), the worker runs it (`run_chunk`, see
//!   [`crate::worker`]) and the parent unpickles the results
//!   (`decode_results`).

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use shoal_core::error::TaskError;
use shoal_core::{ChunkFn, Codec};

use crate::errors::describe;

/// The name under which worker processes run Python chunks.
pub(crate) const PY_FUNCTION: &str = "shoal.python.chunk";

/// The call mode of single calls: each item is `(func, args, kwargs)`
/// (`shoal._codec.EACH`).
pub(crate) const EACH: u8 = 3;

/// A Python object the core carries around (items and results).
pub(crate) type Obj = Py<PyAny>;

/// `shoal._codec.<name>`.
fn codec_fn(py: Python<'_>, name: &str) -> PyResult<Obj> {
    Ok(py.import("shoal._codec")?.getattr(name)?.unbind())
}

/// Runs chunks on in-process worker threads.
pub(crate) struct LocalRun {
    func: Obj,
    mode: u8,
    run_items: Obj,
}

impl LocalRun {
    pub(crate) fn new(py: Python<'_>, func: Obj, mode: u8) -> PyResult<Self> {
        Ok(LocalRun { func, mode, run_items: codec_fn(py, "run_items")? })
    }
}

impl ChunkFn<Obj, Obj> for LocalRun {
    fn run_chunk(
        &self,
        items: Vec<Obj>,
        values: &mut Vec<Obj>,
        errors: &mut Vec<(usize, TaskError)>,
    ) {
        let n = items.len();
        Python::attach(|py| {
            let run = || -> PyResult<Vec<Obj>> {
                let list = PyList::new(py, items)?;
                let out = self.run_items.call1(py, (self.func.clone_ref(py), self.mode, list))?;
                let out = out.bind(py).cast::<PyList>()?.clone();
                Ok(out.iter().map(Bound::unbind).collect())
            };
            match run() {
                Ok(out) if out.len() == n => values.extend(out),
                Ok(out) => {
                    let message = format!("run_items returned {} results for {n} items", out.len());
                    errors.extend((0..n).map(|i| (i, TaskError::panic(message.clone()))));
                }
                // Only BaseExceptions that are not Exceptions get here
                // (KeyboardInterrupt, SystemExit): they fail the chunk.
                Err(e) => {
                    let message = describe(py, &e);
                    errors.extend((0..n).map(|i| (i, TaskError::panic(message.clone()))));
                }
            }
        });
    }
}

/// Carries chunks to worker processes as pickles.
pub(crate) fn codec(py: Python<'_>, function: Py<PyBytes>, mode: u8) -> PyResult<Codec<Obj, Obj>> {
    let encode_chunk = codec_fn(py, "encode_chunk")?;
    let decode_results = codec_fn(py, "decode_results")?;
    Ok(Codec::new(
        PY_FUNCTION,
        move |items: &[Obj]| {
            Python::attach(|py| {
                let encode = || -> PyResult<Vec<u8>> {
                    let list = PyList::new(py, items.iter().map(|x| x.bind(py)))?;
                    let bytes = encode_chunk.call1(py, (function.clone_ref(py), mode, list))?;
                    Ok(bytes.bind(py).cast::<PyBytes>()?.as_bytes().to_vec())
                };
                encode().map_err(|e| plain_message(py, &e))
            })
        },
        move |bytes: &[u8]| {
            Python::attach(|py| {
                let decode = || -> PyResult<Vec<Result<Obj, String>>> {
                    let out = decode_results.call1(py, (PyBytes::new(py, bytes),))?;
                    let out = out.bind(py).cast::<PyList>()?.clone();
                    Ok(out.iter().map(|x| Ok(x.unbind())).collect())
                };
                decode().map_err(|e| plain_message(py, &e))
            })
        },
    ))
}

/// The message of a `SerializationError` as is, of others with their type.
fn plain_message(py: Python<'_>, e: &PyErr) -> String {
    let is_ours = e.get_type(py).name().is_ok_and(|n| n == "SerializationError");
    if is_ours { e.value(py).to_string() } else { describe(py, e) }
}
