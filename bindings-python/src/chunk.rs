//! How a chunk of Python items runs on each backend.
//!
//! Both backends run a chunk with `shoal._codec.run_items(func, mode,
//! items)`, which turns each item's exception into a `Failure` value, so a
//! chunk's results are plain Python objects, one per item.
//! - threads: [`LocalRun`] takes the interpreter lock once per chunk and
//!   calls `run_items` on the worker thread;
//! - process: [`codec`] pickles the chunk in the parent
//!   (`encode_chunk_into`), the worker runs it (`run_chunk`, see
//!   [`crate::worker`]) and the parent unpickles the results
//!   (`decode_results`); lists of plain numbers are packed instead
//!   ([`crate::packed`]).

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::buffer::PyBuffer;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use shoal_core::error::TaskError;
use shoal_core::{ChunkFn, Codec};

use crate::errors::describe;
use crate::packed;
use crate::store::{Piece, Store};

/// The name under which worker processes run Python chunks.
pub(crate) const PY_FUNCTION: &str = "shoal.python.chunk";

/// The call mode of chunks of `f(x)` calls (`shoal._codec.CALL`).
pub(crate) const CALL: u8 = 0;

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
///
/// An item can be cancelled until it is taken ([`Pending`]): it is then
/// taken as `None`, which fails at once where it runs, and nobody reads
/// that result (the caller's future is cancelled).
pub(crate) struct Item {
    obj: ManuallyDrop<Obj>,
    taken: AtomicBool,
    call: Arc<AtomicU8>,
}

/// [`Item::call`]'s states.
const WAITING: u8 = 0;
const STARTED: u8 = 1;
const CANCELLED: u8 = 2;

impl Item {
    /// The item and the handle that can cancel it.
    pub(crate) fn new(obj: Obj) -> (Self, Pending) {
        let call = Arc::new(AtomicU8::new(WAITING));
        let item =
            Item { obj: ManuallyDrop::new(obj), taken: AtomicBool::new(false), call: call.clone() };
        (item, Pending(call))
    }

    /// The object, moved out (`None` if it was already); Python's `None`
    /// if the item was cancelled.
    pub(crate) fn take<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: `taken` was false, so `obj` is still owned here and is
        // read exactly once; `Drop` skips it from now on.
        let obj = unsafe { std::ptr::read(&*self.obj) }.into_bound(py);
        let started =
            self.call.compare_exchange(WAITING, STARTED, Ordering::AcqRel, Ordering::Acquire);
        Some(if started.is_ok() { obj } else { py.None().into_bound(py) })
    }
}

/// A call sent to an open batch, until a chunk takes it: `cancel` keeps it
/// from running (`shoal.Future.cancel`).
#[pyclass(module = "shoal._shoal", frozen)]
pub(crate) struct Pending(Arc<AtomicU8>);

#[pymethods]
impl Pending {
    /// Cancels the call if no chunk took it yet; whether it did.
    fn cancel(&self) -> bool {
        let state =
            self.0.compare_exchange(WAITING, CANCELLED, Ordering::AcqRel, Ordering::Acquire);
        matches!(state, Ok(_) | Err(CANCELLED))
    }

