//! [`Batch`]: the results of one batch as a Python iterator, and
//! [`Stream`]: the input of an open batch.
//!
//! Iterated (`imap`), a batch's results are pulled from the core by a
//! *pump* thread, which waits for chunks without the interpreter lock and
//! hands them over a bounded [`Queue`] ([`PUMP_CAPACITY`] results, so a
//! lazy `imap` stays bounded). A batch over a [`Store`] (`imap`,
//! `imap_unordered`, `Executor.map`) hands over each chunk's results as
//! one event, the Python list that holds them ([`Event::Part`]); the
//! consumer reads the values out of it one by one. Python takes every
//! event queued at once into a buffer of its own, so that the pump and the
//! consumer meet once per handful of chunks, and takes values from there
//! without releasing the lock; it only blocks, lock released, when none
//! is ready. (`map` does not come here: `Core::map` drains the core's
//! eager map without the lock and joins the parts once at the end.) The
//! lock is never held while the core waits, so the threads that need it
//! to unpickle chunks are not starved.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyStopIteration, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyType};
use shoal_core::backend::TaskMessage;
use shoal_core::error::{BatchError, TaskError};
use shoal_core::{ChunkOutcome, Chunks, Feeder, MapUnordered, OpenItems};

use crate::chunk::{Item, LocalMap, LocalRun, Obj, Pending};
use crate::errors::batch_error;
use crate::interrupt::SIGNAL_CHECK;
use crate::store::{Indices, Part, Store, Values};

/// Results the pump may hold ahead of the consumer: two of the largest
/// lazy chunks (the core's `LAZY_CHUNK_CAP`), so that the pump can queue
/// a chunk's results while the consumer reads the one before.
pub(crate) const PUMP_CAPACITY: usize = 2 * shoal_core::LAZY_CHUNK_CAP;

/// The exception a batch's input raised, re-raised after its results.
pub(crate) type InputError = Arc<Mutex<Option<PyErr>>>;

/// The core's iterator behind a [`Batch`].
pub(crate) enum BatchIter {
    /// Over a store: whole chunks, in input order or as they end.
    Chunks(Chunks<Indices, LocalMap, ()>, Arc<Store>),
    /// Single calls sent one by one (`apply_async`, `submit`).
    Open(MapUnordered<OpenItems<Item>, LocalRun, Obj>),
}

/// An item's index and value or error. The error is boxed, and so is a
/// message: every event crosses from the pump's core to the consumer's,
/// and small events move in fewer cache lines.
type Outcome = (usize, Result<Obj, Box<BatchError>>);

/// What the pump's queue carries.
pub(crate) enum Event {
    /// An item ended.
    Outcome(Outcome),
    /// The results of a chunk of a batch over a store, with its first
    /// item's index.
    Part(usize, Part),
    /// A task's message, with the index of the item that sent it (batches
    /// made with messages; see `crate::message`).
    Message(usize, Box<TaskMessage>),
    /// The batch ended. Explicit, because message senders may outlive the
    /// pump by a moment.
    End,
}

impl Event {
    /// The results it carries, which the queue's capacity counts.
    fn weight(&self) -> usize {
        match self {
            Event::Part(_, part) => part.len.max(1),
            _ => 1,
        }
    }
}

impl BatchIter {
    /// Runs the batch, handing each event to `push` until it returns false
    /// (the consumer is gone) or `cancelled` is set.
    fn pump(self, cancelled: &AtomicBool, mut push: impl FnMut(Event) -> bool) {
        let mut go = |e: Event| push(e) && !cancelled.load(Ordering::Acquire);
        match self {
            BatchIter::Chunks(chunks, store) => {
                for chunk in chunks {
                    if !chunk_events(chunk, &store).into_iter().all(&mut go) {
                        break;
                    }
                }
            }
            BatchIter::Open(it) => {
                for r in it {
                    let outcome = match r {
                        Ok((index, v)) => (index, Ok(v)),
                        Err(e) => (e.index().unwrap_or(usize::MAX), Err(Box::new(e))),
                    };
                    if !go(Event::Outcome(outcome)) {
                        break;
                    }
                }
            }
        }
    }
}

