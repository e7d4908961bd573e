//! The [`Pool`]: what users hold. Built by [`PoolBuilder`] on any
//! [`Backend`]; runs a [`driver`] thread; hands out [`TaskHandle`]s and runs
//! batches ([`batch`]) and scopes ([`scope`]).

pub(crate) mod batch;
pub(crate) mod driver;
pub(crate) mod events;
pub(crate) mod handle;
pub(crate) mod open;
pub(crate) mod scope;
mod slice;
pub mod wait;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{Backend, ExitHook, InitHook, LocalWork, WorkKind, WorkerState};
use crate::error::{BatchError, BuildError, SubmitError, SubmitRefusal};
use crate::function::Function;
use crate::ids::{TaskId, WorkerId};
use crate::scheduler::{Config, Scheduler, TaskOptions};
use crate::stats::Insights;

pub use batch::{
    BatchBuilder, ChunkFn, ChunkOutcome, Chunks, Codec, DecodeChunk, EncodeChunk, INPUT_BUDGET,
    Imap, LAZY_CHUNK_CAP, MapUnordered, OnMessage,
};
pub use events::{BatchId, PoolEvent};
pub use handle::{Message, Messages, TaskHandle};
pub use open::{Feeder, OpenItems};
pub use scope::{Scope, ScopedHandle};

use driver::{Driver, DriverLink, Hooks, Latch, Msg, Submission, WorkSource};
use handle::{TaskCell, TaskEnd};

/// Builds a [`Pool`]. Every option is checked in [`PoolBuilder::build`],
/// which names the offending option in its error.
///
/// | option | default | meaning |
/// |---|---|---|
/// | `min` | `max` | workers kept even when idle (startAt) |
/// | `max` | `min`, or the number of CPUs | workers at most (stretchTo) |
/// | `workers(n)` | | sets `min = max = n` |
/// | `idle_timeout` | 10 s | an idle worker above `min` stops after this |
/// | `lifespan` | none | replace a worker after it ran this many tasks (chunks) |
/// | `task_timeout` | none | fail a task that runs longer (per item in batches) |
/// | `worker_init` | none | makes per-worker state, runs first in each worker |
/// | `worker_exit` | none | gets the state back, runs last in each worker |
/// | `max_start_failures` | 3 | consecutive failed starts that break the pool |
/// | `progress_bar` | false | default for batches: draw a progress bar |
#[derive(Clone, Default)]
pub struct PoolBuilder {
    min: Option<usize>,
    max: Option<usize>,
    idle_timeout: Option<Duration>,
    lifespan: Option<u64>,
    task_timeout: Option<Duration>,
    init: Option<InitHook>,
    exit: Option<ExitHook>,
    max_start_failures: Option<u32>,
    progress_bar: bool,
}

