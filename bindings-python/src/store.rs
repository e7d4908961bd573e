//! [`Store`]: the items and the results of one batch of Python values,
//! held as Python lists, so that the core moves only indices.
//!
//! The core sees `usize` items (positions in the input) and `()` results:
//! a chunk is a range of the input (read in place to pack it, or cut with
//! one C call to pickle it, [`Store::pieces`]) and its results stay the
//! list that ran or unpickled them, or the packed numbers a worker
//! process sent ([`Part`], [`Values`]).
//! Per item, the Rust side moves a `usize` and a `()` instead of a Python
//! object each way (W1: taking each item into a Rust vector, out of it
//! into a chunk list, out of each result list and into the final list
//! cost more than the pickling; W6: the per-item hand-overs of `imap`
//! took more of the parent's time than pulling, pickling and unpickling).
//!
//! - `map` moves each part into its list of results as it arrives (packed
//!   numbers are made into it directly), and [`Store::join`] checks that
//!   every item came;
//! - `imap` and its siblings hand each part to their consumer as a whole
//!   ([`Store::take_part`], see `crate::batch`).
//!
//! The input is the caller's list (`map`), a private copy of the
//! caller's items (`map` over another iterable, batches over a list or a
//! tuple), or a lazy iterator pulled [`PULL`] items at a
//! time into blocks, each dropped once every item of it went into a chunk
//! and those chunks ended (a lost chunk runs its items again)
//! ([`Indices`] pulls, [`Store::slice`] takes).
//!
//! Locks: the interpreter lock is taken before a store's mutexes (a
//! reader thread keeps packed results without it), and no Python code runs
//! while one is held (pulling, slicing and dropping happen outside them):
//! Python code may switch threads, and another thread holding the
//! interpreter lock may be waiting for the mutex.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::batch::InputError;
use crate::chunk::Obj;
use crate::packed::Numbers;

/// Items pulled from a lazy input per taking of the interpreter lock: a
/// lazy chunk's worth (the core's `LAZY_CHUNK_CAP`), so that the pump asks
/// for the lock about once per chunk while the consumer holds it draining
/// results (each ask can wait for the interpreter's switch interval).
pub(crate) const PULL: usize = shoal_core::LAZY_CHUNK_CAP;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The items and results of one batch.
pub(crate) struct Store {
    input: Input,
    /// Results not yet joined or taken, by the index of their first item
    /// (for `map`, their items already moved into `out`).
    results: Mutex<BTreeMap<usize, Part>>,
    /// `map`'s list of results, of the input's length, which each chunk's
    /// results move into as they arrive (under the interpreter lock, which
    /// guards it), so that [`Store::join`] has nothing left to do once the
    /// last chunk came: building the list at the end took ~0.6 ms of a
    /// 10 ms py-W1 map after the workers were done.
    out: Option<Py<PyList>>,
    /// The exception a lazy input raised, re-raised after its results.
    error: InputError,
    /// Its batch was dropped, cancelled or interrupted ([`Store::stop`]).
    stopped: AtomicBool,
}

enum Input {
    /// The caller's list or a private copy of its items, and its length.
    List(Py<PyList>, usize),
    Lazy(Mutex<Lazy>),
}

/// A lazy input and the blocks pulled from it.
struct Lazy {
    /// `None` once it ended or raised.
    iter: Option<Py<PyAny>>,
    /// Blocks with items not yet taken or whose chunks did not end yet,
    /// in input order.
    blocks: VecDeque<Block>,
    /// Items pulled so far.
    pulled: usize,
}

/// Pulled items, held until every chunk that took some of them ended
/// ([`Store::ended`]), so that a lost chunk can run its items again.
struct Block {
    first: usize,
    items: Py<PyList>,
    len: usize,
    /// Items not yet taken into a chunk.
    left: usize,
    /// Which items were taken (a bit each): an item taken again is a lost
    /// chunk's, run again, and counted once. (Worker threads take their
    /// chunks' items in any order.)
    taken: Vec<u64>,
    /// Items taken into chunks that did not end yet.
    running: usize,
}

/// A range `(list, from, to)` of a list that holds a chunk's items.
pub(crate) type Piece<'py> = (Bound<'py, PyList>, usize, usize);

/// The results of one chunk.
pub(crate) struct Part {
    pub(crate) values: Values,
    pub(crate) len: usize,
    /// The offset of its first `Failure`.
    pub(crate) bad: Option<usize>,
}

