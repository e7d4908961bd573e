//! Batches: `map` (ordered, eager), `imap` (ordered, lazy) and
//! `map_unordered` (completion order, lazy) over one engine.
//!
//! The caller's thread is the *feeder*: it pulls items from the input
//! iterator, cuts them into chunks sized by the [`Chunker`], and submits each
//! chunk as one task, keeping at most `max_in_flight` chunks in the pool. A
//! chunk runs `f` on its items on a worker, catching a panic per item, and
//! sends its values back on the batch's channel straight from the worker.
//! The driver only tells the batch about chunks that ended without running
//! (timeout, worker lost, cancelled).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::backend::{LocalWork, TaskMessage, TaskSink};
use crate::chunking::Chunker;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{BatchError, BuildError, TaskError};
use crate::function::Function;
use crate::ids::{TaskId, WorkerId};
use crate::scheduler::TaskOptions;
use crate::worker::panic_message;

use super::driver::{Msg, WorkSource};
use super::events::{BatchId, PoolEvent};
use super::handle::TaskEnd;
use super::open::{Feeder, OpenInput, OpenItems};
use super::{Inner, Pool};

/// Lazy batches cut chunks no bigger than this, so their memory stays
/// bounded whatever the input's length. Each chunk costs the parent of a
/// worker process ~0.1-0.2 ms of its threads' time beyond its items;
/// py-W6 (10^6 items of `x + 1`) ran as ~250 chunks at 4096 and took 5-10%
/// less time and CPU at 16384 (interleaved runs).
pub const LAZY_CHUNK_CAP: usize = 16384;

/// A chunk stops taking items from the input once taking them lasted this
/// long, so that a slow input (a generator that waits for each item) sends
/// its first items at once instead of after a whole chunk's worth.
pub const INPUT_BUDGET: Duration = Duration::from_millis(20);

/// Up to `size` items of `items`, fewer if taking them lasts longer than
/// [`INPUT_BUDGET`] (the clock is read at each power of two, so a fast
/// input pays ~15 reads a chunk), and whether the input ended.
fn take_chunk<I: Iterator>(items: &mut I, size: usize) -> (Vec<I::Item>, bool) {
    let started = Instant::now();
    let mut chunk = Vec::with_capacity(size.min(LAZY_CHUNK_CAP));
    while chunk.len() < size {
        let Some(item) = items.next() else { return (chunk, true) };
        chunk.push(item);
        if chunk.len().is_power_of_two() && started.elapsed() >= INPUT_BUDGET {
            break;
        }
    }
    (chunk, false)
}

/// Options for one batch; made by [`Pool::batch`].
#[must_use]
pub struct BatchBuilder<'p> {
    pool: &'p Pool,
    chunksize: Option<usize>,
    max_in_flight: Option<usize>,
    progress_bar: bool,
    task_timeout: Option<Duration>,
    invalid: Option<BuildError>,
    on_message: Option<OnMessage>,
    chunking_key: Option<Arc<str>>,
}

/// Receives the messages (progress, log, data) that a batch's tasks send,
/// with the input index of the first item of the sending chunk; called on
/// the thread that delivers them (a worker or a reader thread).
pub type OnMessage = Arc<dyn Fn(usize, TaskMessage) + Send + Sync>;

impl<'p> BatchBuilder<'p> {
    pub(crate) fn new(pool: &'p Pool) -> Self {
        BatchBuilder {
            pool,
            chunksize: None,
            max_in_flight: None,
            progress_bar: pool.inner.progress_bar,
            task_timeout: pool.inner.task_timeout,
            invalid: None,
            on_message: None,
            chunking_key: None,
        }
    }