impl PoolBuilder {
    /// Workers kept alive even when idle (startAt).
    pub fn min(mut self, n: usize) -> Self {
        self.min = Some(n);
        self
    }
    /// Workers at most (stretchTo); the pool grows while tasks wait.
    pub fn max(mut self, n: usize) -> Self {
        self.max = Some(n);
        self
    }
    /// A fixed number of workers (`min = max = n`).
    pub fn workers(self, n: usize) -> Self {
        self.min(n).max(n)
    }
    /// How long a worker above `min` may idle before it stops.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = Some(d);
        self
    }
    /// Replace each worker after it ran `n` tasks (mpire's
    /// `worker_lifespan`, multiprocessing's `maxtasksperchild`).
    pub fn lifespan(mut self, n: u64) -> Self {
        self.lifespan = Some(n);
        self
    }
    /// Default timeout of every task; in batches, per item of a chunk.
    pub fn task_timeout(mut self, d: Duration) -> Self {
        self.task_timeout = Some(d);
        self
    }
    /// Runs first in every worker and makes its state, which tasks reach
    /// with [`crate::task::with_state`]. An `Err` fails the worker's start.
    pub fn worker_init<S, F>(mut self, init: F) -> Self
    where
        S: Send + 'static,
        F: Fn(WorkerId) -> Result<S, String> + Send + Sync + 'static,
    {
        self.init = Some(Arc::new(move |w| init(w).map(|s| Box::new(s) as WorkerState)));
        self
    }
    /// Runs last in every worker with the state `worker_init` made (or
    /// `None` without `worker_init`, or if it had another type).
    pub fn worker_exit<S, F>(mut self, exit: F) -> Self
    where
        S: Send + 'static,
        F: Fn(WorkerId, Option<S>) + Send + Sync + 'static,
    {
        self.exit = Some(Arc::new(move |w, s: Option<WorkerState>| {
            let s = s.and_then(|b| b.downcast::<S>().ok()).map(|b| *b);
            exit(w, s)
        }));
        self
    }
    /// Consecutive failed worker starts after which the pool is broken.
    pub fn max_start_failures(mut self, n: u32) -> Self {
        self.max_start_failures = Some(n);
        self
    }
    /// Draw a progress bar for every batch (each batch can override it).
    pub fn progress_bar(mut self, on: bool) -> Self {
        self.progress_bar = on;
        self
    }

    fn config(&self) -> Result<Config, BuildError> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (min, max) = match (self.min, self.max) {
            (Some(min), Some(max)) => (min, max),
            (Some(min), None) => (min, min.max(cpus)),
            (None, Some(max)) => (max, max),
            (None, None) => (cpus, cpus),
        };
        if max == 0 {
            return Err(BuildError::new("max", "a pool needs at least 1 worker (got 0)"));
        }
        if min > max {
            return Err(BuildError::new(
                "min",
                format!("must not exceed `max` (got min = {min}, max = {max})"),
            ));
        }
        if self.lifespan == Some(0) {
            return Err(BuildError::new("lifespan", "must be at least 1 task (got 0)"));
        }
        if self.task_timeout == Some(Duration::ZERO) {
            return Err(BuildError::new("task_timeout", "must be longer than zero"));
        }
        if self.max_start_failures == Some(0) {
            return Err(BuildError::new("max_start_failures", "must be at least 1 (got 0)"));
        }
        let d = Config::default();
        Ok(Config {
            min,
            max,
            idle_timeout: self.idle_timeout.unwrap_or(d.idle_timeout),
            lifespan: self.lifespan,
            max_start_failures: self.max_start_failures.unwrap_or(d.max_start_failures),
        })
    }

    /// Checks the options and starts the pool on `backend`.
    pub fn build(self, backend: impl Backend + 'static) -> Result<Pool, BuildError> {
        self.build_boxed(Box::new(backend))
    }

    /// [`PoolBuilder::build`] for a backend already boxed (plugins).
    pub fn build_boxed(self, backend: Box<dyn Backend>) -> Result<Pool, BuildError> {
        let config = self.config()?;
        let (link, tx, rx) = driver::channel();
        let events = Arc::new(events::EventHub::default());
        let drained = Arc::new(Latch::default());
        let final_insights = Arc::new(Mutex::new(None));
        let accepts_local = backend.accepts(WorkKind::Local);
        let accepts_named = backend.accepts(WorkKind::Named);
        let backend_name = backend.name().to_string();
        let spin = driver::spin_of(backend.as_ref());
        let hooks = Hooks { init: self.init, exit: self.exit };
        let driver = Driver::new(
            Scheduler::new(config.clone()),
            backend,
            tx,
            rx,
            hooks,
            events.clone(),
            drained.clone(),
            final_insights.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("shoal-dispatcher".into())
            .spawn(move || driver.run())
            .map_err(|e| BuildError::new("backend", format!("cannot start the dispatcher: {e}")))?;
        Ok(Pool {
            inner: Arc::new(Inner {
                link,
                gate: RwLock::new(false),
                next_task: AtomicU64::new(0),
                next_batch: AtomicU64::new(0),
                events,
                drained,
                final_insights,
                dispatcher: Mutex::new(Some(thread)),
                config,
                task_timeout: self.task_timeout,
                accepts_local,
                accepts_named,
                backend_name,
                spin,
                progress_bar: self.progress_bar,
                learned: Mutex::new(HashMap::new()),
                spare_buffers: Mutex::new(Vec::new()),
            }),
        })
    }
}

pub(crate) struct Inner {
    link: DriverLink,
    /// `true` once closed; submit holds it shared so no task slips past a
    /// close.
    gate: RwLock<bool>,
    next_task: AtomicU64,
    next_batch: AtomicU64,
    events: Arc<events::EventHub>,
    drained: Arc<Latch>,
    /// The insights as the pool drained, for `insights` after `join`.
    final_insights: Arc<Mutex<Option<Insights>>>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    config: Config,
    task_timeout: Option<Duration>,
    accepts_local: bool,
    accepts_named: bool,
    backend_name: String,
    /// How long a batch's wait for its chunks spins (`Backend::spin`).
    spin: Duration,
    progress_bar: bool,
    /// What the last batch under each chunking key measured
    /// ([`BatchBuilder::chunking_key`]).
    learned: Mutex<HashMap<Arc<str>, crate::chunking::Learned>>,
    /// Argument buffers of named chunks that finished batches left, for
    /// the next batch (see [`Inner::keep_buffers`]).
    spare_buffers: Mutex<Vec<Vec<u8>>>,
}