    /// Whether a chunk took the call to run it.
    #[getter]
    fn started(&self) -> bool {
        self.0.load(Ordering::Acquire) == STARTED
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

/// A `write` target for `pickle.Pickler`, collecting a chunk's bytes for
/// the core (`shoal._codec.encode_chunk_into`). The pickler hands a large
/// item's bytes straight to `write`, so a megabyte item is copied once,
/// into the chunk, instead of into a pickle first (W5: a copy and 256
/// fresh pages per item).
///
/// It also notes whether a pickle frame names `__main__`
/// ([`Sink::names_main`]): worker processes do not have the pool
/// process's `__main__` (see `shoal._main`). Only writes of at most a
/// frame are searched: a global's name is in a frame, and a large item's
/// bytes, written on their own, are data.
#[pyclass(module = "shoal._shoal", frozen)]
pub(crate) struct Sink {
    /// The bytes so far, behind `keep` bytes of header.
    buf: Mutex<Vec<u8>>,
    keep: usize,
    names_main: AtomicBool,
}

/// The pickler's frame size (`_FRAME_SIZE_TARGET`), with room for its
/// header.
const FRAME: usize = (64 << 10) + 16;

impl Sink {
    /// A sink that appends to `buf`, keeping what it holds.
    fn new(buf: Vec<u8>) -> Self {
        let keep = buf.len();
        Sink { buf: Mutex::new(buf), keep, names_main: AtomicBool::new(false) }
    }

    fn take_bytes(&self) -> Vec<u8> {
        std::mem::take(&mut *self.buf.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[pymethods]
impl Sink {
    fn write(&self, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mut buf = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(b) = data.cast::<PyBytes>() {
            let b = b.as_bytes();
            if b.len() <= FRAME && memchr::memmem::find(b, b"__main__").is_some() {
                self.names_main.store(true, Ordering::Relaxed);
            }
            // Room for the pickle's small tail after a large item, so that
            // it does not move the whole buffer.
            if buf.capacity() - buf.len() < b.len() {
                buf.reserve(b.len() + (64 << 10));
            }
            buf.extend_from_slice(b);
            return Ok(b.len());
        }
        let view = PyBuffer::<u8>::get(data)?;
        let at = buf.len();
        buf.resize(at + view.len_bytes(), 0);
        view.copy_to_slice(data.py(), &mut buf[at..])?;
        Ok(view.len_bytes())
    }

    /// Drops what was written (a failed pickling starts over).
    fn clear(&self) {
        self.buf.lock().unwrap_or_else(|p| p.into_inner()).truncate(self.keep);
        self.names_main.store(false, Ordering::Relaxed);
    }

    /// Whether a frame written so far names `__main__`.
    fn names_main(&self) -> bool {
        self.names_main.load(Ordering::Relaxed)
    }
}

/// Writes a chunk into `out` behind `header`: packed when its items are
/// plain numbers ([`packed::pack_chunk`], read where they are: cutting and
/// freeing a list of them was a sixth of py-W1's encoding time), else
/// pickled with `shoal._codec.encode_chunk_into`. The items are the ranges
/// `(list, from, to)` of `pieces`, in order (see [`Store::pieces`]).
fn encode_into(
    py: Python<'_>,
    encode_chunk_into: &Obj,
    header: &[u8],
    (function, mode, pieces): (&Py<PyBytes>, u8, &[Piece<'_>]),
    main_by_name: bool,
    out: &mut Vec<u8>,
) -> PyResult<()> {
    out.extend_from_slice(header);
    // SAFETY: ranges of lists we hold, with the interpreter lock held;
    // packing runs no Python code.
    let parts: Option<Vec<_>> = pieces
        .iter()
        .map(|(list, from, to)| unsafe { packed::items_of(list, *from, *to) })
        .collect();
    if parts.is_some_and(|p| packed::pack_chunk(function.as_bytes(py), mode, &p, out)) {
        return Ok(());
    }
    let items = crate::store::joined(py, pieces)?;
    let sink = Bound::new(py, Sink::new(std::mem::take(out)))?;
    let pickled =
        encode_chunk_into.call1(py, (&sink, function.clone_ref(py), mode, items, main_by_name));
    *out = sink.get().take_bytes();
    pickled.map(drop)
}

/// Unpickles (or unpacks, see [`packed`]) the results of one chunk.
fn decode<'py>(
    py: Python<'py>,
    decode_results: &Obj,
    bytes: &[u8],
) -> PyResult<Bound<'py, PyList>> {
    if packed::is_packed(bytes) {
        return packed::unpack(py, bytes);
    }
    let out = with_view(py, bytes, |v| decode_results.call1(py, (v,)))?;
    Ok(out.into_bound(py).cast_into::<PyList>()?)
}

/// Calls `f` with a read-only memoryview of `bytes`, not a copy (a chunk
/// can be megabytes), released before this returns.
pub(crate) fn with_view<'py, T>(
    py: Python<'py>,
    bytes: &[u8],
    f: impl FnOnce(&Bound<'py, PyAny>) -> PyResult<T>,
) -> PyResult<T> {
    // SAFETY: the view points into `bytes`, which outlives it: it is
    // released below, and its only readers (`pickle.loads`) keep no
    // export of it.
    let view = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PyMemoryView_FromMemory(
                bytes.as_ptr() as *mut std::ffi::c_char,
                bytes.len() as pyo3::ffi::Py_ssize_t,
                pyo3::ffi::PyBUF_READ,
            ),
        )?
    };
    let out = f(&view);
    view.call_method0(intern!(py, "release"))?;
    out
}

/// Fails each of a chunk's `n` items with `message` (the chunk as a whole
/// could not run or report).
fn fail_all(errors: &mut Vec<(usize, TaskError)>, n: usize, message: String) {
    errors.extend((0..n).map(|i| (i, TaskError::panic(message.clone()))));
}

/// A list of the items, moved out of them (see [`Item`]). Raw list
/// calls: with pyo3's checked conversions, building and emptying chunk
/// lists took 12% of a worker thread's time in W6 on threads, when `imap`
/// still came this way.
fn list_of<'py>(py: Python<'py>, items: &[Item]) -> PyResult<Bound<'py, PyList>> {
    // SAFETY: a new list of `len` slots, each set once with a reference
    // of its own (a taken item's, or a new one to None).
    unsafe {
        let list = ffi::PyList_New(items.len() as ffi::Py_ssize_t);
        let list = Bound::from_owned_ptr_or_err(py, list)?.cast_into_unchecked::<PyList>();
        for (i, x) in items.iter().enumerate() {
            let item = match x.take(py) {
                Some(x) => x.into_ptr(),
                None => py.None().into_ptr(),
            };
            ffi::PyList_SET_ITEM(list.as_ptr(), i as ffi::Py_ssize_t, item);
        }
        Ok(list)
    }
}

/// The items of `list`, moved out of it when nobody else holds it (it is
/// left empty), else with references of their own.
fn drain(list: Bound<'_, PyList>) -> Vec<Obj> {
    // SAFETY: every slot below the list's length holds a reference; moved
    // out, the length drops to 0 so that freeing the list releases none.
    unsafe {
        let p = list.as_ptr();
        let n = ffi::PyList_GET_SIZE(p);
        let only = ffi::Py_REFCNT(p) == 1;
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let item = ffi::PyList_GET_ITEM(p, i);
            if !only {
                ffi::Py_INCREF(item);
            }
            out.push(Bound::from_owned_ptr(list.py(), item).unbind());
        }
        if only {
            (*p.cast::<ffi::PyVarObject>()).ob_size = 0;
        }
        out
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
    /// The batch's timeout per item (see `crate::quiesce`).
    timeout: Option<Duration>,
}

impl LocalRun {
    pub(crate) fn new(
        py: Python<'_>,
        func: Obj,
        mode: u8,
        timeout: Option<Duration>,
    ) -> PyResult<Self> {
        Ok(LocalRun { func, mode, run_items: codec_fn(py, "run_items")?, timeout })
    }
}

/// A chunk of `n` items' timeout, as the core sets it.
fn chunk_limit(timeout: Option<Duration>, n: usize) -> Option<Duration> {
    timeout.and_then(|t| t.checked_mul(u32::try_from(n).unwrap_or(u32::MAX)))
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
            let _running = crate::quiesce::Task::start(py, chunk_limit(self.timeout, n));
            let run = || -> PyResult<Vec<Obj>> {
                let list = list_of(py, &items)?;
                let out = self.run_items.call1(py, (self.func.clone_ref(py), self.mode, list))?;
                Ok(drain(out.into_bound(py).cast_into::<PyList>()?))
            };
            match run() {
                Ok(out) if out.len() == n => values.extend(out),
                Ok(out) => {
                    fail_all(
                        errors,
                        n,
                        format!("run_items returned {} results for {n} items", out.len()),
                    );
                }
                // Only BaseExceptions that are not Exceptions get here
                // (KeyboardInterrupt, SystemExit): they fail the chunk.
                Err(e) => {
                    fail_all(errors, n, describe(py, &e));
                }
            }
        });
    }
}

