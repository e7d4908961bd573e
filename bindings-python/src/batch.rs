//! [`Batch`]: the results of one batch as a Python iterator, [`Items`]: a
//! batch's input, and [`Stream`]: the input of an open batch.
//!
//! Iterated (`imap`), a batch's results are pulled from the core by a
//! *pump* thread, which waits for chunks without the interpreter lock and
//! hands results over a bounded [`Queue`] ([`PUMP_CAPACITY`], so a lazy
//! `imap` stays bounded). Python takes every result queued at once into a
//! buffer of its own, so that the pump and the consumer meet once per
//! handful of results, not once per result (a shared slot per item moved
//! cache lines between the two cores for every one of W6's million
//! values), and takes them from there without releasing the lock; it
//! only blocks, lock released, when none is ready. (`map` does not come here: `Core::map` drains
//! the core's eager map without the lock and takes it once at the end.)
//! The lock is never held while the core waits, so the threads that need
//! it to unpickle chunks are not starved.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyIterator, PyList, PyTuple, PyType};
use shoal_core::backend::TaskMessage;
use shoal_core::error::BatchError;
use shoal_core::{Feeder, Imap, MapUnordered, OpenItems};

use crate::chunk::{Item, LocalRun, Obj};
use crate::errors::batch_error;
use crate::interrupt::SIGNAL_CHECK;

/// Results the pump may hold ahead of the consumer.
pub(crate) const PUMP_CAPACITY: usize = 8192;

/// Items pulled from a lazy Python input per taking of the lock: a lazy
/// chunk's worth (the core's `LAZY_CHUNK_CAP`), so that the pump asks for
/// the lock about twice per chunk, not sixteen times, while the consumer
/// holds it draining results (each ask can wait for the interpreter's
/// switch interval).
const PULL: usize = 4096;

/// The exception a batch's input raised, re-raised after its results.
pub(crate) type InputError = Arc<Mutex<Option<PyErr>>>;

/// The items of a batch: a list or tuple is copied (its length is known,
/// so chunks can be sized to it); anything else is pulled lazily, [`PULL`]
/// items per taking of the interpreter lock.
pub(crate) struct Items {
    known: Option<std::vec::IntoIter<Item>>,
    lazy: Option<Py<PyIterator>>,
    pulled: VecDeque<Item>,
    error: InputError,
}

impl Items {
    pub(crate) fn new(items: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut this =
            Items { known: None, lazy: None, pulled: VecDeque::new(), error: Default::default() };
        if let Ok(list) = items.cast::<PyList>() {
            this.known =
                Some(list.iter().map(|x| Item::new(x.unbind())).collect::<Vec<_>>().into_iter());
        } else if let Ok(t) = items.cast::<PyTuple>() {
            this.known =
                Some(t.iter().map(|x| Item::new(x.unbind())).collect::<Vec<_>>().into_iter());
        } else {
            this.lazy = Some(items.try_iter()?.unbind());
        }
        Ok(this)
    }

    pub(crate) fn error(&self) -> InputError {
        self.error.clone()
    }

    fn pull(&mut self) {
        let Some(it) = self.lazy.take() else { return };
        let ended = Python::attach(|py| {
            let mut it = it.bind(py).clone();
            for _ in 0..PULL {
                match it.next() {
                    Some(Ok(x)) => self.pulled.push_back(Item::new(x.unbind())),
                    Some(Err(e)) => {
                        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return true;
                    }
                    None => return true,
                }
            }
            false
        });
        if !ended {
            self.lazy = Some(it);
        }
    }
}

impl Iterator for Items {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if let Some(k) = &mut self.known {
            return k.next();
        }
        if self.pulled.is_empty() {
            self.pull();
        }
        self.pulled.pop_front()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.known {
            Some(k) => k.size_hint(),
            None if self.lazy.is_none() => (self.pulled.len(), Some(self.pulled.len())),
            None => (self.pulled.len(), None),
        }
    }
}

/// The core's iterator behind a [`Batch`].
pub(crate) enum BatchIter {
    /// With the index of the next item.
    Ordered(Imap<Items, LocalRun, Obj>, usize),
    Unordered(MapUnordered<Items, LocalRun, Obj>),
    Open(MapUnordered<OpenItems<Item>, LocalRun, Obj>),
}

/// An item's index and value or error. The error is boxed, and so is a
/// message: every event crosses from the pump's core to the consumer's,
/// and 24 bytes an event move in a third of the cache lines of 80 (W6
/// moves a million).
type Outcome = (usize, Result<Obj, Box<BatchError>>);

/// What the pump's queue carries.
pub(crate) enum Event {
    /// An item ended.
    Outcome(Outcome),
    /// A task's message, with its chunk's first item index (open batches
    /// made with messages).
    Message(usize, Box<TaskMessage>),
    /// The batch ended. Explicit, because message senders may outlive the
    /// pump by a moment.
    End,
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
    /// The consumer is gone (its batch dropped): producers stop.
    gone: bool,
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

