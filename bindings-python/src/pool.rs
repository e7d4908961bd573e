//! [`Core`]: a `shoal_core::Pool` for the Python layer.

use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::types::PyList;
use shoal_core::{BatchBuilder, Pool};
use shoal_process::Process;
use shoal_threads::Threads;

use crate::batch::{Batch, BatchIter, Event, Queue, Stream};
use crate::chunk::{EACH, LocalMap, LocalRun, Obj, codec, map_codec};
use crate::errors::batch_error;
use crate::message::{self, ITEM_MESSAGES};
use crate::store::Store;

/// One pool of the Rust core, on the threads or the process backend.
#[pyclass(module = "shoal._shoal", frozen)]
pub(crate) struct Core {
    /// Taken out only by `Drop`.
    pool: Option<Pool>,
    /// The process that made the pool (a process forked from it, by user
    /// code, inherits the object but none of the pool's threads).
    pid: u32,
    /// Its workers are copies of this process (`fork_server`): `__main__`
    /// travels by name.
    main_by_name: bool,
    /// The pool's `task_timeout`, for the threads that run tasks
    /// (`crate::quiesce`); a batch's own overrides it.
    task_timeout: Option<Duration>,
}

impl Core {
    fn pool(&self) -> &Pool {
        self.pool.as_ref().expect("the pool lives as long as its Core")
    }

    /// A batch's builder with its options.
    fn builder(
        &self,
        chunksize: Option<usize>,
        max_in_flight: Option<usize>,
        task_timeout: Option<Duration>,
        progress_bar: bool,
        key: Option<String>,
    ) -> BatchBuilder<'_> {
        let mut b = self.pool().batch().progress_bar(progress_bar);
        if let Some(key) = key {
            b = b.chunking_key(key);
        }
        if let Some(n) = chunksize {
            b = b.chunksize(n);
        }
        if let Some(n) = max_in_flight {
            b = b.max_in_flight(n);
        }
        if let Some(d) = task_timeout {
            b = b.task_timeout(d);
        }
        b
    }

    /// Checks `mode`; the pickled function if the backend needs one.
    fn check_parts(
        &self,
        function: Option<Py<PyBytes>>,
        mode: u8,
    ) -> PyResult<Option<Py<PyBytes>>> {
        if mode > 2 {
            return Err(PyValueError::new_err(format!("mode must be 0, 1 or 2 (got {mode})")));
        }
        match (self.pool().runs_closures(), function) {
            (true, _) => Ok(None),
            (false, Some(f)) => Ok(Some(f)),
            (false, None) => Err(PyValueError::new_err(
                "function: the process backend needs the pickled function",
            )),
        }
    }
}

/// With `messages`, a batch whose tasks' messages join its results: the
/// queue they go to exists before the batch, to be handed to it
/// (`Batch::start`). The core names a message by its chunk's first item;
/// a message that names its item within the chunk is filed under that
/// item (see [`crate::message`]).
fn with_messages(b: BatchBuilder<'_>, messages: bool) -> (BatchBuilder<'_>, Option<Arc<Queue>>) {
    if !messages {
        return (b, None);
    }
    let queue = Queue::new();
    let q = queue.clone();
    let b = b.on_message(move |start, m| {
        let (index, m) = message::open(start, m);
        q.push(Event::Message(index, Box::new(m)));
    });
    (b, Some(queue))
}