/// The events of one chunk of a batch over a store: its part, or an
/// error for each of its items (a chunk runs, decodes and is kept whole,
/// or fails whole).
fn chunk_events(chunk: Result<ChunkOutcome<()>, BatchError>, store: &Store) -> Vec<Event> {
    let chunk = match chunk {
        Ok(chunk) => chunk,
        Err(e) => return vec![Event::Outcome((e.index().unwrap_or(usize::MAX), Err(Box::new(e))))],
    };
    store.ended(chunk.start, chunk.len);
    let part = store.take_part(chunk.start);
    if chunk.errors.is_empty()
        && let Some((first, part)) = part
    {
        return vec![Event::Part(first, part)];
    }
    let start = chunk.start;
    chunk
        .into_results()
        .enumerate()
        .map(|(o, r)| {
            let index = start + o;
            let e = r.err().unwrap_or_else(|| BatchError::Failed {
                index,
                error: TaskError::panic(format!("the result of item {index} is missing")),
            });
            Event::Outcome((index, Err(Box::new(e))))
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The events from the pump (and message senders) to the consumer, at
/// most [`PUMP_CAPACITY`]: producers wait for room.
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    /// The consumer waits here for events.
    ready: Condvar,
    /// Producers wait here for room.
    room: Condvar,
}

#[derive(Default)]
struct QueueState {
    events: VecDeque<Event>,
    /// The results the events carry (see [`Event::weight`]).
    held: usize,
    /// The consumer is gone (its batch dropped): producers stop.
    gone: bool,
    /// No bound: the batch runs to its end without a consumer
    /// ([`Batch::finish`]).
    unbounded: bool,
    /// `End` was queued: the pump is done.
    ended: bool,
    /// Who waits: a notification is a system call, made only for them.
    consumer_waits: bool,
    producers_wait: usize,
}

impl Queue {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Queue {
            state: Mutex::new(QueueState::default()),
            ready: Condvar::new(),
            room: Condvar::new(),
        })
    }

    /// Adds an event, waiting while the queue is full (an event larger
    /// than the whole queue waits until it is empty; a message does not
    /// wait). False once the consumer is gone.
    pub(crate) fn push(&self, event: Event) -> bool {
        let weight = event.weight();
        // A message never waits: its sender may be a task on a worker
        // thread that holds the interpreter lock, which the consumer needs
        // to make room (a burst of `shoal.log` deadlocked).
        let waits = !matches!(event, Event::Message(..));
        let mut s = lock(&self.state);
        while waits && s.held > 0 && s.held + weight > PUMP_CAPACITY && !s.gone && !s.unbounded {
            s.producers_wait += 1;
            s = self.room.wait(s).unwrap_or_else(|p| p.into_inner());
            s.producers_wait -= 1;
        }
        if s.gone {
            return false;
        }
        s.events.push_back(event);
        s.held += weight;
        if s.consumer_waits {
            s.consumer_waits = false;
            self.ready.notify_all();
        }
        true
    }

    /// The end of the batch, queued even when the queue is full.
    fn end(&self) {
        let mut s = lock(&self.state);
        s.events.push_back(Event::End);
        s.ended = true;
        self.ready.notify_all();
        self.room.notify_all(); // for `wait_ended`
    }

    /// Lifts the bound: producers no longer wait for room.
    fn unbound(&self) {
        lock(&self.state).unbounded = true;
        self.room.notify_all();
    }

    /// Waits up to `wait` for the end of the batch (or its consumer's);
    /// whether it came.
    fn wait_ended(&self, wait: Duration) -> bool {
        let s = lock(&self.state);
        let (s, _) = self
            .room
            .wait_timeout_while(s, wait, |s| !s.ended && !s.gone)
            .unwrap_or_else(|p| p.into_inner());
        s.ended || s.gone
    }

    /// Moves every queued event into `into` (empty), waiting up to `wait`
    /// for one. False if none came.
    fn take_all(&self, into: &mut VecDeque<Event>, wait: Duration) -> bool {
        let mut s = lock(&self.state);
        if s.events.is_empty() {
            s.consumer_waits = true;
            s = self
                .ready
                .wait_timeout_while(s, wait, |s| s.events.is_empty())
                .unwrap_or_else(|p| p.into_inner())
                .0;
            s.consumer_waits = false;
        }
        if s.events.is_empty() {
            return false;
        }
        std::mem::swap(into, &mut s.events);
        s.held = 0;
        if s.producers_wait > 0 {
            self.room.notify_all();
        }
        true
    }

    /// The consumer is gone: producers stop.
    fn close(&self) {
        let mut s = lock(&self.state);
        s.gone = true;
        s.events.clear();
        s.held = 0;
        self.room.notify_all();
    }
}