    /// Automatic chunking starts from the item time that the pool's last
    /// batch under `key` measured, instead of probing with one-item chunks
    /// (a round trip each on a worker process), and leaves its own for the
    /// next. Batches of a named function ([`Pool::map_fn`] and friends)
    /// use the function's name unless given another key. Give one key to
    /// batches of the same work only: a wrong item time costs load balance
    /// until the first chunk is measured.
    pub fn chunking_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.chunking_key = Some(key.into());
        self
    }

    /// Hands the messages of the batch's tasks (`task::progress`, `log`,
    /// `data`) to `f`, with the index of the first item of the chunk that
    /// sent them (a chunk of one item: that item's index). Without it they
    /// are dropped.
    pub fn on_message(mut self, f: impl Fn(usize, TaskMessage) + Send + Sync + 'static) -> Self {
        self.on_message = Some(Arc::new(f));
        self
    }

    /// Items per task, instead of automatic chunking. Must be at least 1.
    pub fn chunksize(mut self, n: usize) -> Self {
        if n == 0 {
            self.invalid = Some(BuildError::new("chunksize", "must be at least 1 (got 0)"));
        }
        self.chunksize = Some(n);
        self
    }

    /// Chunks in the pool at once (default: twice the workers). Bounds the
    /// memory of `imap` and `map_unordered`. Must be at least 1.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        if n == 0 {
            self.invalid = Some(BuildError::new("max_in_flight", "must be at least 1 (got 0)"));
        }
        self.max_in_flight = Some(n);
        self
    }

    /// Draws a progress bar (indicatif) on stderr.
    pub fn progress_bar(mut self, on: bool) -> Self {
        self.progress_bar = on;
        self
    }

    /// Fails an item that runs longer than this (a chunk of n items gets
    /// n times as long).
    pub fn task_timeout(mut self, d: Duration) -> Self {
        if d.is_zero() {
            self.invalid = Some(BuildError::new("task_timeout", "must be longer than zero"));
        }
        self.task_timeout = Some(d);
        self
    }

    fn engine<It, F, R>(self, items: It, f: F, lazy: bool) -> Engine<It, F, R>
    where
        It: Iterator,
        It::Item: Send,
        F: Fn(It::Item) -> R + Send + Sync,
        R: Send,
    {
        self.engine_named(items, f, lazy, None)
    }

    fn engine_for<It, A, R>(
        mut self,
        f: &'static Function<A, R>,
        items: It,
        lazy: bool,
    ) -> Engine<It, fn(A) -> R, R>
    where
        It: Iterator<Item = A>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        if self.chunking_key.is_none() {
            self.chunking_key = Some(f.name().into());
        }
        self.engine_named(items, f.as_fn(), lazy, Some(Codec::for_function(f)))
    }

    /// Like [`Pool::map_fn`], with these options.
    pub fn map_fn<I, A, R>(self, f: &'static Function<A, R>, items: I) -> Result<Vec<R>, BatchError>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.engine_for(f, items.into_iter(), false).run_ordered()
    }

    /// Like [`Pool::imap_fn`], with these options.
    pub fn imap_fn<I, A, R>(
        self,
        f: &'static Function<A, R>,
        items: I,
    ) -> Imap<I::IntoIter, fn(A) -> R, R>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Imap::new(self.engine_for(f, items.into_iter(), true))
    }

    /// Like [`Pool::map_unordered_fn`], with these options.
    pub fn map_unordered_fn<I, A, R>(
        self,
        f: &'static Function<A, R>,
        items: I,
    ) -> MapUnordered<I::IntoIter, fn(A) -> R, R>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MapUnordered::new(self.engine_for(f, items.into_iter(), true))
    }

    fn engine_named<It, F, R>(
        self,
        items: It,
        f: F,
        lazy: bool,
        named: Option<Codec<It::Item, R>>,
    ) -> Engine<It, F, R>
    where
        It: Iterator,
        It::Item: Send,
        F: ChunkFn<It::Item, R>,
        R: Send,
    {
        let workers = self.pool.inner.config.max;
        let mut chunker = match self.chunksize {
            Some(n) => Chunker::fixed(n),
            None if lazy => Chunker::automatic(workers).with_cap(LAZY_CHUNK_CAP),
            None => Chunker::automatic(workers),
        };
        if let Some(learned) = self.chunking_key.as_deref().and_then(|k| self.pool.inner.learned(k))
        {
            chunker = chunker.start_from(learned);
        }
        let total = match items.size_hint() {
            (lo, Some(hi)) if lo == hi => Some(lo),
            _ => None,
        };
        let mut engine = Engine::new(
            self.pool.inner.clone(),
            items,
            f,
            chunker,
            self.max_in_flight.unwrap_or(2 * workers),
            self.task_timeout,
            total,
            self.progress_bar,
            self.invalid,
            named,
        );
        engine.on_message = self.on_message;
        engine.chunking_key = self.chunking_key;
        engine
    }

    /// `map` with a chunk-level function `run` (see [`ChunkFn`]) and, for
    /// backends that cannot run closures, the `codec` that carries chunks
    /// to a named function in the worker. The building block of bindings.
    pub fn map_with<I, A, R, C>(
        self,
        run: C,
        codec: Option<Codec<A, R>>,
        items: I,
    ) -> Result<Vec<R>, BatchError>
    where
        I: IntoIterator<Item = A>,
        A: Send + 'static,
        R: Send + 'static,
        C: ChunkFn<A, R> + 'static,
    {
        self.engine_named(items.into_iter(), run, false, codec).run_ordered()
    }

    /// [`BatchBuilder::map_with`] over the positions `0..n` (items that
    /// stand for the caller's, as the bindings' indices do): a lost chunk
    /// of several items runs again item by item, so that only an item
    /// that kills its worker (or runs out of time) fails.
    pub fn map_positions_with<R, C>(
        self,
        run: C,
        codec: Option<Codec<usize, R>>,
        n: usize,
    ) -> Result<Vec<R>, BatchError>
    where
        R: Send + 'static,
        C: ChunkFn<usize, R> + 'static,
    {
        let mut engine = self.engine_named(0..n, run, false, codec);
        engine.remake = Some(Arc::new(|at| at));
        engine.run_ordered()
    }

    /// `imap` with a chunk-level function and a codec; see
    /// [`BatchBuilder::map_with`].
    pub fn imap_with<I, A, R, C>(
        self,
        run: C,
        codec: Option<Codec<A, R>>,
        items: I,
    ) -> Imap<I::IntoIter, C, R>
    where
        I: IntoIterator<Item = A>,
        A: Send + 'static,
        R: Send + 'static,
        C: ChunkFn<A, R> + 'static,
    {
        Imap::new(self.engine_named(items.into_iter(), run, true, codec))
    }

    /// `map_unordered` with a chunk-level function and a codec; see
    /// [`BatchBuilder::map_with`].
    pub fn map_unordered_with<I, A, R, C>(
        self,
        run: C,
        codec: Option<Codec<A, R>>,
        items: I,
    ) -> MapUnordered<I::IntoIter, C, R>
    where
        I: IntoIterator<Item = A>,
        A: Send + 'static,
        R: Send + 'static,
        C: ChunkFn<A, R> + 'static,
    {
        MapUnordered::new(self.engine_named(items.into_iter(), run, true, codec))
    }

    /// Whole chunks as they end (`ordered`: in input order), for callers
    /// that keep a batch's items and results themselves: the Python
    /// bindings hold them in Python lists and hand each chunk's results on
    /// whole, so that the core does no work per item. Otherwise as
    /// [`BatchBuilder::imap_with`] / [`BatchBuilder::map_unordered_with`].
    pub fn chunks_with<I, A, R, C>(
        self,
        run: C,
        codec: Option<Codec<A, R>>,
        items: I,
        ordered: bool,
    ) -> Chunks<I::IntoIter, C, R>
    where
        I: IntoIterator<Item = A>,
        A: Send + 'static,
        R: Send + 'static,
        C: ChunkFn<A, R> + 'static,
    {
        Chunks::new(self.engine_named(items.into_iter(), run, true, codec), ordered)
    }

    /// An open batch: items are added while it runs, through the returned
    /// [`Feeder`]; results come in completion order, each with its item's
    /// position in the order the items were sent. The batch ends once
    /// every feeder is dropped and every item ran. See [`super::open`].
    pub fn open_with<A, R, C>(
        self,
        run: C,
        codec: Option<Codec<A, R>>,
    ) -> (Feeder<A>, MapUnordered<OpenItems<A>, C, R>)
    where
        A: Send + 'static,
        R: Send + 'static,
        C: ChunkFn<A, R> + 'static,
    {
        let (feeder, items, input) = super::open::channel();
        let mut engine = self.engine_named(items, run, true, codec);
        engine.open = Some(input);
        (feeder, MapUnordered::new(engine))
    }

    /// Like [`Pool::map`], with these options.
    pub fn map<I, T, R, F>(self, items: I, f: F) -> Result<Vec<R>, BatchError>
    where
        I: IntoIterator<Item = T>,
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        self.engine(items.into_iter(), f, false).run_ordered()
    }

    /// Like [`Pool::imap`], with these options. An invalid option is the
    /// first item, then the iterator ends.
    pub fn imap<I, T, R, F>(self, items: I, f: F) -> Imap<I::IntoIter, F, R>
    where
        I: IntoIterator<Item = T>,
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        Imap::new(self.engine(items.into_iter(), f, true))
    }

    /// Like [`Pool::map_unordered`], with these options. An invalid option
    /// is the first item, then the iterator ends.
    pub fn map_unordered<I, T, R, F>(self, items: I, f: F) -> MapUnordered<I::IntoIter, F, R>
    where
        I: IntoIterator<Item = T>,
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        MapUnordered::new(self.engine(items.into_iter(), f, true))
    }

    /// A scoped ordered map: `f` and the items may borrow. Used by
    /// [`super::Scope::map`], which waits for every chunk's release.
    pub(crate) fn map_scoped<'a, I, T, R, F>(self, items: I, f: F) -> Result<Vec<R>, BatchError>
    where
        I: IntoIterator<Item = T>,
        T: Send + 'a,
        R: Send + 'a,
        F: Fn(T) -> R + Send + Sync + 'a,
    {
        let mut engine = self.engine(items.into_iter(), f, false);
        engine.wait_release = true;
        engine.run_ordered()
    }

    /// Like [`Pool::map_slice`], with these options.
    pub fn map_slice<T, R, F>(self, items: &[T], f: F) -> Result<Vec<R>, BatchError>
    where
        T: Sync,
        R: Send,
        F: Fn(&T) -> R + Send + Sync,
    {
        if let Some(e) = self.invalid {
            return Err(BatchError::InvalidOption(e));
        }
        let workers = self.pool.inner.config.max;
        let chunker = match self.chunksize {
            Some(n) => Chunker::fixed(n),
            None => Chunker::automatic(workers),
        };
        super::slice::SliceMap {
            inner: self.pool.inner.clone(),
            chunker,
            max_in_flight: self.max_in_flight.unwrap_or(2 * workers),
            timeout: self.task_timeout,
            bar: self.progress_bar.then(|| Bar::new(Some(items.len()))),
        }
        .run(items, f)
    }
}