/// What a [`Part`] holds.
pub(crate) enum Values {
    /// The results.
    List(Py<PyList>),
    /// Plain numbers from a worker process, made into objects as they are
    /// taken (`crate::batch`): the reader thread keeps them without the
    /// interpreter lock, and each `int` is made just before its consumer
    /// takes it instead of all of a chunk's at once (py-W6: 8% less time,
    /// 5% less of the parent's CPU, 8 interleaved rounds).
    Packed(Numbers),
    /// Moved into `map`'s list of results.
    Moved,
}

impl Store {
    /// The store of `map`, over `items` taken whole (any iterable: `map`
    /// takes its whole input first, as `multiprocessing` does): a list as
    /// it is, sliced in place as `multiprocessing` does (copying 10^5 items
    /// cost 0.5 ms of a 10 ms py-W1 map before its first chunk went out;
    /// a chunk cut after the caller changed the list sees the change, and
    /// a list that shrank makes the map fail with an error), anything else
    /// copied into a list.
    pub(crate) fn eager(items: &Bound<'_, PyAny>) -> PyResult<Arc<Self>> {
        let store = match items.cast_exact::<PyList>() {
            Ok(list) => Self::over(list.clone()),
            Err(_) => Self::copied(items)?,
        };
        let n = store.len().unwrap_or(0);
        // SAFETY: a new list of `n` empty slots; `keep` fills them, and
        // `join` hands the list out only once every slot was filled.
        let out = unsafe {
            Bound::from_owned_ptr_or_err(items.py(), ffi::PyList_New(n as ffi::Py_ssize_t))?
                .cast_into_unchecked::<PyList>()
        };
        let mut store = Arc::into_inner(store).expect("a new store");
        store.out = Some(out.unbind());
        Ok(Arc::new(store))
    }

    /// A store over a private copy of `items`.
    fn copied(items: &Bound<'_, PyAny>) -> PyResult<Arc<Self>> {
        let items = items.py().get_type::<PyList>().call1((items,))?.cast_into::<PyList>()?;
        Ok(Self::over(items))
    }

    fn over(items: Bound<'_, PyList>) -> Arc<Self> {
        let len = items.len();
        Self::with(Input::List(items.unbind(), len))
    }

    /// A store over `items`: a copy of a list or a tuple (its length is
    /// known, so chunks are sized to it), anything else pulled lazily.
    pub(crate) fn new(items: &Bound<'_, PyAny>) -> PyResult<Arc<Self>> {
        if items.cast::<PyList>().is_ok() || items.cast::<PyTuple>().is_ok() {
            return Self::copied(items);
        }
        let iter = items.try_iter()?.into_any().unbind();
        let lazy = Lazy { iter: Some(iter), blocks: VecDeque::new(), pulled: 0 };
        Ok(Self::with(Input::Lazy(Mutex::new(lazy))))
    }

    fn with(input: Input) -> Arc<Self> {
        Arc::new(Store {
            input,
            results: Mutex::default(),
            out: None,
            error: Default::default(),
            stopped: AtomicBool::new(false),
        })
    }

    /// The number of items, if known.
    pub(crate) fn len(&self) -> Option<usize> {
        match &self.input {
            Input::List(_, len) => Some(*len),
            Input::Lazy(_) => None,
        }
    }