/// Carries chunks to worker processes as pickles; `main_by_name`: the
/// workers are copies of this process, with its `__main__`
/// (`start_method="fork"`).
pub(crate) fn codec(
    py: Python<'_>,
    function: Py<PyBytes>,
    mode: u8,
    main_by_name: bool,
) -> PyResult<Codec<Item, Obj>> {
    let encode_chunk_into = codec_fn(py, "encode_chunk_into")?;
    let decode_results = codec_fn(py, "decode_results")?;
    Ok(Codec::new(
        PY_FUNCTION,
        move |items: &[Item], out: &mut Vec<u8>| {
            Python::attach(|py| {
                // Moved, not copied: nothing is left to drop without the
                // lock (see `Item`). A chunk is encoded once.
                list_of(py, items)
                    .and_then(|list| {
                        let pieces = [(list.clone(), 0, list.len())];
                        let chunk = (&function, mode, &pieces[..]);
                        encode_into(py, &encode_chunk_into, &[], chunk, main_by_name, out)
                    })
                    .map_err(|e| plain_message(py, &e))
            })
        },
        move |bytes: &[u8]| {
            Python::attach(|py| {
                let decode = || -> PyResult<Vec<Result<Obj, String>>> {
                    let out = drain(decode(py, &decode_results, bytes)?);
                    Ok(out.into_iter().map(Ok).collect())
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

/// The name under which worker processes run the chunks of a batch held
/// in a [`Store`]: a [`PY_FUNCTION`] chunk behind an 8-byte header (the
/// chunk's first index, little-endian) that the worker sends back in front
/// of the results, followed by the offset of the chunk's first failure
/// (`u64::MAX`: none), so that the parent does not look at every result.
pub(crate) const PY_MAP_FUNCTION: &str = "shoal.python.map";

/// The bytes of a [`PY_MAP_FUNCTION`] chunk's header.
pub(crate) const MAP_HEADER: usize = 8;

/// The bytes of a [`PY_MAP_FUNCTION`] chunk's results' header.
pub(crate) const MAP_RESULTS_HEADER: usize = 16;

/// Runs the chunks of a batch held in a [`Store`] on in-process worker
/// threads.
pub(crate) struct LocalMap {
    store: Arc<Store>,
    func: Obj,
    mode: u8,
    run_items: Obj,
    /// The batch's timeout per item (see `crate::quiesce`).
    timeout: Option<Duration>,
}

impl LocalMap {
    pub(crate) fn new(
        py: Python<'_>,
        store: Arc<Store>,
        func: Obj,
        mode: u8,
        timeout: Option<Duration>,
    ) -> PyResult<Self> {
        Ok(LocalMap { store, func, mode, run_items: codec_fn(py, "run_items")?, timeout })
    }
}

impl ChunkFn<usize, ()> for LocalMap {
    fn run_chunk(
        &self,
        items: Vec<usize>,
        values: &mut Vec<()>,
        errors: &mut Vec<(usize, TaskError)>,
    ) {
        let n = items.len();
        Python::attach(|py| {
            let _running = crate::quiesce::Task::start(py, chunk_limit(self.timeout, n));
            let run = || -> PyResult<(Bound<'_, PyList>, Option<usize>)> {
                let list = self.store.slice(py, &items)?;
                let failed = PyList::empty(py);
                let args = (self.func.clone_ref(py), self.mode, list, &failed);
                let out = self.run_items.call1(py, args)?;
                let bad = failed.iter().next().map(|i| i.extract()).transpose()?;
                Ok((out.into_bound(py).cast_into::<PyList>()?, bad))
            };
            match run() {
                Ok((out, bad)) if out.len() == n => {
                    let first = items.first().copied().unwrap_or(0);
                    self.store.keep(first, out, bad);
                    values.resize(n, ());
                }
                Ok((out, _)) => {
                    fail_all(
                        errors,
                        n,
                        format!("run_items returned {} results for {n} items", out.len()),
                    );
                }
                Err(e) => {
                    fail_all(errors, n, describe(py, &e));
                }
            }
        });
    }
}

/// Carries the chunks of a batch held in a [`Store`] to worker processes
/// (`main_by_name` as for [`codec`]).
pub(crate) fn map_codec(
    py: Python<'_>,
    store: Arc<Store>,
    function: Py<PyBytes>,
    mode: u8,
    main_by_name: bool,
) -> PyResult<Codec<usize, ()>> {
    let encode_chunk_into = codec_fn(py, "encode_chunk_into")?;
    let decode_results = codec_fn(py, "decode_results")?;
    let decode_store = store.clone();
    Ok(Codec::split(
        PY_MAP_FUNCTION,
        move |items: &[usize], out: &mut Vec<u8>| {
            Python::attach(|py| {
                let first = items.first().copied().unwrap_or(0) as u64;
                store
                    .pieces(py, items)
                    .and_then(|pieces| {
                        let header = first.to_le_bytes();
                        encode_into(
                            py,
                            &encode_chunk_into,
                            &header,
                            (&function, mode, &pieces),
                            main_by_name,
                            out,
                        )
                    })
                    .map_err(|e| plain_message(py, &e))
            })
        },
        move |bytes: &[u8]| {
            let Some((header, body)) = bytes.split_first_chunk::<MAP_RESULTS_HEADER>() else {
                return Err("a map chunk's results lack their header".to_string());
            };
            let (first, bad) = header.split_at(8);
            let first = u64::from_le_bytes(first.try_into().expect("8 bytes")) as usize;
            let bad = u64::from_le_bytes(bad.try_into().expect("8 bytes"));
            if packed::is_packed(body) {
                // Plain numbers (never a `Failure`): kept as bytes, without
                // the interpreter lock, for a batch that hands out parts.
                let kept = packed::Numbers::parse(body.to_vec())
                    .and_then(|numbers| decode_store.keep_numbers(first, numbers));
                return match kept {
                    Ok(n) => Ok((vec![(); n], Vec::new())),
                    Err(e) => Err(Python::attach(|py| plain_message(py, &e))),
                };
            }
            Python::attach(|py| {
                let decode = || -> PyResult<usize> {
                    let out = decode(py, &decode_results, body)?;
                    let n = out.len();
                    let bad = usize::try_from(bad).ok().filter(|&b| b < n);
                    decode_store.keep(first, out, bad);
                    Ok(n)
                };
                match decode() {
                    // `()` values: an empty vector's worth of memory.
                    Ok(n) => Ok((vec![(); n], Vec::new())),
                    Err(e) => Err(plain_message(py, &e)),
                }
            })
        },
    ))
}
