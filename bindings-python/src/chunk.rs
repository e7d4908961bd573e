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

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// An item of a batch's input: a Python object that the process codec
/// moves into the chunk it pickles (see [`Item::take`]).
///
/// The core drops a chunk's items after encoding it, on its own thread,
/// without the interpreter lock: a `Py` dropped there is queued in pyo3's
/// pending-decref pool behind a mutex, one lock per item (W1: ~20 ns an
/// item, 2 ms of every 100k-item `map`, then decref'd again at the next
/// taking of the lock). An item taken out drops as nothing.
pub(crate) struct Item {
    obj: ManuallyDrop<Obj>,
    taken: AtomicBool,
}

impl Item {
    pub(crate) fn new(obj: Obj) -> Self {
        Item { obj: ManuallyDrop::new(obj), taken: AtomicBool::new(false) }
    }

    /// The object, moved out (`None` if it was already).
    pub(crate) fn take<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: `taken` was false, so `obj` is still owned here and is
        // read exactly once; `Drop` skips it from now on.
        Some(unsafe { std::ptr::read(&*self.obj) }.into_bound(py))
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        if !*self.taken.get_mut() {
            // SAFETY: not taken, so still owned, and dropped only here.
            unsafe { ManuallyDrop::drop(&mut self.obj) }
        }
    }
}

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

impl ChunkFn<Item, Obj> for LocalRun {
    fn run_chunk(
        &self,
        items: Vec<Item>,
        values: &mut Vec<Obj>,
        errors: &mut Vec<(usize, TaskError)>,
    ) {
        let n = items.len();
        Python::attach(|py| {
            let run = || -> PyResult<Vec<Obj>> {
                let list = PyList::new(py, items.iter().map(|x| x.take(py)))?;
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
pub(crate) fn codec(py: Python<'_>, function: Py<PyBytes>, mode: u8) -> PyResult<Codec<Item, Obj>> {
    let encode_chunk = codec_fn(py, "encode_chunk")?;
    let decode_results = codec_fn(py, "decode_results")?;
    Ok(Codec::new(
        PY_FUNCTION,
        move |items: &[Item]| {
            Python::attach(|py| {
                let encode = || -> PyResult<Vec<u8>> {
                    // Moved, not copied: nothing is left to drop without
                    // the lock (see `Item`). A chunk is encoded once.
                    let list = PyList::new(py, items.iter().map(|x| x.take(py)))?;
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