/// Runs a whole chunk of a batch on a worker: the items in order, each
/// result pushed to `values`, or the item's error with its offset in the
/// chunk to `errors` (an item that fails pushes no value).
///
/// Every `Fn(A) -> R` is one (each item runs under `catch_unwind`, so a
/// panic fails that item alone). Implement it directly to pay a per-chunk
/// cost once per chunk instead of once per item: the Python binding takes
/// the interpreter lock once per chunk.
pub trait ChunkFn<A, R>: Send + Sync {
    /// Runs `items`; see the trait.
    fn run_chunk(&self, items: Vec<A>, values: &mut Vec<R>, errors: &mut Vec<(usize, TaskError)>);
}

impl<A, R, F: Fn(A) -> R + Send + Sync> ChunkFn<A, R> for F {
    fn run_chunk(&self, items: Vec<A>, values: &mut Vec<R>, errors: &mut Vec<(usize, TaskError)>) {
        let mut items = items.into_iter();
        loop {
            let run = catch_unwind(AssertUnwindSafe(|| {
                for x in items.by_ref() {
                    values.push(self(x));
                }
            }));
            match run {
                Ok(()) => break,
                Err(p) => {
                    let at = values.len() + errors.len();
                    errors.push((at, TaskError::panic(panic_message(&*p))));
                }
            }
        }
    }
}

/// Encodes a chunk's items for a worker in another process, into `out`:
/// an empty buffer the pool reuses from chunk to chunk and batch to batch
/// (its capacity, and so its pages, stay warm: a fresh buffer per chunk
/// was page-faulted in for every chunk).
pub type EncodeChunk<A> = Arc<dyn Fn(&[A], &mut Vec<u8>) -> Result<(), String> + Send + Sync>;
/// Decodes a worker's results of a chunk: one per item, in order.
pub type DecodeChunk<R> =
    Arc<dyn Fn(&[u8]) -> Result<Vec<Result<R, String>>, String> + Send + Sync>;

/// Decodes a worker's results of a chunk as values and sparse errors.
type DecodeChunkSplit<R> =
    Arc<dyn Fn(&[u8]) -> Result<crate::function::Split<R>, String> + Send + Sync>;

pub(super) enum Decoder<R> {
    /// One `Result` per item ([`Codec::new`]).
    PerItem(DecodeChunk<R>),
    /// Values and sparse errors, as the chunk convention stores them
    /// ([`Codec::for_function`]): no `Result` per item to build and split.
    Split(DecodeChunkSplit<R>),
}

impl<R> Clone for Decoder<R> {
    fn clone(&self) -> Self {
        match self {
            Decoder::PerItem(d) => Decoder::PerItem(d.clone()),
            Decoder::Split(d) => Decoder::Split(d.clone()),
        }
    }
}

/// A chunk's values and the `(offset, error)` of its items that failed.
type Ran<R> = (Vec<R>, Vec<(usize, TaskError)>);

impl<R> Decoder<R> {
    /// The values and the `(offset, error)` of the items that failed, checked
    /// against the chunk's `len`.
    fn decode(&self, bytes: &[u8], len: usize) -> Result<Ran<R>, TaskError> {
        let (values, errors) = match self {
            Decoder::Split(decode) => {
                let (values, errors) = decode(bytes).map_err(TaskError::serialization)?;
                let errors: Vec<(usize, TaskError)> =
                    errors.into_iter().map(|(o, m)| (o, TaskError::panic(m))).collect();
                (values, errors)
            }
            Decoder::PerItem(decode) => {
                let results = decode(bytes).map_err(TaskError::serialization)?;
                let mut values = Vec::with_capacity(results.len());
                let mut errors = Vec::new();
                for (offset, r) in results.into_iter().enumerate() {
                    match r {
                        Ok(v) => values.push(v),
                        Err(message) => errors.push((offset, TaskError::panic(message))),
                    }
                }
                (values, errors)
            }
        };
        let n = values.len() + errors.len();
        if n != len {
            return Err(TaskError::serialization(format!(
                "the worker returned {n} results for {len} items"
            )));
        }
        // Offsets come checked (strictly increasing, below the count).
        Ok((values, errors))
    }
}