/// The most argument-buffer bytes a pool keeps between batches. Without
/// them every `map_fn` encodes into fresh memory, and whenever glibc had
/// handed the last batch's buffers back to the kernel it page-faults them
/// in again: P-W1 (800 KB of arguments per map) ran in one of two modes,
/// ~0.45 ms or ~1.4 ms, the slow one with 100-190k page faults per 21
/// rounds instead of 4-7k. 8 MiB covers the chunks in flight of such maps
/// and bounds what an idle pool holds.
const KEPT_BUFFER_BYTES: usize = 8 << 20;

/// The most chunking keys a pool remembers; beyond, it starts over (a
/// forgotten key costs one batch its probes, nothing else).
const LEARNED_KEYS: usize = 64;

/// Adds `more` to `kept`, emptied, while their capacities stay within
/// `cap` bytes in all; the rest are freed.
fn keep_within(kept: &mut Vec<Vec<u8>>, more: impl IntoIterator<Item = Vec<u8>>, cap: usize) {
    let mut bytes: usize = kept.iter().map(Vec::capacity).sum();
    for mut b in more {
        if bytes + b.capacity() <= cap {
            bytes += b.capacity();
            b.clear();
            kept.push(b);
        }
    }
}

impl Inner {
    /// What the last batch under `key` measured.
    pub(crate) fn learned(&self, key: &str) -> Option<crate::chunking::Learned> {
        self.learned.lock().unwrap_or_else(|e| e.into_inner()).get(key).copied()
    }

    /// The argument buffers earlier batches left.
    pub(crate) fn take_buffers(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.spare_buffers.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Keeps a finished batch's argument buffers for the next batch, up
    /// to [`KEPT_BUFFER_BYTES`] of capacity in all.
    pub(crate) fn keep_buffers(&self, buffers: impl IntoIterator<Item = Vec<u8>>) {
        let mut kept = self.spare_buffers.lock().unwrap_or_else(|e| e.into_inner());
        keep_within(&mut kept, buffers, KEPT_BUFFER_BYTES);
    }

    /// Remembers what a batch under `key` measured.
    pub(crate) fn learn(&self, key: Arc<str>, learned: crate::chunking::Learned) {
        let mut map = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= LEARNED_KEYS && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, learned);
    }

    /// Holds the gate open for one submission, or `None` once closed.
    pub(crate) fn open(&self) -> Option<RwLockReadGuard<'_, bool>> {
        let gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
        if *gate { None } else { Some(gate) }
    }

    /// Sends a task to the driver; the caller holds the open gate.
    pub(crate) fn send_task(
        &self,
        _open: &RwLockReadGuard<'_, bool>,
        options: TaskOptions,
        end: Arc<dyn TaskEnd>,
        work: WorkSource,
    ) -> TaskId {
        let id = self.next_id();
        self.send_with_id(_open, id, options, end, work);
        id
    }

    /// A fresh task id, for a terminal that must know its id before the
    /// task is sent (a fast worker may end it before `send` returns).
    pub(crate) fn next_id(&self) -> TaskId {
        TaskId(self.next_task.fetch_add(1, Ordering::Relaxed))
    }

    /// Sends a task under an id from [`Inner::next_id`]; the caller holds
    /// the open gate.
    pub(crate) fn send_with_id(
        &self,
        _open: &RwLockReadGuard<'_, bool>,
        id: TaskId,
        options: TaskOptions,
        end: Arc<dyn TaskEnd>,
        work: WorkSource,
    ) {
        self.link.send(Msg::Submit(Submission { id, options, work, end }));
    }

    pub(crate) fn is_closed(&self) -> bool {
        *self.gate.read().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self) {
        let mut closed = self.gate.write().unwrap_or_else(|e| e.into_inner());
        if !*closed {
            *closed = true;
            self.link.send(Msg::Close);
        }
    }

    fn join(&self) {
        self.drained.wait();
        let thread = self.dispatcher.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// A pool of workers on one backend.
///
/// ```
/// use shoal_core::Pool;
/// use shoal_threads::Threads;
///
/// let pool = Pool::builder().workers(2).build(Threads::new()).unwrap();
/// let squares = pool.map(0..10u64, |x| x * x).unwrap();
/// assert_eq!(squares[9], 81);
/// let handle = pool.submit(|| "done").unwrap();
/// assert_eq!(handle.wait().unwrap(), "done");
/// ```
///
/// Dropping the pool closes it and waits for the tasks already submitted
/// (like [`Pool::close`] then [`Pool::join`]); call [`Pool::terminate`] to
/// cancel them instead.
pub struct Pool {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("backend", &self.inner.backend_name)
            .field("min", &self.inner.config.min)
            .field("max", &self.inner.config.max)
            .finish()
    }
}

