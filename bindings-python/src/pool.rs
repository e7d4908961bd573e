//! [`Core`]: a `shoal_core::Pool` for the Python layer, and [`Batch`], the
//! lazy iterator over one batch's results.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyList, PyTuple};
use shoal_core::error::BatchError;
use shoal_core::{Feeder, Imap, MapUnordered, OpenItems, Pool};
use shoal_process::Process;
use shoal_threads::Threads;

use crate::chunk::{EACH, LocalRun, Obj, codec};
use crate::errors::batch_error;

/// One pool of the Rust core, on the threads or the process backend.
#[pyclass(module = "shoal._shoal", frozen)]
pub(crate) struct Core {
    /// Taken out only by `Drop`.
    pool: Option<Pool>,
}

impl Core {
    fn pool(&self) -> &Pool {
        self.pool.as_ref().expect("the pool lives as long as its Core")
    }
}

impl Drop for Core {
    /// Dropping a pool closes it and waits for its workers, which may need
    /// the interpreter lock (a task still running, `worker_exit`): wait
    /// without holding it.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            Python::attach(|py| py.detach(move || drop(pool)));
        }
    }
}

fn seconds(name: &'static str, s: Option<f64>) -> PyResult<Option<Duration>> {
    match s {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(PyValueError::new_err(format!(
            "{name} must be a positive number of seconds (got {s})"
        ))),
    }
}

#[pymethods]
impl Core {
    /// `backend` is "threads" or "process"; for "process", `command` is the
    /// worker program and its arguments (a Python running `shoal._worker`).
    #[new]
    #[pyo3(signature = (backend, workers, *, min_workers=None, lifespan=None, task_timeout=None, idle_timeout=None, command=None, env=None, cwd=None, worker_init=None, worker_exit=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        backend: &str,
        workers: usize,
        min_workers: Option<usize>,
        lifespan: Option<u64>,
        task_timeout: Option<f64>,
        idle_timeout: Option<f64>,
        command: Option<Vec<String>>,
        env: Option<Vec<(String, String)>>,
        cwd: Option<String>,
        worker_init: Option<Obj>,
        worker_exit: Option<Obj>,
    ) -> PyResult<Self> {
        let mut b = Pool::builder().max(workers).min(min_workers.unwrap_or(workers));
        // Threads only (worker processes run theirs themselves): called
        // with the worker id on the worker's thread as it starts and stops.
        if let Some(init) = worker_init {
            b = b.worker_init(move |w| {
                Python::attach(|py| {
                    init.call1(py, (w.0,)).map(|_| ()).map_err(|e| crate::errors::describe(py, &e))
                })
            });
        }
        if let Some(exit) = worker_exit {
            b = b.worker_exit(move |w, _: Option<()>| {
                Python::attach(|py| {
                    if let Err(e) = exit.call1(py, (w.0,)) {
                        e.print(py);
                    }
                })
            });
        }
        if let Some(n) = lifespan {
            b = b.lifespan(n);
        }
        if let Some(d) = seconds("task_timeout", task_timeout)? {
            b = b.task_timeout(d);
        }
        if let Some(d) = seconds("idle_timeout", idle_timeout)? {
            b = b.idle_timeout(d);
        }
        let built = match backend {
            "threads" => b.build(Threads::new()),
            "process" => {
                let command = command.unwrap_or_default();
                let Some((program, args)) = command.split_first() else {
                    return Err(PyValueError::new_err(
                        "command: the process backend needs a worker program",
                    ));
                };
                let mut p = Process::new().program(program);
                for a in args {
                    p = p.arg(a);
                }
                for (k, v) in env.unwrap_or_default() {
                    p = p.env(k, v);
                }
                if let Some(dir) = cwd {
                    p = p.current_dir(dir);
                }
                b.build(p)
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "backend must be \"process\" or \"threads\" (got {other:?})"
                )));
            }
        };
        let pool = built.map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Core { pool: Some(pool) })
    }

    /// The backend's name.
    #[getter]
    fn backend(&self) -> String {
        self.pool().backend_name().to_string()
    }

    /// The most workers the pool runs.
    #[getter]
    fn max_workers(&self) -> usize {
        self.pool().max_workers()
    }

    /// Workers alive now.
    fn live_workers(&self) -> usize {
        self.pool().live_workers()
    }

    /// Starts a batch: `func` over `items` in chunks. `mode` says how an
    /// item is passed (see `shoal._codec`); `function` is `func` pickled,
    /// for the process backend. Returns the iterator of
    /// `(index, ok, value)`: `ok` false means `value` is the exception of a
    /// lost chunk (worker died, timeout); a task's own exception is a
    /// `Failure` value with `ok` true.
    #[pyo3(signature = (func, function, mode, items, *, ordered=true, chunksize=None, max_in_flight=None, task_timeout=None, progress_bar=false))]
    #[allow(clippy::too_many_arguments)]
    fn batch(
        &self,
        py: Python<'_>,
        func: Obj,
        function: Option<Py<PyBytes>>,
        mode: u8,
        items: &Bound<'_, PyAny>,
        ordered: bool,
        chunksize: Option<usize>,
        max_in_flight: Option<usize>,
        task_timeout: Option<f64>,
        progress_bar: bool,
    ) -> PyResult<Batch> {
        if mode > 2 {
            return Err(PyValueError::new_err(format!("mode must be 0, 1 or 2 (got {mode})")));
        }
        let items = Items::new(items)?;
        let error = items.error.clone();
        let run = LocalRun::new(py, func, mode)?;
        let codec = match (self.pool().runs_closures(), function) {
            (true, _) => None,
            (false, Some(f)) => Some(codec(py, f, mode)?),
            (false, None) => {
                return Err(PyValueError::new_err(
                    "function: the process backend needs the pickled function",
                ));
            }
        };
        let mut b = self.pool().batch().progress_bar(progress_bar);
        if let Some(n) = chunksize {
            b = b.chunksize(n);
        }
        if let Some(n) = max_in_flight {
            b = b.max_in_flight(n);
        }
        if let Some(d) = seconds("task_timeout", task_timeout)? {
            b = b.task_timeout(d);
        }
        let iter = if ordered {
            BatchIter::Ordered(b.imap_with(run, codec, items), 0)
        } else {
            BatchIter::Unordered(b.map_unordered_with(run, codec, items))
        };
        Ok(Batch { iter: Mutex::new(Some(iter)), error })
    }

    /// Starts an open batch for single calls (`apply_async`, `submit`):
    /// each item is `(func, args, kwargs)`, `func` pickled for the process
    /// backend. Returns the feeder and the results, `(index, ok, value)` in
    /// completion order, `index` numbering items in the order sent.
    #[pyo3(signature = (*, task_timeout=None))]
    fn open(&self, py: Python<'_>, task_timeout: Option<f64>) -> PyResult<(Stream, Batch)> {
        let run = LocalRun::new(py, py.None(), EACH)?;
        let codec = if self.pool().runs_closures() {
            None
        } else {
            Some(codec(py, PyBytes::new(py, b"").unbind(), EACH)?)
        };
        let mut b = self.pool().batch();
        if let Some(d) = seconds("task_timeout", task_timeout)? {
            b = b.task_timeout(d);
        }
        let (feeder, results) = b.open_with(run, codec);
        let stream = Stream { feeder: Mutex::new(Some((feeder, 0))) };
        let batch = Batch {
            iter: Mutex::new(Some(BatchIter::Open(results))),
            error: Arc::new(Mutex::new(None)),
        };
        Ok((stream, batch))
    }

    /// Accepts no new tasks; submitted ones still run.
    fn close(&self) {
        self.pool().close();
    }

    /// Waits until the pool closed and every worker exited.
    fn join(&self, py: Python<'_>) {
        py.detach(|| self.pool().join());
    }

    /// Cancels every task, stops the workers and waits for them.
    fn terminate(&self, py: Python<'_>) {
        py.detach(|| self.pool().terminate());
    }

    /// Stops handing tasks to workers; running tasks finish.
    fn suspend(&self) {
        self.pool().suspend();
    }

    /// Hands tasks to workers again.
    fn resume(&self) {
        self.pool().resume();
    }

    /// The per-worker table (tasks, busy/idle time, utilisation).
    fn insights(&self, py: Python<'_>) -> String {
        py.detach(|| self.pool().insights().to_string())
    }
}