    /// Adds an event, waiting while the queue is full. False once the
    /// consumer is gone.
    pub(crate) fn push(&self, event: Event) -> bool {
        let mut s = lock(&self.state);
        while s.events.len() >= PUMP_CAPACITY && !s.gone {
            s.producers_wait += 1;
            s = self.room.wait(s).unwrap_or_else(|p| p.into_inner());
            s.producers_wait -= 1;
        }
        if s.gone {
            return false;
        }
        s.events.push_back(event);
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
        self.ready.notify_all();
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

fn unordered(r: Result<(usize, Obj), BatchError>) -> Outcome {
    match r {
        Ok((index, v)) => (index, Ok(v)),
        Err(e) => (e.index().unwrap_or(usize::MAX), Err(Box::new(e))),
    }
}

impl Iterator for BatchIter {
    type Item = Outcome;

    fn next(&mut self) -> Option<Outcome> {
        match self {
            BatchIter::Ordered(it, i) => {
                let r = it.next()?;
                let index = r.as_ref().err().and_then(BatchError::index).unwrap_or(*i);
                *i = index + 1;
                Some((index, r.map_err(Box::new)))
            }
            BatchIter::Unordered(it) => Some(unordered(it.next()?)),
            BatchIter::Open(it) => Some(unordered(it.next()?)),
        }
    }
}

/// The results of one batch: `(index, ok, value)`, or with `values` the
/// values themselves (failures raised).
#[pyclass(module = "shoal._shoal", frozen)]
pub(crate) struct Batch {
    /// The core's iterator until the pump takes it (first `next`) or
    /// `collect` drains it.
    iter: Mutex<Option<BatchIter>>,
    /// The pump's queue.
    queue: Arc<Queue>,
    /// Set once the pump started (or was found not needed).
    started: OnceLock<()>,
    /// Events taken from the queue, not yet from Python.
    taken: Mutex<VecDeque<Event>>,
    /// Set once `End` was taken.
    over: AtomicBool,
    /// Tells the pump to stop (`cancel`).
    cancelled: Arc<AtomicBool>,
    error: InputError,
    values: bool,
}

impl Batch {
    pub(crate) fn start(iter: BatchIter, error: InputError, values: bool) -> PyResult<Self> {
        Self::start_with(iter, error, values, None)
    }

    /// [`Batch::start`] on a queue made beforehand (for message senders).
    pub(crate) fn start_with(
        iter: BatchIter,
        error: InputError,
        values: bool,
        queue: Option<Arc<Queue>>,
    ) -> PyResult<Self> {
        Ok(Batch {
            iter: Mutex::new(Some(iter)),
            queue: queue.unwrap_or_else(Queue::new),
            started: OnceLock::new(),
            taken: Mutex::new(VecDeque::new()),
            over: AtomicBool::new(false),
            cancelled: Arc::new(AtomicBool::new(false)),
            error,
            values,
        })
    }

    /// Starts the pump on first use.
    fn pump(&self) {
        self.started.get_or_init(|| {
            let Some(iter) = lock(&self.iter).take() else {
                self.queue.end(); // cancelled: over
                return;
            };
            let cancelled = self.cancelled.clone();
            let end = EndOnDrop(self.queue.clone());
            let pump = move || {
                for outcome in iter {
                    // A gone consumer or `cancel`: dropping the iterator
                    // cancels the chunks still queued.
                    if !end.0.push(Event::Outcome(outcome)) || cancelled.load(Ordering::Acquire) {
                        break;
                    }
                }
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
            let mut batch = {
                let mut taken = lock(&self.taken);
                match taken.pop_front() {
                    Some(Event::End) => {
                        self.over.store(true, Ordering::Release);
                        return self.ended();
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
            None | Some(Event::End) => Err(PyStopIteration::new_err(())),
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
pub(crate) fn failure_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static FAILURE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    FAILURE.import(py, "shoal._codec", "Failure")
}

/// Whether `v` is a `Failure` (`failure`, from [`failure_type`]). The
/// exact type, not `isinstance`: for an object of another type,
/// `isinstance` also looks up its `__class__` attribute, ~40 ns an item
/// (4 ms of W1's 100k-item `map`, 40 ms of W6's million `imap` values),
/// and `Failure` is shoal's own class, never subclassed.
pub(crate) fn is_failure(v: &Bound<'_, PyAny>, failure: &Bound<'_, PyType>) -> bool {
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

    fn __next__(&self, py: Python<'_>) -> PyResult<Obj> {
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

    /// Stops the batch: queued chunks are dropped, running ones finish.
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        lock(&self.iter).take();
    }
}

impl Drop for Batch {
    /// The consumer is gone: a pump waiting for room stops.
    fn drop(&mut self) {
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
    /// Adds `(func, args, kwargs)`; returns its index in the results.
    fn send(&self, item: Obj) -> PyResult<usize> {
        let mut guard = self.feeder.lock().unwrap_or_else(|p| p.into_inner());
        let Some((feeder, next)) = guard.as_mut() else {
            return Err(PyValueError::new_err("Pool not running"));
        };
        feeder.send(Item::new(item)).map_err(|_| PyValueError::new_err("Pool not running"))?;
        *next += 1;
        Ok(*next - 1)
    }

    /// Ends the input: the results end once every item sent has ended.
    fn close(&self) {
        self.feeder.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}