impl Pool {
    /// Starts building a pool.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &str {
        &self.inner.backend_name
    }

    /// Whether this pool's backend runs closures (`submit`, `map`, ...);
    /// process backends run only named functions (`submit_fn`, `map_fn`).
    pub fn runs_closures(&self) -> bool {
        self.inner.accepts_local
    }

    /// The most workers this pool runs at once.
    pub fn max_workers(&self) -> usize {
        self.inner.config.max
    }

    /// Workers alive now (starting, idle or busy).
    pub fn live_workers(&self) -> usize {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.inner.link.send(Msg::LiveWorkers(tx));
        rx.recv().unwrap_or(0)
    }

    fn check_local<F>(&self, f: F) -> Result<F, SubmitError<F>> {
        if self.inner.accepts_local {
            Ok(f)
        } else {
            Err(SubmitError::new(f, SubmitRefusal::Unsupported))
        }
    }

    fn default_options(&self) -> TaskOptions {
        TaskOptions { timeout: self.inner.task_timeout, retries: 0 }
    }

    /// Submits one task; it runs once. A closed pool hands it back.
    pub fn submit<F, R>(&self, f: F) -> Result<TaskHandle<R>, SubmitError<F>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let f = self.check_local(f)?;
        let Some(open) = self.inner.open() else {
            return Err(SubmitError::new(f, SubmitRefusal::Closed));
        };
        let cell = TaskCell::<R>::new();
        let producer = cell.clone();
        let work: LocalWork = Box::new(move || {
            producer.complete(f());
        });
        let options = self.default_options();
        let id = self.inner.send_task(&open, options, cell.clone(), WorkSource::Once(Some(work)));
        Ok(TaskHandle::new(id, cell, self.inner.link.clone()))
    }

    /// Submits one task with options (timeout, retries). The task is `Fn`
    /// so that a retry can run it again. A closed pool hands it back.
    pub fn submit_with<F, R>(
        &self,
        options: TaskOptions,
        f: F,
    ) -> Result<TaskHandle<R>, SubmitError<F>>
    where
        F: Fn() -> R + Send + Sync + 'static,
        R: Send + 'static,
    {
        if options.timeout == Some(Duration::ZERO) {
            return Err(SubmitError::new(f, SubmitRefusal::InvalidOption("timeout")));
        }
        let f = self.check_local(f)?;
        let Some(open) = self.inner.open() else {
            return Err(SubmitError::new(f, SubmitRefusal::Closed));
        };
        let cell = TaskCell::<R>::new();
        let producer = cell.clone();
        let options =
            TaskOptions { timeout: options.timeout.or(self.inner.task_timeout), ..options };
        let work: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            producer.complete(f());
        });
        let id = self.inner.send_task(&open, options, cell.clone(), WorkSource::Repeat(work));
        Ok(TaskHandle::new(id, cell, self.inner.link.clone()))
    }

    /// Calls a named function: in-process where the backend runs closures
    /// (no serialization), by name in a worker otherwise (process
    /// backends). The same call site works on every backend. An argument
    /// that cannot be serialized fails the task at once, touching no
    /// worker.
    pub fn submit_fn<A, R>(
        &self,
        f: &'static Function<A, R>,
        argument: A,
    ) -> Result<TaskHandle<R>, SubmitError<A>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        if self.inner.accepts_local {
            let Some(open) = self.inner.open() else {
                return Err(SubmitError::new(argument, SubmitRefusal::Closed));
            };
            let cell = TaskCell::<R>::new();
            let producer = cell.clone();
            let fp = f.as_fn();
            let work: LocalWork = Box::new(move || {
                producer.complete(fp(argument));
            });
            let options = self.default_options();
            let id =
                self.inner.send_task(&open, options, cell.clone(), WorkSource::Once(Some(work)));
            return Ok(TaskHandle::new(id, cell, self.inner.link.clone()));
        }
        self.submit_named(f, argument, self.default_options())
    }

    /// [`Pool::submit_fn`] with options (timeout, retries).
    pub fn submit_fn_with<A, R>(
        &self,
        options: TaskOptions,
        f: &'static Function<A, R>,
        argument: A,
    ) -> Result<TaskHandle<R>, SubmitError<A>>
    where
        A: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        if options.timeout == Some(Duration::ZERO) {
            return Err(SubmitError::new(argument, SubmitRefusal::InvalidOption("timeout")));
        }
        let options =
            TaskOptions { timeout: options.timeout.or(self.inner.task_timeout), ..options };
        if self.inner.accepts_local {
            let Some(open) = self.inner.open() else {
                return Err(SubmitError::new(argument, SubmitRefusal::Closed));
            };
            let cell = TaskCell::<R>::new();
            let producer = cell.clone();
            let fp = f.as_fn();
            let work: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                producer.complete(fp(argument.clone()));
            });
            let id = self.inner.send_task(&open, options, cell.clone(), WorkSource::Repeat(work));
            return Ok(TaskHandle::new(id, cell, self.inner.link.clone()));
        }
        self.submit_named(f, argument, options)
    }

    fn submit_named<A, R>(
        &self,
        f: &'static Function<A, R>,
        argument: A,
        options: TaskOptions,
    ) -> Result<TaskHandle<R>, SubmitError<A>>
    where
        A: Serialize + Send + 'static,
        R: DeserializeOwned + Send + 'static,
    {
        if !self.inner.accepts_named {
            return Err(SubmitError::new(argument, SubmitRefusal::Unsupported));
        }
        let Some(open) = self.inner.open() else {
            return Err(SubmitError::new(argument, SubmitRefusal::Closed));
        };
        let cell = TaskCell::<R>::with_decoder(decode_one::<R>);
        let bytes = match crate::function::encode_chunk(std::slice::from_ref(&argument)) {
            Ok(b) => b,
            Err(e) => {
                // RELIABILITY row 1: the task fails at submit; no worker.
                cell.fail(crate::error::TaskError::serialization(e));
                let id = TaskId(self.inner.next_task.fetch_add(1, Ordering::Relaxed));
                return Ok(TaskHandle::new(id, cell, self.inner.link.clone()));
            }
        };
        let work = WorkSource::Named { function: f.name(), argument: Arc::new(bytes) };
        let id = self.inner.send_task(&open, options, cell.clone(), work);
        Ok(TaskHandle::new(id, cell, self.inner.link.clone()))
    }

    /// [`Pool::map`] for a named function: runs on every backend (items and
    /// results are serialized only where workers are other processes).
    pub fn map_fn<I, A, R>(
        &self,
        f: &'static Function<A, R>,
        items: I,
    ) -> Result<Vec<R>, BatchError>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.batch().map_fn(f, items)
    }

    /// [`Pool::imap`] for a named function.
    pub fn imap_fn<I, A, R>(
        &self,
        f: &'static Function<A, R>,
        items: I,
    ) -> Imap<I::IntoIter, fn(A) -> R, R>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.batch().imap_fn(f, items)
    }

    /// [`Pool::map_unordered`] for a named function.
    pub fn map_unordered_fn<I, A, R>(
        &self,
        f: &'static Function<A, R>,
        items: I,
    ) -> MapUnordered<I::IntoIter, fn(A) -> R, R>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.batch().map_unordered_fn(f, items)
    }

    /// A batch with options (chunksize, progress bar, ...); see
    /// [`BatchBuilder`].
    pub fn batch(&self) -> BatchBuilder<'_> {
        BatchBuilder::new(self)
    }

    /// Applies `f` to every item, in parallel, and returns the results in
    /// input order. Chunking is automatic. On the first failed item no more
    /// chunks start; the running ones settle, then the failure (with the
    /// lowest index seen) is returned.
    pub fn map<I, T, R, F>(&self, items: I, f: F) -> Result<Vec<R>, BatchError>
    where
        I: IntoIterator<Item = T>,
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        self.batch().map(items, f)
    }

    /// Applies `f` to every item of a borrowed slice and returns the
    /// results in order, without copying items or results (rayon's
    /// `par_iter().map().collect()`). Returns once every chunk was released;
    /// a chunk whose thread was detached by a timeout is waited for.
    /// Without a task timeout, each worker runs one task that claims chunk
    /// after chunk of the slice until none is left, so a free worker takes
    /// the next chunk without a round trip through the pool.
    pub fn map_slice<T, R, F>(&self, items: &[T], f: F) -> Result<Vec<R>, BatchError>
    where
        T: Sync,
        R: Send,
        F: Fn(&T) -> R + Send + Sync,
    {
        self.batch().map_slice(items, f)
    }

    /// Applies `f` to every item lazily; yields `(index, result)` in
    /// completion order. At most a bounded number of items is in flight.
    pub fn map_unordered<I, T, R, F>(&self, items: I, f: F) -> MapUnordered<I::IntoIter, F, R>
    where
        I: IntoIterator<Item = T>,
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        self.batch().map_unordered(items, f)
    }

    /// Applies `f` to every item lazily; yields results in input order. At
    /// most a bounded number of items is in flight, so an endless iterator
    /// runs in constant memory.
    pub fn imap<I, T, R, F>(&self, items: I, f: F) -> Imap<I::IntoIter, F, R>
    where
        I: IntoIterator<Item = T>,
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        self.batch().imap(items, f)
    }

    /// Runs `f` with a [`Scope`] whose tasks may borrow from the caller's
    /// stack. Returns when every task of the scope ended and its closure
    /// was dropped (a task detached by a timeout is waited for).
    pub fn scope<'env, F, T>(&self, f: F) -> T
    where
        F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
    {
        scope::run(self, f)
    }

    /// Stops handing tasks to workers; running tasks finish.
    pub fn suspend(&self) {
        self.inner.link.send(Msg::Suspend);
    }

    /// Hands tasks to workers again.
    pub fn resume(&self) {
        self.inner.link.send(Msg::Resume);
    }

    /// Accepts no new tasks; the submitted ones still run. Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Waits until the pool closed and drained: every task ended and every
    /// worker exited. Call [`Pool::close`] (or `terminate`) first, or this
    /// waits forever.
    pub fn join(&self) {
        self.inner.join();
    }

    /// Cancels every queued and running task (each ends `Cancelled`), stops
    /// the workers and waits for the pool to drain. Workers busy with a task
    /// are killed (threads: detached).
    pub fn terminate(&self) {
        {
            let mut closed = self.inner.gate.write().unwrap_or_else(|e| e.into_inner());
            *closed = true;
            self.inner.link.send(Msg::Terminate);
        }
        self.inner.join();
    }

    /// A stream of pool events; each call makes a new subscriber.
    pub fn events(&self) -> crossbeam_channel::Receiver<PoolEvent> {
        self.inner.events.subscribe()
    }

    /// Per-worker statistics as of now (after `join`: as the pool
    /// drained); `Display` prints the table. Worker reports travel
    /// separately from results, so right after a `wait` the last task may
    /// not be counted yet; after `close` + `join` every task is.
    pub fn insights(&self) -> Insights {
        if self.inner.drained.is_set() {
            let fin = self.inner.final_insights.lock().unwrap_or_else(|e| e.into_inner());
            return fin.clone().unwrap_or_default();
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.inner.link.send(Msg::Insights(tx));
        rx.recv().unwrap_or_default()
    }
}

/// Decodes the one result of a single named task.
fn decode_one<R: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<R, crate::error::TaskError> {
    let results = crate::function::decode_results::<R>(bytes)
        .map_err(crate::error::TaskError::serialization)?;
    match results.into_iter().next() {
        Some(Ok(r)) => Ok(r),
        Some(Err(message)) => Err(crate::error::TaskError::panic(message)),
        None => Err(crate::error::TaskError::serialization("the worker returned no result")),
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.inner.close();
        self.inner.join();
    }
}

#[cfg(test)]
mod tests {
    use super::keep_within;

    #[test]
    fn kept_buffers_are_emptied_and_capped_in_bytes() {
        let mut kept = vec![Vec::with_capacity(40)];
        let more = [vec![1u8; 50], vec![2u8; 10], Vec::with_capacity(30)];
        let caps: Vec<usize> = more.iter().map(Vec::capacity).collect();
        keep_within(&mut kept, more, 100);
        // 40 + 50 fit, 10 more fits (100), 30 more would not.
        assert_eq!(kept.len(), 3);
        assert!(kept.iter().all(Vec::is_empty));
        assert_eq!(kept.iter().map(Vec::capacity).sum::<usize>(), 40 + caps[0] + caps[1]);
    }
}