/// How the chunks of a batch travel to workers that cannot run closures
/// (other processes): the name of the function the worker resolves in its
/// [`crate::Registry`], and how items and results become bytes.
/// `map_fn` and friends make one from a [`Function`] (postcard); bindings
/// make their own (the Python binding pickles).
pub struct Codec<A, R> {
    function: &'static str,
    encode: EncodeChunk<A>,
    decode: Decoder<R>,
}

impl<A, R> Codec<A, R> {
    /// Chunks go to the worker's function `function`, encoded and decoded
    /// by these (see [`EncodeChunk`] for the encoder's buffer).
    pub fn new(
        function: &'static str,
        encode: impl Fn(&[A], &mut Vec<u8>) -> Result<(), String> + Send + Sync + 'static,
        decode: impl Fn(&[u8]) -> Result<Vec<Result<R, String>>, String> + Send + Sync + 'static,
    ) -> Self {
        Codec { function, encode: Arc::new(encode), decode: Decoder::PerItem(Arc::new(decode)) }
    }

    /// As [`Codec::new`], with a decoder that returns the values of the
    /// items that ran and the `(offset, message)` of those that failed
    /// ([`crate::function::Split`]; offsets strictly increasing, below
    /// the chunk's length), so that no `Result` is built per item (the
    /// Python binding's `map` results are `()`: a `Result` each was most
    /// of the time its reader threads spent per chunk).
    pub fn split(
        function: &'static str,
        encode: impl Fn(&[A], &mut Vec<u8>) -> Result<(), String> + Send + Sync + 'static,
        decode: impl Fn(&[u8]) -> Result<crate::function::Split<R>, String> + Send + Sync + 'static,
    ) -> Self {
        Codec { function, encode: Arc::new(encode), decode: Decoder::Split(Arc::new(decode)) }
    }

    /// The codec of a named [`Function`] (postcard), as `map_fn` uses: it
    /// encodes into buffers the batch reuses and decodes results straight
    /// into values and errors.
    pub fn for_function(f: &'static Function<A, R>) -> Self
    where
        A: Serialize + 'static,
        R: DeserializeOwned + 'static,
    {
        Codec {
            function: f.name(),
            encode: Arc::new(crate::function::encode_chunk_into::<A>),
            decode: Decoder::Split(Arc::new(crate::function::decode_results_split::<R>)),
        }
    }
}

/// What a chunk sends back.
pub(super) enum ChunkMsg<R> {
    /// The chunk ran. `values` holds the results of the items that did not
    /// panic, in order; `errors` the offsets (within the chunk) that did.
    Ran {
        task: TaskId,
        start: usize,
        len: usize,
        values: Vec<R>,
        errors: Vec<(usize, TaskError)>,
        elapsed: Duration,
    },
    /// The chunk ended without running to the end (timeout, worker lost,
    /// cancelled): every item of it fails with `error`.
    Lost { task: TaskId, start: usize, len: usize, error: TaskError },
}

/// The chunk's terminal: whoever ends it first (the worker by running it,
/// the driver by failing it) sends the one message.
pub(super) struct ChunkEnd<R> {
    task: TaskId,
    start: usize,
    len: usize,
    ended: AtomicBool,
    tx: Sender<ChunkMsg<R>>,
    /// Counts chunk ends alive; a scoped batch waits for zero.
    alive: Arc<AtomicUsize>,
    /// For named chunks: reads the worker's result bytes.
    decode: Option<Decoder<R>>,
    /// When a worker took the chunk (named chunks time themselves here).
    started_at: std::sync::OnceLock<Instant>,
    /// Where the chunk's messages go, if anywhere.
    on_message: Option<OnMessage>,
}

impl<R> ChunkEnd<R> {
    /// The terminal of chunk `task` (its id is reserved before the chunk
    /// is sent: a fast worker may end it before `send` returns).
    pub(super) fn new(
        task: TaskId,
        start: usize,
        len: usize,
        tx: Sender<ChunkMsg<R>>,
        alive: Arc<AtomicUsize>,
    ) -> Arc<Self> {
        alive.fetch_add(1, Ordering::AcqRel);
        Arc::new(ChunkEnd {
            task,
            start,
            len,
            ended: AtomicBool::new(false),
            tx,
            alive,
            decode: None,
            started_at: std::sync::OnceLock::new(),
            on_message: None,
        })
    }

    fn named(
        task: TaskId,
        start: usize,
        len: usize,
        tx: Sender<ChunkMsg<R>>,
        alive: Arc<AtomicUsize>,
        decode: Decoder<R>,
    ) -> Arc<Self> {
        let mut end = Self::new(task, start, len, tx, alive);
        Arc::get_mut(&mut end).expect("fresh").decode = Some(decode);
        end
    }

    /// Sends the chunk's messages to `on_message` (call before sharing).
    fn with_messages(mut self: Arc<Self>, on_message: &Option<OnMessage>) -> Arc<Self> {
        if let Some(f) = on_message {
            Arc::get_mut(&mut self).expect("fresh").on_message = Some(f.clone());
        }
        self
    }

    pub(super) fn end(&self, msg: impl FnOnce(TaskId) -> ChunkMsg<R>) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(msg(self.task));
        }
    }
}