/// Queues `End` when the pump stops, however it stops (a panic too), so
/// that the consumer never waits for a pump that is gone.
struct EndOnDrop(Arc<Queue>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A value that only a thread holding the interpreter lock touches, and
/// only for moments that run no Python code: the part being read, which
/// `Batch::next_ready` takes a result from for every item (py-W6 took
/// 7.5% less time, its parent 8.5% less CPU, than with a mutex there;
/// 8 interleaved rounds).
struct UnderInterpreterLock<T>(UnsafeCell<T>);

// SAFETY: every access is inside `with`, whose caller holds the
// interpreter lock and runs no Python code, so no other thread can run
// (the module does not declare itself safe without the lock, so even a
// free-threaded interpreter runs it with one) and nothing re-enters.
unsafe impl<T: Send> Sync for UnderInterpreterLock<T> {}

impl<T> UnderInterpreterLock<T> {
    fn new(value: T) -> Self {
        UnderInterpreterLock(UnsafeCell::new(value))
    }

    /// Runs `f` on the value.
    ///
    /// # Safety
    /// `f` must run no Python code: no call, and no drop of an object that
    /// Python may free (a finalizer could run, switch threads or re-enter).
    /// Move such values out and drop them after `with` returns.
    unsafe fn with<R>(&self, _py: Python<'_>, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: exclusive for the call, see above.
        f(unsafe { &mut *self.0.get() })
    }
}

/// A part being read.
struct Reading {
    first: usize,
    part: Part,
    /// The offset of the next result.
    at: usize,
}

/// The next result of the part being read (see [`Reading::next_value`]).
enum Next {
    Value(usize, Obj),
    /// Making the result failed (out of memory).
    Failed(usize, PyErr),
    /// The part is read out (to drop after the cell's borrow).
    Spent(Box<Reading>),
    /// No part is being read.
    Nothing,
}

impl Reading {
    /// The next result if it is a value (not a `Failure`): a new
    /// reference to it. The fast path of `imap`; runs no Python code.
    fn next_clean(&mut self) -> Option<*mut ffi::PyObject> {
        if self.at >= self.part.bad.unwrap_or(self.part.len) {
            return None;
        }
        let v = match &self.part.values {
            // SAFETY: `at` is below the list's length, which never changes
            // (the store made the list and handed it over whole); the
            // caller holds the interpreter lock.
            Values::List(results) => unsafe {
                let v = ffi::PyList_GET_ITEM(results.as_ptr(), self.at as ffi::Py_ssize_t);
                ffi::Py_INCREF(v);
                v
            },
            Values::Packed(numbers) => {
                let v = numbers.object(self.at);
                if v.is_null() {
                    // SAFETY: the error `object` set; `next_value` makes
                    // it again and reports it.
                    unsafe { ffi::PyErr_Clear() };
                    return None;
                }
                v
            }
            Values::Moved => return None,
        };
        self.at += 1;
        Some(v)
    }

    /// The next result of `reading`, any result; runs no Python code.
    fn next_value(reading: &mut Option<Box<Reading>>, py: Python<'_>) -> Next {
        let Some(r) = reading.as_mut() else { return Next::Nothing };
        let index = r.first + r.at;
        let v = match &r.part.values {
            Values::List(results) => results.bind(py).get_item(r.at).ok().map(Ok),
            // SAFETY: a new reference or null with the error set.
            Values::Packed(numbers) if r.at < numbers.len() => {
                Some(unsafe { Bound::from_owned_ptr_or_err(py, numbers.object(r.at)) })
            }
            Values::Packed(_) | Values::Moved => None,
        };
        match v {
            Some(Ok(v)) => {
                r.at += 1;
                Next::Value(index, v.unbind())
            }
            Some(Err(e)) => {
                r.at += 1;
                Next::Failed(index, e)
            }
            None => Next::Spent(reading.take().expect("checked above")),
        }
    }
}

/// The results of one batch: `(index, ok, value)`, or with `values` the
/// values themselves (failures raised).
#[pyclass(module = "shoal._shoal", frozen, weakref)]
pub(crate) struct Batch {
    /// The core's iterator until the pump takes it (as the batch starts)
    /// or `cancel` drops it.
    iter: Mutex<Option<BatchIter>>,
    /// The pump's queue.
    queue: Arc<Queue>,
    /// Set once the pump started (or was found not needed).
    started: OnceLock<()>,
    /// Events taken from the queue, not yet from Python.
    taken: Mutex<VecDeque<Event>>,
    /// The part being read.
    reading: UnderInterpreterLock<Option<Box<Reading>>>,
    /// Set once `End` was taken.
    over: AtomicBool,
    /// Tells the pump to stop (`cancel`).
    cancelled: Arc<AtomicBool>,
    /// A batch over a store: told to pull its input no more when the
    /// batch is dropped or cancelled.
    store: Option<Arc<Store>>,
    error: InputError,
    values: bool,
}

impl Batch {
    /// Starts the batch of `iter`, on `queue` if one was made beforehand
    /// (for message senders).
    pub(crate) fn start(
        iter: BatchIter,
        error: InputError,
        values: bool,
        queue: Option<Arc<Queue>>,
    ) -> PyResult<Self> {
        let store = match &iter {
            BatchIter::Chunks(_, store) => Some(store.clone()),
            BatchIter::Open(_) => None,
        };
        let batch = Batch {
            store,
            iter: Mutex::new(Some(iter)),
            queue: queue.unwrap_or_else(Queue::new),
            started: OnceLock::new(),
            taken: Mutex::default(),
            reading: UnderInterpreterLock::new(None),
            over: AtomicBool::new(false),
            cancelled: Arc::new(AtomicBool::new(false)),
            error,
            values,
        };
        // At once, as multiprocessing's imap and concurrent.futures' map
        // start their tasks: a batch runs before its first result is asked
        // for (up to the queue's bound).
        batch.pump();
        Ok(batch)
    }

    /// Starts the pump (once).
    fn pump(&self) {
        self.started.get_or_init(|| {
            let Some(iter) = lock(&self.iter).take() else {
                self.queue.end(); // cancelled: over
                return;
            };
            let cancelled = self.cancelled.clone();
            let end = EndOnDrop(self.queue.clone());
            let live = crate::quiesce::Pump::start();
            // A gone consumer or `cancel` stops the pump: dropping the
            // iterator cancels the chunks still queued.
            let pump = move || {
                let _live = live;
                iter.pump(&cancelled, |e| end.0.push(e));
            };
            if let Err(e) = std::thread::Builder::new().name("shoal-batch".into()).spawn(pump) {
                eprintln!("shoal: cannot start a batch thread: {e}");
            }
        });
    }

    /// The next event: at once if one is ready, else waiting (lock
    /// released) up to `timeout`. `Ok(None)`: the batch ended.
    fn take(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<Option<Event>> {
        if self.over.load(Ordering::Acquire) {
            return self.ended();
        }
        self.pump();
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            // The buffer's lock is never held while waiting: another
            // thread may hold the interpreter lock and want it.
            // SAFETY: `next_value` runs no Python code; a spent part is
            // dropped here, after the borrow.
            match unsafe { self.reading.with(py, |r| Reading::next_value(r, py)) } {
                Next::Value(index, v) => return Ok(Some(Event::Outcome((index, Ok(v))))),
                Next::Failed(index, e) => {
                    let error = TaskError::panic(format!("cannot make result {index}: {e}"));
                    let failed = Box::new(BatchError::Failed { index, error });
                    return Ok(Some(Event::Outcome((index, Err(failed)))));
                }
                Next::Spent(spent) => drop(spent),
                Next::Nothing => {}
            }
            let mut batch = {
                let mut taken = lock(&self.taken);
                match taken.pop_front() {
                    Some(Event::End) => {
                        self.over.store(true, Ordering::Release);
                        return self.ended();
                    }
                    Some(Event::Part(first, part)) => {
                        drop(taken);
                        let reading = Some(Box::new(Reading { first, part, at: 0 }));
                        // SAFETY: a move; the part it replaces (none: only
                        // a spent part is taken out, above) drops after.
                        let before =
                            unsafe { self.reading.with(py, |r| std::mem::replace(r, reading)) };
                        drop(before);
                        continue;
                    }
                    Some(e) => return Ok(Some(e)),
                    None => std::mem::take(&mut *taken),
                }
            };
            let slice = match deadline {
                None => SIGNAL_CHECK,
                Some(d) => d.saturating_duration_since(Instant::now()).min(SIGNAL_CHECK),
            };
            // Without the interpreter lock only when nothing is queued.
            let got = self.queue.take_all(&mut batch, Duration::ZERO)
                || py.detach(|| self.queue.take_all(&mut batch, slice));
            if got {
                let mut taken = lock(&self.taken);
                if taken.is_empty() {
                    *taken = batch;
                } else {
                    taken.extend(batch);
                }
                continue;
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(timeout_error(py));
            }
        }
    }

    /// With `values`, the next result of the part being read if it is a
    /// plain value: a new reference. Runs no Python code and does not
    /// panic (`crate::iternext`).
    pub(crate) fn next_ready(&self, py: Python<'_>) -> Option<*mut ffi::PyObject> {
        if !self.values {
            return None;
        }
        // SAFETY: `next_clean` runs no Python code.
        unsafe { self.reading.with(py, |r| r.as_mut().and_then(|r| r.next_clean())) }
    }

    /// The next item's outcome, skipping messages.
    fn take_outcome(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<Option<Outcome>> {
        loop {
            match self.take(py, timeout)? {
                None => return Ok(None),
                Some(Event::Outcome(o)) => return Ok(Some(o)),
                Some(_) => {}
            }
        }
    }

    /// The end: the input's exception if it raised one.
    fn ended<T>(&self) -> PyResult<Option<T>> {
        match self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    fn as_tuple(py: Python<'_>, (index, r): Outcome) -> PyResult<(usize, bool, Obj)> {
        match r {
            Ok(v) => Ok((index, true, v)),
            Err(e) if matches!(*e, BatchError::Failed { .. }) => {
                Ok((index, false, batch_error(py, &e).into_value(py).into_any()))
            }
            Err(e) => Err(batch_error(py, &e)),
        }
    }

    /// The value, or the exception to raise for a failure.
    fn as_value(py: Python<'_>, outcome: Outcome) -> PyResult<Obj> {
        let (_, ok, v) = Self::as_tuple(py, outcome)?;
        if !ok {
            return Err(PyErr::from_value(v.into_bound(py)));
        }
        if is_failure(v.bind(py), failure_type(py)?) {
            let exc = v.bind(py).call_method0("exception")?;
            return Err(PyErr::from_value(exc));
        }
        Ok(v)
    }

    /// With `values`: the next value. Else the next `(index, ok, value)`,
    /// or for a message `(index, None, (kind, payload))` with kind
    /// "progress", "log" or "data".
    fn next_outcome(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<Obj> {
        if self.values {
            return match self.take_outcome(py, timeout)? {
                None => Err(PyStopIteration::new_err(())),
                Some(o) => Self::as_value(py, o),
            };
        }
        match self.take(py, timeout)? {
            // `take` reads parts out itself and never returns one.
            None | Some(Event::End | Event::Part(..)) => Err(PyStopIteration::new_err(())),
            Some(Event::Outcome(o)) => {
                Ok(Self::as_tuple(py, o)?.into_pyobject(py)?.into_any().unbind())
            }
            Some(Event::Message(index, m)) => {
                let payload = match *m {
                    TaskMessage::Progress(f) => ("progress", f.into_pyobject(py)?.into_any()),
                    TaskMessage::Log(t) => ("log", t.into_pyobject(py)?.into_any()),
                    TaskMessage::Data(d) => ("data", PyBytes::new(py, &d).into_any()),
                };
                Ok((index, py.None(), payload).into_pyobject(py)?.into_any().unbind())
            }
        }
    }
}

/// `shoal._codec.Failure`, looked up once.
fn failure_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static FAILURE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    FAILURE.import(py, "shoal._codec", "Failure")
}

/// Whether `v` is a `Failure` (`failure`, from [`failure_type`]). The
/// exact type, not `isinstance`: for an object of another type,
/// `isinstance` also looks up its `__class__` attribute, ~40 ns an item
/// (4 ms of W1's 100k-item `map`, 40 ms of W6's million `imap` values),
/// and `Failure` is shoal's own class, never subclassed.
fn is_failure(v: &Bound<'_, PyAny>, failure: &Bound<'_, PyType>) -> bool {
    v.get_type_ptr() == failure.as_type_ptr()
}

fn timeout_error(py: Python<'_>) -> PyErr {
    match py.import("multiprocessing").and_then(|m| m.getattr("TimeoutError")) {
        Ok(cls) => PyErr::from_type(cls.cast_into().expect("an exception class"), ()),
        Err(e) => e,
    }
}

#[pymethods]
impl Batch {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The slow path of iteration: `crate::iternext` returns ready values
    /// without coming here.
    fn __next__(&self, py: Python<'_>) -> PyResult<Obj> {
        if let Some(v) = self.next_ready(py) {
            // SAFETY: `next_ready` returned a new reference.
            return Ok(unsafe { Bound::from_owned_ptr(py, v) }.unbind());
        }
        self.next_outcome(py, None)
    }

    /// `next(it)` waiting at most `timeout` seconds
    /// (`multiprocessing.TimeoutError` after that), as
    /// `multiprocessing`'s `IMapIterator.next`.
    #[pyo3(signature = (timeout=None))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Obj> {
        let timeout = match timeout {
            None => None,
            Some(t) if t.is_finite() && t >= 0.0 => Some(Duration::from_secs_f64(t)),
            Some(t) => {
                return Err(PyValueError::new_err(format!(
                    "timeout must be a non-negative number of seconds (got {t})"
                )));
            }
        };
        self.next_outcome(py, timeout)
    }

    /// Lets the batch run to its end without a consumer, its results kept
    /// until taken, and waits for that (interruptible): `Pool.join` after
    /// `close` waits so for every task of an `imap`, as
    /// `multiprocessing`'s does.
    fn finish(&self, py: Python<'_>) -> PyResult<()> {
        self.pump();
        self.queue.unbound();
        while !py.detach(|| self.queue.wait_ended(SIGNAL_CHECK)) {
            py.check_signals()?;
        }
        Ok(())
    }

    /// Whether the batch produced all its results (some may not be taken
    /// yet).
    #[getter]
    fn finished(&self) -> bool {
        lock(&self.queue.state).ended
    }

    /// Stops the batch: queued chunks are dropped, running ones finish.
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        if let Some(store) = &self.store {
            store.stop();
        }
        lock(&self.iter).take();
    }
}

impl Drop for Batch {
    /// The consumer is gone: a pump waiting for room stops, and one
    /// pulling the input stops after the item it waits for.
    fn drop(&mut self) {
        if let Some(store) = &self.store {
            store.stop();
        }
        self.queue.close();
    }
}

/// The input of an open batch ([`crate::pool::Core::open`]).
#[pyclass(module = "shoal._shoal", frozen)]
pub(crate) struct Stream {
    /// The feeder and the index of the next item; `None` once closed.
    feeder: Mutex<Option<(Feeder<Item>, usize)>>,
}

impl Stream {
    pub(crate) fn new(feeder: Feeder<Item>) -> Self {
        Stream { feeder: Mutex::new(Some((feeder, 0))) }
    }
}

#[pymethods]
impl Stream {
    /// Adds `(func, args, kwargs)`; returns its index in the results and
    /// the handle that can cancel it.
    fn send(&self, item: Obj) -> PyResult<(usize, Pending)> {
        let mut guard = self.feeder.lock().unwrap_or_else(|p| p.into_inner());
        let Some((feeder, next)) = guard.as_mut() else {
            return Err(PyValueError::new_err("Pool not running"));
        };
        let (item, pending) = Item::new(item);
        feeder.send(item).map_err(|_| PyValueError::new_err("Pool not running"))?;
        *next += 1;
        Ok((*next - 1, pending))
    }

    /// Ends the input: the results end once every item sent has ended.
    fn close(&self) {
        self.feeder.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}