    /// The exception the input raised, once it did.
    /// Its batch was dropped, cancelled or interrupted: a lazy input is
    /// pulled no more, and chunks not yet sent fail without running.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    pub(crate) fn error(&self) -> InputError {
        self.error.clone()
    }

    /// The indices of the items, for the core; pulls a lazy input as the
    /// core asks for items.
    pub(crate) fn indices(self: &Arc<Self>) -> Indices {
        let len = self.len();
        Indices { store: self.clone(), next: 0, have: len.unwrap_or(0), done: len.is_some() }
    }

    /// Pulls up to [`PULL`] more items of a lazy input; the number of items
    /// pulled so far, or `None` once no more came.
    fn pull(&self) -> Option<usize> {
        let Input::Lazy(lazy) = &self.input else { return None };
        if self.stopped.load(Ordering::Acquire) {
            return None;
        }
        let iter = lock(lazy).iter.take()?;
        Python::attach(|py| {
            let (block, ended) = match pull_block(py, iter.bind(py)) {
                Ok((block, ended)) => (block, ended),
                Err((block, e)) => {
                    *lock(&self.error) = Some(e);
                    (block, true)
                }
            };
            let len = block.len();
            let mut l = lock(lazy);
            if !ended {
                l.iter = Some(iter);
            }
            if len > 0 {
                let first = l.pulled;
                l.blocks.push_back(Block {
                    first,
                    items: block.unbind(),
                    len,
                    left: len,
                    taken: vec![0; len.div_ceil(64)],
                    running: 0,
                });
                l.pulled += len;
            }
            (len > 0).then_some(l.pulled)
        })
    }

    /// The items of a chunk (consecutive indices, as the core cuts them)
    /// as a list.
    pub(crate) fn slice<'py>(
        &self,
        py: Python<'py>,
        indices: &[usize],
    ) -> PyResult<Bound<'py, PyList>> {
        joined(py, &self.pieces(py, indices)?)
    }

    /// The items of a chunk as ranges `(list, from, to)` of the lists that
    /// hold them (the input list, or the pulled blocks the chunk spans),
    /// so that they can be read in place (see `crate::chunk::encode_into`).
    /// Blocks whose every item was taken, by chunks that all ended, leave
    /// the store.
    pub(crate) fn pieces<'py>(
        &self,
        py: Python<'py>,
        indices: &[usize],
    ) -> PyResult<Vec<Piece<'py>>> {
        if self.stopped.load(Ordering::Acquire) {
            // Nobody takes its results: the chunk fails without running.
            return Err(PyRuntimeError::new_err("the batch was cancelled"));
        }
        let (first, n) = (indices.first().copied().unwrap_or(0), indices.len());
        if indices.last().is_some_and(|&last| last + 1 != first + n) {
            return Err(PyRuntimeError::new_err("a chunk's items are not consecutive"));
        }
        let gone =
            || PyRuntimeError::new_err(format!("items {first}..{} are no longer held", first + n));
        let lazy = match &self.input {
            Input::List(items, _) => {
                let items = items.bind(py);
                // The caller's list, which may have shrunk since.
                return if first + n <= items.len() {
                    Ok(vec![(items.clone(), first, first + n)])
                } else {
                    Err(gone())
                };
            }
            Input::Lazy(lazy) => lazy,
        };
        // The blocks that hold [first, first + n), with the range of each
        // to take; spent blocks are dropped below, with no mutex held.
        let mut pieces = Vec::new();
        let mut spent = Vec::new();
        {
            let mut l = lock(lazy);
            for b in l.blocks.iter_mut() {
                let (from, to) = (first.max(b.first), (first + n).min(b.first + b.len));
                if from < to {
                    let (from, to) = (from - b.first, to - b.first);
                    let new = take_bits(&mut b.taken, from, to);
                    b.left = b.left.saturating_sub(new);
                    b.running += new;
                    pieces.push((b.items.bind(py).clone(), from, to));
                }
            }
            spent.extend(spent_blocks(&mut l));
        }
        drop(spent);
        if pieces.iter().map(|(_, from, to)| to - from).sum::<usize>() != n {
            return Err(gone());
        }
        Ok(pieces)
    }

    /// The chunk of items `first..first + n` ended (ran or failed for
    /// good): blocks none of whose items wait or run any more leave at the
    /// next [`Store::pieces`], which frees them holding the interpreter
    /// lock (here, on the pump's thread, it is not held: each object's
    /// release would wait in pyo3's queue).
    pub(crate) fn ended(&self, first: usize, n: usize) {
        let Input::Lazy(lazy) = &self.input else { return };
        let mut l = lock(lazy);
        for b in l.blocks.iter_mut() {
            let (from, to) = (first.max(b.first), (first + n).min(b.first + b.len));
            if from < to {
                b.running = b.running.saturating_sub(to - from);
            }
        }
    }

    /// Keeps a chunk's results and the offset of its first `Failure`,
    /// which whoever ran the chunk knows (`run_items`' failed list): a scan
    /// of every result for it was a sixth of a reader thread's time.
    pub(crate) fn keep(&self, first: usize, results: Bound<'_, PyList>, bad: Option<usize>) {
        let len = results.len();
        let (values, replaced) = match &self.out {
            Some(out) => (Values::Moved, move_into(out.bind(results.py()), first, &results)),
            None => (Values::List(results.clone().unbind()), Vec::new()),
        };
        let earlier = lock(&self.results).insert(first, Part { values, len, bad });
        // A retried chunk's earlier results, if any: released with no
        // mutex held (freeing an object can run Python code).
        drop((earlier, replaced, results));
    }

    /// Keeps a chunk's results that came as plain numbers (none of them a
    /// `Failure`): as they are for a batch that hands out parts, made into
    /// `map`'s list of results (taking the interpreter lock) for a map.
    pub(crate) fn keep_numbers(&self, first: usize, numbers: Numbers) -> PyResult<usize> {
        let len = numbers.len();
        let (values, replaced) = match &self.out {
            Some(out) => {
                let replaced = Python::attach(|py| fill(out.bind(py), first, &numbers))?;
                (Values::Moved, replaced)
            }
            None => (Values::Packed(numbers), Vec::new()),
        };
        let earlier = lock(&self.results).insert(first, Part { values, len, bad: None });
        drop((earlier, replaced));
        Ok(len)
    }

    /// The results of the chunk that holds item `index`, taken out, with
    /// the index of their first item.
    pub(crate) fn take_part(&self, index: usize) -> Option<(usize, Part)> {
        let mut results = lock(&self.results);
        let (&first, part) = results.range(..=index).next_back()?;
        if index >= first + part.len {
            return None;
        }
        Some((first, results.remove(&first)?))
    }

    /// Every result in input order, and the index of the first that is a
    /// `Failure`. Call once the batch ended without a lost chunk.
    pub(crate) fn join<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyList>, Option<usize>)> {
        let parts = std::mem::take(&mut *lock(&self.results));
        let len = self.len().unwrap_or(0);
        let mut at = 0;
        for (&first, part) in &parts {
            if first != at {
                return Err(PyRuntimeError::new_err(format!("map: results from {at} missing")));
            }
            at += part.len;
        }
        if at != len {
            return Err(PyRuntimeError::new_err(format!("map: {at} results for {len} items")));
        }
        let first_bad = parts.iter().find_map(|(first, p)| p.bad.map(|o| first + o));
        let out = self.out.as_ref().ok_or_else(|| PyRuntimeError::new_err("join: not a map"))?;
        Ok((out.bind(py).clone(), first_bad))
    }
}