impl<R> Drop for ChunkEnd<R> {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<R: Send> TaskSink for ChunkEnd<R> {
    fn message(&self, message: TaskMessage) {
        if let Some(f) = &self.on_message {
            f(self.start, message);
        }
    }
    fn result_bytes(&self, bytes: Vec<u8>) -> Result<(), TaskError> {
        let Some(decode) = &self.decode else {
            return Err(TaskError::serialization("this chunk expects in-process results"));
        };
        let (values, errors) = decode.decode(&bytes, self.len)?;
        let elapsed = self.started_at.get().map(Instant::elapsed).unwrap_or_default();
        let (start, len) = (self.start, self.len);
        self.end(|task| ChunkMsg::Ran { task, start, len, values, errors, elapsed });
        Ok(())
    }
}

impl<R: Send> TaskEnd for ChunkEnd<R> {
    fn started(&self, _worker: WorkerId) {
        let _ = self.started_at.set(Instant::now());
    }
    fn fail(&self, error: TaskError) {
        let (start, len) = (self.start, self.len);
        self.end(|task| ChunkMsg::Lost { task, start, len, error });
    }
}

/// Erases the lifetime of a chunk's terminal.
///
/// # Safety
/// As for [`erase`]: nothing the terminal borrows may die while it lives.
unsafe fn erase_end<'a, R: Send + 'a>(end: Arc<ChunkEnd<R>>) -> Arc<dyn TaskEnd> {
    let end: Arc<dyn TaskEnd + 'a> = end;
    // SAFETY: only the lifetime changes; see the caller's contract.
    unsafe { std::mem::transmute::<Arc<dyn TaskEnd + 'a>, Arc<dyn TaskEnd>>(end) }
}

/// Erases the lifetime of a chunk's work and terminal.
///
/// # Safety
/// The caller must not let anything the closure or the terminal borrows
/// die before every terminal was dropped (`alive` reached zero): the
/// scoped batch waits for that; unscoped batches only erase `'static`.
pub(super) unsafe fn erase<'a, R: Send + 'a>(
    work: Box<dyn FnOnce() + Send + 'a>,
    end: Arc<ChunkEnd<R>>,
) -> (LocalWork, Arc<dyn TaskEnd>) {
    let end: Arc<dyn TaskEnd + 'a> = end;
    // SAFETY: only the lifetime changes (same layout); the caller keeps
    // the borrowed data alive until every chunk terminal was dropped.
    unsafe {
        (
            std::mem::transmute::<Box<dyn FnOnce() + Send + 'a>, LocalWork>(work),
            std::mem::transmute::<Arc<dyn TaskEnd + 'a>, Arc<dyn TaskEnd>>(end),
        )
    }
}

pub(super) struct Bar {
    pub(super) bar: indicatif::ProgressBar,
}

impl Bar {
    pub(super) fn new(total: Option<usize>) -> Self {
        let bar = match total {
            Some(n) => indicatif::ProgressBar::new(n as u64),
            None => indicatif::ProgressBar::no_length(),
        };
        let style = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        Bar { bar }
    }
}

/// The shared machinery of every batch.
pub(crate) struct Engine<It: Iterator, F, R> {
    inner: Arc<Inner>,
    items: It,
    f: Arc<F>,
    exhausted: bool,
    chunker: Chunker,
    max_in_flight: usize,
    /// Chunks that ended ahead of their turn and that an ordered iterator
    /// holds until an earlier one ends. They count against
    /// `max_in_flight`: otherwise one slow chunk (a worker thread that
    /// waits long for Python's interpreter lock) let the others run on and
    /// their results pile up behind it (a Python `imap` on threads held
    /// 600 000 results at once).
    parked: usize,
    timeout: Option<Duration>,
    tx: Sender<ChunkMsg<R>>,
    rx: Receiver<ChunkMsg<R>>,
    /// Chunks in the pool, with when each was submitted.
    in_flight: HashMap<TaskId, Instant>,
    alive: Arc<AtomicUsize>,
    next_index: usize,
    total: Option<usize>,
    done: usize,
    batch: BatchId,
    bar: Option<Bar>,
    invalid: Option<BuildError>,
    /// Set for scoped batches: dropping waits until no chunk is alive.
    wait_release: bool,
    /// Stop feeding (a `map` item failed, or the pool closed).
    stop_feeding: bool,
    closed: bool,
    finished_sent: bool,
    /// Set for named functions: chunks go by name where closures cannot.
    named: Option<Codec<It::Item, R>>,
    /// Chunks that ended before reaching the pool (unserializable items).
    early: VecDeque<ChunkMsg<R>>,
    /// For open batches: the input channel, to wait on it.
    open: Option<OpenInput<It::Item>>,
    /// Where the tasks' messages go ([`BatchBuilder::on_message`]).
    on_message: Option<OnMessage>,
    /// Argument buffers of named chunks, reused once their chunk ended
    /// (see [`spare_buffer`]); taken from the pool's spares and left there
    /// when the engine is dropped.
    buffers: Vec<Arc<Vec<u8>>>,
    /// Makes the item at a position again, for batches whose items can be
    /// (the bindings' indices): a lost chunk of several items is then run
    /// again item by item ([`Engine::retry_lost`]).
    remake: Option<Arc<dyn Fn(usize) -> It::Item + Send + Sync>>,
    /// Positions to run again as one-item chunks, with why their chunk was
    /// lost (their error if they cannot run).
    retry: VecDeque<(usize, TaskError)>,
    /// Where to leave what the chunker measured ([`BatchBuilder::chunking_key`]).
    chunking_key: Option<Arc<str>>,
    _r: PhantomData<fn() -> R>,
}

/// Argument buffers an engine keeps beyond its chunks in flight.
const SPARE_BUFFERS: usize = 2;

/// An argument buffer of an earlier chunk that nobody else holds any more
/// (its pages are warm), or a new one.
fn spare_buffer(buffers: &mut Vec<Arc<Vec<u8>>>) -> Vec<u8> {
    let mut b = match buffers.iter().position(|b| Arc::strong_count(b) == 1) {
        Some(i) => Arc::try_unwrap(buffers.swap_remove(i)).unwrap_or_default(),
        None => Vec::new(),
    };
    b.clear();
    b
}

/// Keeps a chunk's argument buffer for reuse once the chunk ended; at most
/// [`SPARE_BUFFERS`] beyond the chunks in flight.
fn keep_buffer(buffers: &mut Vec<Arc<Vec<u8>>>, in_flight: usize, buffer: Arc<Vec<u8>>) {
    if buffers.len() >= in_flight + SPARE_BUFFERS {
        buffers.retain(|b| Arc::strong_count(b) > 1);
    }
    if buffers.len() < in_flight + SPARE_BUFFERS {
        buffers.push(buffer);
    }
}

impl<It, F, R> Engine<It, F, R>
where
    It: Iterator,
    It::Item: Send,
    F: ChunkFn<It::Item, R>,
    R: Send,
{
    #[allow(clippy::too_many_arguments)]
    fn new(
        inner: Arc<Inner>,
        items: It,
        f: F,
        chunker: Chunker,
        max_in_flight: usize,
        timeout: Option<Duration>,
        total: Option<usize>,
        progress_bar: bool,
        invalid: Option<BuildError>,
        named: Option<Codec<It::Item, R>>,
    ) -> Self {
        let named = if inner.accepts_local { None } else { named };
        let invalid = match invalid {
            None if !inner.accepts_local && named.is_none() => Some(BuildError::new(
                "function",
                format!(
                    "the {} backend cannot run closures; use a named function (`map_fn`)",
                    inner.backend_name
                ),
            )),
            other => other,
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let batch = BatchId(inner.next_batch.fetch_add(1, Ordering::Relaxed));
        let buffers = match named {
            Some(_) => inner.take_buffers().into_iter().map(Arc::new).collect(),
            None => Vec::new(),
        };
        Engine {
            inner,
            items,
            f: Arc::new(f),
            exhausted: false,
            chunker,
            max_in_flight,
            parked: 0,
            timeout,
            tx,
            rx,
            in_flight: HashMap::new(),
            alive: Arc::new(AtomicUsize::new(0)),
            next_index: 0,
            total,
            done: 0,
            batch,
            bar: progress_bar.then(|| Bar::new(total)),
            invalid,
            wait_release: false,
            stop_feeding: false,
            closed: false,
            finished_sent: false,
            named,
            early: VecDeque::new(),
            open: None,
            on_message: None,
            buffers,
            chunking_key: None,
            remake: None,
            retry: VecDeque::new(),
            _r: PhantomData,
        }
    }

    /// Submits chunks until `max_in_flight` are out (or parked) or the
    /// input ends.
    fn feed(&mut self) {
        while !self.stop_feeding && self.in_flight.len() + self.parked < self.max_in_flight {
            if let Some((at, _)) = self.retry.pop_front() {
                let item = (self.remake.as_ref().expect("retries need remake"))(at);
                self.submit_chunk_at(at, vec![item]);
                continue;
            }
            if self.exhausted {
                break;
            }
            let left = self.total.map(|t| t.saturating_sub(self.next_index));
            let size = self.chunker.next_size(left);
            let (chunk, ended) = take_chunk(&mut self.items, size);
            if ended && self.open.as_ref().is_none_or(OpenInput::ended) {
                self.exhausted = true;
            }
            if !chunk.is_empty() {
                self.submit_chunk(chunk);
            }
            if ended {
                break;
            }
        }
    }

    fn submit_chunk(&mut self, chunk: Vec<It::Item>) {
        let start = self.next_index;
        self.next_index += chunk.len();
        self.submit_chunk_at(start, chunk);
    }

    /// Submits the items at positions `start..` as one chunk.
    fn submit_chunk_at(&mut self, start: usize, chunk: Vec<It::Item>) {
        let len = chunk.len();
        let Some(open) = self.inner.open() else {
            self.closed = true;
            self.stop_feeding = true;
            return;
        };
        if let Some(named) = &self.named {
            let options = TaskOptions { timeout: self.timeout.map(|t| t * len as u32), retries: 0 };
            let mut buffer = spare_buffer(&mut self.buffers);
            let encoded = (named.encode)(&chunk, &mut buffer).map(|()| buffer);
            match encoded {
                Ok(bytes) => {
                    self.chunker.observe_bytes(len, bytes.len());
                    let id = self.inner.next_id();
                    let end = ChunkEnd::named(
                        id,
                        start,
                        len,
                        self.tx.clone(),
                        self.alive.clone(),
                        named.decode.clone(),
                    )
                    .with_messages(&self.on_message);
                    let argument = Arc::new(bytes);
                    let work =
                        WorkSource::Named { function: named.function, argument: argument.clone() };
                    // SAFETY: named chunks exist only for `'static` items
                    // and results (`engine_for`'s bounds).
                    let end_dyn = unsafe { erase_end(end.clone()) };
                    keep_buffer(&mut self.buffers, self.max_in_flight, argument);
                    self.in_flight.insert(id, Instant::now());
                    self.inner.send_with_id(&open, id, options, end_dyn, work);
                }
                // RELIABILITY row 1: the items fail at submit; no worker.
                Err(e) => self.early.push_back(ChunkMsg::Lost {
                    task: TaskId(u64::MAX),
                    start,
                    len,
                    error: TaskError::serialization(e),
                }),
            }
            return;
        }
        let id = self.inner.next_id();
        let end = ChunkEnd::new(id, start, len, self.tx.clone(), self.alive.clone())
            .with_messages(&self.on_message);
        let producer = end.clone();
        let f = self.f.clone();
        let work = Box::new(move || {
            let t0 = Instant::now();
            let mut values = Vec::with_capacity(chunk.len());
            let mut errors = Vec::new();
            f.run_chunk(chunk, &mut values, &mut errors);
            let elapsed = t0.elapsed();
            // The function goes before the results: once the caller has
            // every result, no worker still holds what it passed in.
            drop(f);
            producer.end(|task| ChunkMsg::Ran { task, start, len, values, errors, elapsed });
        });
        // SAFETY: unscoped engines hold only 'static types (their public
        // constructors require it); scoped ones set `wait_release` and
        // wait in `Drop` until every chunk terminal is gone.
        let (work, end_dyn) = unsafe { erase(work, end.clone()) };
        let options = TaskOptions { timeout: self.timeout.map(|t| t * len as u32), retries: 0 };
        self.in_flight.insert(id, Instant::now());
        self.inner.send_with_id(&open, id, options, end_dyn, WorkSource::Once(Some(work)));
    }

    /// Feeds, then waits for the next chunk message. `None` once every
    /// chunk came back and the input is done.
    fn next_chunk(&mut self) -> Option<ChunkMsg<R>> {
        let msg = loop {
            self.feed();
            if self.stop_feeding {
                // Retries that will not run end with their chunk's error.
                while let Some((start, error)) = self.retry.pop_front() {
                    let task = TaskId(u64::MAX);
                    self.early.push_back(ChunkMsg::Lost { task, start, len: 1, error });
                }
            }
            if let Some(m) = self.early.pop_front() {
                break m;
            }
            let waiting_input = !self.exhausted && !self.stop_feeding;
            match &self.open {
                // An open input may bring more: wait for an item or a result.
                Some(open) if waiting_input => {
                    let mut select = crossbeam_channel::Select::new();
                    let results = select.recv(&self.rx);
                    let input = select.recv(&open.rx);
                    let ready = if self.in_flight.len() < self.max_in_flight {
                        select.ready()
                    } else {
                        select.remove(input);
                        select.ready()
                    };
                    if ready == results {
                        match self.rx.recv().ok()? {
                            m if self.retry_lost(&m) => continue,
                            m => break m,
                        }
                    }
                }
                _ if self.in_flight.is_empty() && self.retry.is_empty() => return None,
                _ => match super::wait::recv(&self.rx, None, self.inner.spin).ok()? {
                    m if self.retry_lost(&m) => continue,
                    m => break m,
                },
            }
        };
        let (task, len) = match &msg {
            ChunkMsg::Ran { task, len, elapsed, errors, .. } => {
                if errors.is_empty() {
                    self.chunker.observe(*len, *elapsed);
                }
                if let Some(sent) = self.in_flight.get(task) {
                    self.chunker.observe_round_trip(*len, sent.elapsed(), *elapsed);
                }
                (*task, *len)
            }
            ChunkMsg::Lost { task, len, .. } => (*task, *len),
        };
        self.in_flight.remove(&task);
        self.done += len;
        if let Some(bar) = &self.bar {
            bar.bar.inc(len as u64);
        }
        let (batch, done, total) = (self.batch, self.done, self.total);
        self.inner.events.emit(|| PoolEvent::BatchProgress {
            batch,
            done,
            total,
            fraction: total.map(|t| if t == 0 { 1.0 } else { done as f32 / t as f32 }),
        });
        Some(msg)
    }

    /// Takes a lost chunk of several items for retrying them one by one,
    /// when the items can be made again and the loss was the worker's (it
    /// died or ran out of time): so only an item that kills its worker
    /// fails, not the items it shared a chunk with. Those ran at most to
    /// the loss and run again: at least once, as after any retry.
    fn retry_lost(&mut self, msg: &ChunkMsg<R>) -> bool {
        let ChunkMsg::Lost { task, start, len, error } = msg else { return false };
        let lost_by_worker = error.is_worker_lost() || error.is_timeout();
        if *len < 2 || self.remake.is_none() || self.stop_feeding || !lost_by_worker {
            return false;
        }
        self.in_flight.remove(task);
        self.retry.extend((*start..start + len).map(|at| (at, error.clone())));
        true
    }

    fn emit_results(
        &self,
        start: usize,
        len: usize,
        failed: &[(usize, TaskError)],
        all_failed: bool,
    ) {
        if !self.inner.events.is_active() {
            return;
        }
        let mut bad = failed.iter().map(|(o, _)| *o).peekable();
        for offset in 0..len {
            let ok = if all_failed {
                false
            } else if bad.peek() == Some(&offset) {
                bad.next();
                false
            } else {
                true
            };
            let batch = self.batch;
            self.inner.events.emit(|| PoolEvent::BatchResult { batch, index: start + offset, ok });
        }
    }

    /// An invalid option, once: the first item of a lazy batch's results.
    fn take_invalid(&mut self) -> Option<BatchError> {
        let e = self.invalid.take()?;
        self.exhausted = true;
        Some(BatchError::InvalidOption(e))
    }

    /// No chunk is left: finishes the batch; `Closed`, once, if the pool
    /// closed before every item could run.
    fn run_out(&mut self) -> Option<BatchError> {
        self.finish();
        std::mem::take(&mut self.closed).then_some(BatchError::Closed)
    }

    fn finish(&mut self) {
        if self.finished_sent {
            return;
        }
        self.finished_sent = true;
        if let Some(bar) = &self.bar {
            bar.bar.finish();
        }
        let batch = self.batch;
        self.inner.events.emit(|| PoolEvent::BatchFinished(batch));
    }

    /// A chunk message as the chunk's outcome (a lost chunk fails every
    /// item), after emitting its results as events.
    fn chunk_of(&self, msg: ChunkMsg<R>) -> ChunkOutcome<R> {
        match msg {
            ChunkMsg::Ran { start, len, values, errors, .. } => {
                self.emit_results(start, len, &errors, false);
                ChunkOutcome { start, len, values, errors }
            }
            ChunkMsg::Lost { start, len, error, .. } => {
                self.emit_results(start, len, &[], true);
                let errors = (0..len).map(|o| (o, error.clone())).collect();
                ChunkOutcome { start, len, values: Vec::new(), errors }
            }
        }
    }

    /// `map`: every result in input order, or the failure with the lowest
    /// index once the running chunks settled.
    fn run_ordered(mut self) -> Result<Vec<R>, BatchError> {
        if let Some(e) = self.invalid.take() {
            return Err(BatchError::InvalidOption(e));
        }
        if self.inner.is_closed() {
            return Err(BatchError::Closed);
        }
        let mut out: Vec<R> = Vec::with_capacity(self.total.unwrap_or(0));
        let mut parked: BTreeMap<usize, Vec<R>> = BTreeMap::new();
        let mut failure: Option<(usize, TaskError)> = None;
        while let Some(msg) = self.next_chunk() {
            let first_bad = match &msg {
                ChunkMsg::Ran { errors, start, .. } => {
                    errors.first().map(|(o, e)| (start + o, e.clone()))
                }
                ChunkMsg::Lost { start, error, .. } => Some((*start, error.clone())),
            };
            if let Some((index, error)) = first_bad {
                self.emit_failed(&msg);
                self.stop_feeding = true;
                if failure.as_ref().is_none_or(|(i, _)| index < *i) {
                    failure = Some((index, error));
                }
                continue;
            }
            let ChunkMsg::Ran { start, len, values, .. } = msg else { continue };
            self.emit_results(start, len, &[], false);
            if failure.is_some() {
                continue;
            }
            if start == out.len() {
                out.extend(values);
                while let Some(next) = parked.remove(&out.len()) {
                    out.extend(next);
                }
            } else {
                parked.insert(start, values);
            }
        }
        self.finish();
        if let Some((index, error)) = failure {
            return Err(BatchError::Failed { index, error });
        }
        if self.closed {
            return Err(BatchError::Closed);
        }
        debug_assert!(parked.is_empty());
        Ok(out)
    }

    fn emit_failed(&self, msg: &ChunkMsg<R>) {
        match msg {
            ChunkMsg::Ran { start, len, errors, .. } => {
                self.emit_results(*start, *len, errors, false)
            }
            ChunkMsg::Lost { start, len, .. } => self.emit_results(*start, *len, &[], true),
        }
    }
}

impl<It: Iterator, F, R> Drop for Engine<It, F, R> {
    fn drop(&mut self) {
        // Chunks still queued are not wanted any more; running ones finish
        // (killing their workers would cost more than it saves).
        for (task, _) in self.in_flight.drain() {
            self.inner.link.send(Msg::CancelQueued(task));
        }
        if let (Some(key), Some(learned)) = (self.chunking_key.take(), self.chunker.learned()) {
            self.inner.learn(key, learned);
        }
        // Buffers a chunk still holds (a worker is writing it) are let go.
        self.inner.keep_buffers(self.buffers.drain(..).filter_map(|b| Arc::try_unwrap(b).ok()));
        if self.wait_release {
            // A scoped batch's chunks borrow the caller's stack: wait until
            // every chunk terminal (and so every closure) is gone.
            super::wait::until_zero(&self.alive);
        }
    }
}

/// The iterator of [`Pool::imap`]: results in input order (the items of
/// ordered [`Chunks`]).
pub struct Imap<It: Iterator, F, R> {
    chunks: Chunks<It, F, R>,
    ready: VecDeque<Result<R, BatchError>>,
}

impl<It: Iterator, F, R> Imap<It, F, R> {
    fn new(engine: Engine<It, F, R>) -> Self {
        Imap { chunks: Chunks::new(engine, true), ready: VecDeque::new() }
    }
}

impl<It, F, R> Iterator for Imap<It, F, R>
where
    It: Iterator,
    It::Item: Send,
    F: ChunkFn<It::Item, R>,
    R: Send,
{
    type Item = Result<R, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            match self.chunks.next()? {
                Ok(chunk) => self.ready.extend(chunk.into_results()),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The iterator of [`Pool::map_unordered`]: `(index, result)` in completion
/// order (the items of unordered [`Chunks`]).
pub struct MapUnordered<It: Iterator, F, R> {
    chunks: Chunks<It, F, R>,
    ready: VecDeque<Result<(usize, R), BatchError>>,
}

impl<It: Iterator, F, R> MapUnordered<It, F, R> {
    fn new(engine: Engine<It, F, R>) -> Self {
        MapUnordered { chunks: Chunks::new(engine, false), ready: VecDeque::new() }
    }
}

impl<It, F, R> Iterator for MapUnordered<It, F, R>
where
    It: Iterator,
    It::Item: Send,
    F: ChunkFn<It::Item, R>,
    R: Send,
{
    type Item = Result<(usize, R), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            match self.chunks.next()? {
                Ok(chunk) => {
                    let start = chunk.start;
                    let items = chunk.into_results().enumerate();
                    self.ready.extend(items.map(|(o, r)| r.map(|v| (start + o, v))));
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// One chunk of a batch as it ended ([`BatchBuilder::chunks_with`]).
#[derive(Debug)]
pub struct ChunkOutcome<R> {
    /// The index of its first item.
    pub start: usize,
    /// Its number of items.
    pub len: usize,
    /// The results of the items that did not fail, in order.
    pub values: Vec<R>,
    /// The items that failed, as offsets within the chunk (ascending) with
    /// their errors. A chunk that did not run to its end (worker lost,
    /// timeout, cancelled) fails every item.
    pub errors: Vec<(usize, TaskError)>,
}

impl<R> ChunkOutcome<R> {
    /// Each item's result, in input order.
    pub fn into_results(self) -> impl Iterator<Item = Result<R, BatchError>> {
        let ChunkOutcome { start, len, values, errors } = self;
        let mut values = values.into_iter();
        let mut errors = errors.into_iter().peekable();
        (0..len).filter_map(move |offset| match errors.next_if(|(o, _)| *o == offset) {
            Some((_, error)) => Some(Err(BatchError::Failed { index: start + offset, error })),
            None => values.next().map(Ok),
        })
    }
}

/// The iterator of [`BatchBuilder::chunks_with`]: whole chunks.
pub struct Chunks<It: Iterator, F, R> {
    engine: Engine<It, F, R>,
    /// In input order: the chunks that ended ahead of their turn, by first
    /// index, and the first index of the next chunk to yield.
    parked: Option<(BTreeMap<usize, ChunkOutcome<R>>, usize)>,
}

impl<It: Iterator, F, R> Chunks<It, F, R> {
    fn new(engine: Engine<It, F, R>, ordered: bool) -> Self {
        Chunks { engine, parked: ordered.then(|| (BTreeMap::new(), 0)) }
    }

    /// Lets a lost chunk of several items run again item by item (as
    /// [`BatchBuilder::map_positions_with`] does), `remake` making the item
    /// at a position again.
    pub fn retry_lost_items(
        mut self,
        remake: impl Fn(usize) -> It::Item + Send + Sync + 'static,
    ) -> Self {
        self.engine.remake = Some(Arc::new(remake));
        self
    }
}

impl<It, F, R> Iterator for Chunks<It, F, R>
where
    It: Iterator,
    It::Item: Send,
    F: ChunkFn<It::Item, R>,
    R: Send,
{
    type Item = Result<ChunkOutcome<R>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(invalid) = self.engine.take_invalid() {
            return Some(Err(invalid));
        }
        loop {
            if let Some((parked, next)) = &mut self.parked
                && let Some(chunk) = parked.remove(next)
            {
                self.engine.parked = parked.len();
                *next += chunk.len;
                return Some(Ok(chunk));
            }
            let Some(msg) = self.engine.next_chunk() else {
                return self.engine.run_out().map(Err);
            };
            let chunk = self.engine.chunk_of(msg);
            match &mut self.parked {
                Some((parked, _)) => {
                    parked.insert(chunk.start, chunk);
                    self.engine.parked = parked.len();
                }
                None => return Some(Ok(chunk)),
            }
        }
    }
}