/// The items of a batch: a list or tuple is copied (its length is known,
/// so chunks can be sized to it); anything else is pulled lazily.
pub(crate) struct Items {
    known: Option<std::vec::IntoIter<Obj>>,
    lazy: Option<Py<PyIterator>>,
    /// The exception the input raised, re-raised at the end of the batch.
    error: Arc<Mutex<Option<PyErr>>>,
}

impl Items {
    fn new(items: &Bound<'_, PyAny>) -> PyResult<Self> {
        let error = Arc::new(Mutex::new(None));
        if let Ok(list) = items.cast::<PyList>() {
            let v: Vec<Obj> = list.iter().map(Bound::unbind).collect();
            return Ok(Items { known: Some(v.into_iter()), lazy: None, error });
        }
        if let Ok(t) = items.cast::<PyTuple>() {
            let v: Vec<Obj> = t.iter().map(Bound::unbind).collect();
            return Ok(Items { known: Some(v.into_iter()), lazy: None, error });
        }
        let it = items.try_iter()?.unbind();
        Ok(Items { known: None, lazy: Some(it), error })
    }
}

impl Iterator for Items {
    type Item = Obj;

    fn next(&mut self) -> Option<Obj> {
        if let Some(k) = &mut self.known {
            return k.next();
        }
        let it = self.lazy.as_ref()?;
        let next = Python::attach(|py| match it.bind(py).clone().next() {
            Some(Ok(x)) => Some(x.unbind()),
            Some(Err(e)) => {
                *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                None
            }
            None => None,
        });
        if next.is_none() {
            self.lazy = None;
        }
        next
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.known {
            Some(k) => k.size_hint(),
            None if self.lazy.is_none() => (0, Some(0)),
            None => (0, None),
        }
    }
}