/// The items of `pieces` (from [`Store::pieces`]) as one list.
pub(crate) fn joined<'py>(py: Python<'py>, pieces: &[Piece<'py>]) -> PyResult<Bound<'py, PyList>> {
    if let [(items, from, to)] = pieces {
        return Ok(items.get_slice(*from, *to));
    }
    let out = PyList::empty(py);
    for (items, from, to) in pieces {
        for x in items.get_slice(*from, *to).iter() {
            out.append(x)?;
        }
    }
    Ok(out)
}

/// Sets the `n` slots of `out` from `first` on to `item(j)` (new
/// references, or null with the error set) and returns what those slots
/// held before (a retried chunk's earlier results). Results that would not
/// fit are left out: `join` then reports the count that does not match.
///
/// # Safety
/// Call with the interpreter lock held; `item` runs no Python code.
unsafe fn set_slots(
    out: &Bound<'_, PyList>,
    first: usize,
    n: usize,
    mut item: impl FnMut(usize) -> *mut ffi::PyObject,
) -> PyResult<Vec<Obj>> {
    let py = out.py();
    let mut replaced = Vec::new();
    // SAFETY: with the lock held, each slot of `out` below its length holds
    // a reference or (not yet filled) NULL; each slot set here takes the
    // new reference, and the one it held is handed back.
    unsafe {
        let o = out.as_ptr();
        if first.checked_add(n).is_none_or(|end| end > ffi::PyList_GET_SIZE(o) as usize) {
            return Ok(replaced);
        }
        for j in 0..n {
            let x = item(j);
            if x.is_null() {
                return Err(PyErr::fetch(py));
            }
            let slot = (first + j) as ffi::Py_ssize_t;
            let old = ffi::PyList_GET_ITEM(o, slot);
            if !old.is_null() {
                replaced.push(Bound::from_owned_ptr(py, old).unbind());
            }
            ffi::PyList_SET_ITEM(o, slot, x);
        }
    }
    Ok(replaced)
}

/// Makes `numbers` into the slots of `out` from `first` on (see
/// [`set_slots`]).
fn fill(out: &Bound<'_, PyList>, first: usize, numbers: &Numbers) -> PyResult<Vec<Obj>> {
    // SAFETY: making a number runs no Python code; the lock is held (`out`).
    unsafe { set_slots(out, first, numbers.len(), |j| numbers.object(j)) }
}

/// Moves `results` into `out` from slot `first` on (see [`set_slots`]):
/// they are left empty when nobody else holds them, else copied with
/// references of their own.
fn move_into(out: &Bound<'_, PyList>, first: usize, results: &Bound<'_, PyList>) -> Vec<Obj> {
    // SAFETY: with the lock held (`out`), each slot below the length of
    // `results` holds a reference. When `results` is ours alone its
    // references move and its length drops to 0, so freeing it releases
    // nothing; the moves only happen if every result fits.
    unsafe {
        let r = results.as_ptr();
        let n = ffi::PyList_GET_SIZE(r) as usize;
        let only = ffi::Py_REFCNT(r) == 1;
        let fits = first.checked_add(n).is_some_and(|end| end <= out.len());
        let replaced = set_slots(out, first, n, |j| {
            let item = ffi::PyList_GET_ITEM(r, j as ffi::Py_ssize_t);
            if !only {
                ffi::Py_INCREF(item);
            }
            item
        });
        if only && fits {
            (*r.cast::<ffi::PyVarObject>()).ob_size = 0;
        }
        // Items of a list are never null: the only error is none.
        replaced.unwrap_or_default()
    }
}

/// Sets the bits `from..to` of `bits`; how many were not set.
fn take_bits(bits: &mut [u64], from: usize, to: usize) -> usize {
    let mut new = 0;
    let mut at = from;
    while at < to {
        let (word, bit) = (at / 64, at % 64);
        let end = (to - at).min(64 - bit);
        let mask = if end == 64 { u64::MAX } else { ((1u64 << end) - 1) << bit };
        new += (mask & !bits[word]).count_ones() as usize;
        bits[word] |= mask;
        at += end;
    }
    new
}

/// The blocks at the front that are done with: every item taken, and every
/// chunk that took some ended.
fn spent_blocks(l: &mut Lazy) -> Vec<Block> {
    let mut spent = Vec::new();
    while l.blocks.front().is_some_and(|b| b.left == 0 && b.running == 0) {
        spent.extend(l.blocks.pop_front());
    }
    spent
}

/// Up to [`PULL`] items of `iter` and whether it ended; on an exception,
/// the items before it and the exception.
#[allow(clippy::type_complexity)]
fn pull_block<'py>(
    py: Python<'py>,
    iter: &Bound<'py, PyAny>,
) -> Result<(Bound<'py, PyList>, bool), (Bound<'py, PyList>, PyErr)> {
    // The items pulled, owned references, made into a list of their
    // exact length at the end: appending one by one (the list growing)
    // was a seventh of the pump's time in py-W6.
    let mut items: Vec<Bound<'py, PyAny>> = Vec::with_capacity(PULL);
    let mut outcome = Ok(false);
    // A slow input (a generator that waits for each item) hands over what
    // it gave within the core's input budget, as the core cuts its chunks.
    let started = std::time::Instant::now();
    while items.len() < PULL {
        // SAFETY: `iter` is an iterator (from `try_iter`); `PyIter_Next`
        // returns a new reference, or null at the end or on an error.
        match unsafe { Bound::from_owned_ptr_or_opt(py, ffi::PyIter_Next(iter.as_ptr())) } {
            Some(x) => items.push(x),
            None => {
                outcome = PyErr::take(py).map_or(Ok(true), Err);
                break;
            }
        }
        if items.len().is_power_of_two() && started.elapsed() >= shoal_core::INPUT_BUDGET {
            break;
        }
    }
    let block = match PyList::new(py, items) {
        Ok(block) => block,
        Err(e) => return Err((PyList::empty(py), e)),
    };
    match outcome {
        Ok(ended) => Ok((block, ended)),
        Err(e) => Err((block, e)),
    }
}

/// The items of a [`Store`] as the core sees them: their indices.
pub(crate) struct Indices {
    store: Arc<Store>,
    next: usize,
    /// Items available: the length of a list, the items pulled so far of a
    /// lazy input.
    have: usize,
    /// No more will come.
    done: bool,
}

impl Iterator for Indices {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.next >= self.have {
            if self.done {
                return None;
            }
            match self.store.pull() {
                Some(pulled) => self.have = pulled,
                None => {
                    self.done = true;
                    return None;
                }
            }
        }
        self.next += 1;
        Some(self.next - 1)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let ready = self.have - self.next;
        (ready, self.done.then_some(ready))
    }
}

#[cfg(test)]
mod tests {
    use super::take_bits;

    #[test]
    fn take_bits_counts_each_bit_once() {
        let mut bits = vec![0u64; 3];
        assert_eq!(take_bits(&mut bits, 0, 130), 130);
        assert_eq!(take_bits(&mut bits, 60, 70), 0, "taken again");
        assert_eq!(take_bits(&mut bits, 120, 192), 62);
        assert_eq!(take_bits(&mut bits, 64, 128), 0);
        assert_eq!(bits, [u64::MAX; 3]);
    }
}