impl Drop for Core {
    /// Dropping a pool closes it and waits for its workers, which may need
    /// the interpreter lock (a task still running, `worker_exit`): wait
    /// without holding it.
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else { return };
        if std::process::id() != self.pid {
            // In a forked copy of the process that made the pool: the
            // pool's threads do not exist here, so closing it would wait
            // forever. Leave it.
            std::mem::forget(pool);
            return;
        }
        Python::attach(|py| py.detach(move || drop(pool)));
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
    /// worker program and its arguments (a Python running `shoal._worker`),
    /// or, with `forkserver` (a Python executable), workers are forked from
    /// this process's fork server, or with `fork_server` from that copy of
    /// this process (see `forkserver.rs`).
    #[new]
    #[pyo3(signature = (backend, workers, *, min_workers=None, lifespan=None, task_timeout=None, idle_timeout=None, command=None, env=None, cwd=None, forkserver=None, fork_server=None, worker_init=None, worker_exit=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        backend: &str,
        workers: usize,
        min_workers: Option<usize>,
        lifespan: Option<u64>,
        task_timeout: Option<f64>,
        idle_timeout: Option<f64>,
        command: Option<Vec<String>>,
        env: Option<Vec<(String, String)>>,
        cwd: Option<String>,
        forkserver: Option<std::path::PathBuf>,
        fork_server: Option<PyRef<'_, crate::forkserver::ForkedServer>>,
        worker_init: Option<Obj>,
        worker_exit: Option<Obj>,
    ) -> PyResult<Self> {
        let main_by_name = fork_server.is_some();
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
        let task_timeout = seconds("task_timeout", task_timeout)?;
        if let Some(d) = task_timeout {
            b = b.task_timeout(d);
        }
        if let Some(d) = seconds("idle_timeout", idle_timeout)? {
            b = b.idle_timeout(d);
        }
        let built = match backend {
            "threads" => py.detach(|| b.build(Threads::new())),
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
                if let Some(python) = forkserver {
                    p = p.launcher(Arc::new(crate::forkserver::ForkServer { python }));
                }
                if let Some(server) = fork_server {
                    p = p.launcher(server.launcher());
                }
                // Built without the interpreter lock: worker hooks take it.
                py.detach(|| b.build(p))
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "backend must be \"process\" or \"threads\" (got {other:?})"
                )));
            }
        };
        let pool = built.map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Core { pool: Some(pool), pid: std::process::id(), main_by_name, task_timeout })
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
    /// `Failure` value with `ok` true. With `values`, the iterator yields
    /// the values themselves and raises the failures (`imap`). Batches
    /// with the same `key` (the function's name) start their automatic
    /// chunking from what the last one measured (`chunking_key`). With
    /// `messages` (not with `values`), the items' messages come too, as
    /// `(index, None, (kind, payload))` before the item's result: the
    /// chunks run their items one by one then, naming the running one
    /// (`ITEM_MESSAGES`), so that a message names its item.
    #[pyo3(signature = (func, function, mode, items, *, ordered=true, chunksize=None, max_in_flight=None, task_timeout=None, progress_bar=false, values=false, key=None, messages=false))]
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
        values: bool,
        key: Option<String>,
        messages: bool,
    ) -> PyResult<Batch> {
        if messages && values {
            return Err(PyValueError::new_err(
                "messages: needs (index, ok, value) results, not values",
            ));
        }
        let function = self.check_parts(function, mode)?;
        let mode = if messages { mode | ITEM_MESSAGES } else { mode };
        let store = Store::new(items)?;
        let task_timeout = seconds("task_timeout", task_timeout)?;
        let run = LocalMap::new(py, store.clone(), func, mode, task_timeout.or(self.task_timeout))?;
        let codec = function
            .map(|f| map_codec(py, store.clone(), f, mode, self.main_by_name))
            .transpose()?;
        let b = self.builder(chunksize, max_in_flight, task_timeout, progress_bar, key);
        let (b, queue) = with_messages(b, messages);
        let (items, error) = (store.indices(), store.error());
        // The store holds a chunk's items until it ended: a lost chunk runs
        // again item by item.
        let chunks = b.chunks_with(run, codec, items, ordered).retry_lost_items(|at| at);
        let iter = BatchIter::Chunks(chunks, store);
        Batch::start(iter, error, values, queue)
    }

    /// A whole ordered batch at once (`map`): every value in input order and
    /// the index of the first item whose value is a `shoal._codec.Failure`,
    /// if any (a lost chunk raises its exception). The whole input is taken
    /// first (as `multiprocessing` does), so chunks are sized to its length
    /// and are slices of it (see `Store`); the caller waits without the
    /// interpreter lock.
    #[pyo3(signature = (func, function, mode, items, *, chunksize=None, task_timeout=None, progress_bar=false, key=None))]
    #[allow(clippy::too_many_arguments)]
    fn map(
        slf: Py<Self>,
        py: Python<'_>,
        func: Obj,
        function: Option<Py<PyBytes>>,
        mode: u8,
        items: &Bound<'_, PyAny>,
        chunksize: Option<usize>,
        task_timeout: Option<f64>,
        progress_bar: bool,
        key: Option<String>,
    ) -> PyResult<(Py<PyList>, Option<usize>)> {
        let function = slf.get().check_parts(function, mode)?;
        let store = Store::eager(items)?;
        let task_timeout = seconds("task_timeout", task_timeout)?;
        let limit = task_timeout.or(slf.get().task_timeout);
        let run = LocalMap::new(py, store.clone(), func, mode, limit)?;
        let by_name = slf.get().main_by_name;
        let codec = function.map(|f| map_codec(py, store.clone(), f, mode, by_name)).transpose()?;
        // The batch runs on a thread of its own (which keeps the Core
        // alive), so that Ctrl-C interrupts the caller's wait.
        let core = slf.clone_ref(py);
        let n = store.len().unwrap_or(0);
        let out = crate::interrupt::run(py, "shoal-map", move || {
            core.get()
                .builder(chunksize, None, task_timeout, progress_bar, key)
                .map_positions_with(run, codec, n)
                .map(drop)
        });
        // Interrupted (Ctrl-C): the chunks not yet sent end at once, so
        // the next call does not wait behind them.
        let out = out.inspect_err(|_| store.stop())?;
        if let Err(e) = out {
            return Err(batch_error(py, &e));
        }
        let (values, first_bad) = store.join(py)?;
        Ok((values.unbind(), first_bad))
    }

    /// Starts an open batch for single calls (`apply_async`, `submit`):
    /// each item is `(func, args, kwargs)`, `func` pickled for the process
    /// backend. Returns the feeder and the results, `(index, ok, value)` in
    /// completion order, `index` numbering items in the order sent; with
    /// `messages`, also the tasks' messages as `(index, None, (kind,
    /// payload))`, before their task's result. Chunks hold one call each
    /// then, so a message belongs to exactly one call.
    #[pyo3(signature = (*, task_timeout=None, messages=false))]
    fn open(
        &self,
        py: Python<'_>,
        task_timeout: Option<f64>,
        messages: bool,
    ) -> PyResult<(Stream, Batch)> {
        let task_timeout = seconds("task_timeout", task_timeout)?;
        let run = LocalRun::new(py, py.None(), EACH, task_timeout.or(self.task_timeout))?;
        let codec = if self.pool().runs_closures() {
            None
        } else {
            Some(codec(py, PyBytes::new(py, b"").unbind(), EACH, self.main_by_name)?)
        };
        // With messages, a chunk holds one call: calls run as they are,
        // so a message names its chunk's only call.
        let chunksize = messages.then_some(1);
        let b = self.builder(chunksize, None, task_timeout, false, None);
        let (b, queue) = with_messages(b, messages);
        let (feeder, results) = b.open_with(run, codec);
        let stream = Stream::new(feeder);
        let batch = Batch::start(BatchIter::Open(results), Default::default(), false, queue)?;
        Ok((stream, batch))
    }

    /// Accepts no new tasks; submitted ones still run. (Without the
    /// interpreter lock: closing waits for submissions in progress, and
    /// those may be pickling.)
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.pool().close());
    }

    /// Waits until the pool closed and every worker exited.
    fn join(slf: Py<Self>, py: Python<'_>) -> PyResult<()> {
        let core = slf.clone_ref(py);
        crate::interrupt::run(py, "shoal-join", move || core.get().pool().join())
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