enum BatchIter {
    /// With the index of the next item.
    Ordered(Imap<Items, LocalRun, Obj>, usize),
    Unordered(MapUnordered<Items, LocalRun, Obj>),
    Open(MapUnordered<OpenItems<Obj>, LocalRun, Obj>),
}

fn unordered(r: Result<(usize, Obj), BatchError>) -> (usize, Result<Obj, BatchError>) {
    match r {
        Ok((index, v)) => (index, Ok(v)),
        Err(e) => (e.index().unwrap_or(usize::MAX), Err(e)),
    }
}

impl BatchIter {
    fn next(&mut self) -> Option<(usize, Result<Obj, BatchError>)> {
        match self {
            BatchIter::Ordered(it, i) => {
                let r = it.next()?;
                let index = r.as_ref().err().and_then(BatchError::index).unwrap_or(*i);
                *i = index + 1;
                Some((index, r))
            }
            BatchIter::Unordered(it) => Some(unordered(it.next()?)),
            BatchIter::Open(it) => Some(unordered(it.next()?)),
        }
    }
}

/// The results of one batch, as `(index, ok, value)`.
#[pyclass(module = "shoal._shoal")]
pub(crate) struct Batch {
    iter: Mutex<Option<BatchIter>>,
    error: Arc<Mutex<Option<PyErr>>>,
}

#[pymethods]
impl Batch {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<(usize, bool, Obj)> {
        let next = py.detach(|| {
            let mut guard = self.iter.lock().unwrap_or_else(|p| p.into_inner());
            let it = guard.as_mut()?;
            let next = it.next();
            if next.is_none() {
                *guard = None;
            }
            next
        });
        match next {
            Some((index, Ok(v))) => Ok((index, true, v)),
            Some((index, Err(e))) => {
                if matches!(e, BatchError::Failed { .. }) {
                    Ok((index, false, batch_error(py, &e).into_value(py).into_any()))
                } else {
                    Err(batch_error(py, &e))
                }
            }
            None => {
                if let Some(e) = self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(e);
                }
                Err(PyStopIteration::new_err(()))
            }
        }
    }

    /// Drains the batch: every value in input order (for an ordered batch),
    /// and the index of the first item that failed (its value is a
    /// `failure` instance or, for a lost chunk, the exception), if any.
    fn collect(
        &self,
        py: Python<'_>,
        failure: &Bound<'_, PyAny>,
    ) -> PyResult<(Py<PyList>, Option<usize>)> {
        let mut values: Vec<Obj> = Vec::new();
        let mut first_bad: Option<usize> = None;
        loop {
            let chunk = py.detach(|| {
                let mut guard = self.iter.lock().unwrap_or_else(|p| p.into_inner());
                let Some(it) = guard.as_mut() else { return Vec::new() };
                // Take what is ready in one go (up to a chunk's worth).
                let mut got = Vec::new();
                while let Some(x) = it.next() {
                    got.push(x);
                    if got.len() >= 4096 {
                        break;
                    }
                }
                if got.is_empty() {
                    *guard = None;
                }
                got
            });
            if chunk.is_empty() {
                break;
            }
            for (index, r) in chunk {
                let v = match r {
                    Ok(v) => {
                        if first_bad.is_none() && v.bind(py).is_instance(failure)? {
                            first_bad = Some(index);
                        }
                        v
                    }
                    Err(e @ BatchError::Failed { .. }) => {
                        if first_bad.is_none_or(|b| index < b) {
                            first_bad = Some(index);
                        }
                        batch_error(py, &e).into_value(py).into_any()
                    }
                    Err(e) => return Err(batch_error(py, &e)),
                };
                values.push(v);
            }
        }
        if let Some(e) = self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        Ok((PyList::new(py, values)?.unbind(), first_bad))
    }

    /// Stops the batch: queued chunks are dropped, running ones finish.
    fn cancel(&self, py: Python<'_>) {
        py.detach(|| {
            self.iter.lock().unwrap_or_else(|p| p.into_inner()).take();
        });
    }
}

/// The input of an open batch ([`Core::open`]).
#[pyclass(module = "shoal._shoal", frozen)]
pub(crate) struct Stream {
    /// The feeder and the index of the next item; `None` once closed.
    feeder: Mutex<Option<(Feeder<Obj>, usize)>>,
}

#[pymethods]
impl Stream {
    /// Adds `(func, args, kwargs)`; returns its index in the results.
    fn send(&self, item: Obj) -> PyResult<usize> {
        let mut guard = self.feeder.lock().unwrap_or_else(|p| p.into_inner());
        let Some((feeder, next)) = guard.as_mut() else {
            return Err(PyValueError::new_err("Pool not running"));
        };
        feeder.send(item).map_err(|_| PyValueError::new_err("Pool not running"))?;
        *next += 1;
        Ok(*next - 1)
    }

    /// Ends the input: the results end once every item sent has ended.
    fn close(&self) {
        self.feeder.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}
