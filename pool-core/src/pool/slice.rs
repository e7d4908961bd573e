//! `map_slice`: the zero-copy ordered map over a borrowed slice, the
//! counterpart of rayon's `par_iter().map().collect()`.
//!
//! Chunks are index ranges. A chunk reads its items straight from the
//! caller's slice and writes each result straight into its slot of the
//! output vector, so nothing is copied on the way in or out. Each chunk
//! records in its own [`ChunkState`] whether its range of the output is
//! fully written (`WRITTEN`) or not (it then dropped what it wrote). The
//! call returns only after every chunk closure was released (a chunk whose
//! thread was detached by a timeout is waited for), so the borrows and the
//! raw output pointer never outlive the call; then the output is either
//! complete, or exactly the `WRITTEN` ranges are dropped.
//!
//! Without a task timeout, chunks are *claimed* (see
//! [`SliceMap::run_claiming`]): the batch sends one task per worker, and
//! each task takes range after range from a shared cursor until the slice
//! is used up, each range `chunksize` items or, automatically, sized by
//! the task's own [`Chunker`] from the ranges it ran. A free worker still
//! takes the next chunk, but without a round trip through the dispatcher
//! and the caller: on a 2-core machine each such hand-off woke two threads
//! that took a core from a worker (W1, 10^6 items of ~1 ns: ~15 chunks,
//! ~20 µs of wall time each).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::chunking::Chunker;
use crate::error::{BatchError, TaskError};
use crate::scheduler::TaskOptions;
use crate::worker::panic_message;

use super::Inner;
use super::batch::{Bar, ChunkEnd, ChunkMsg, erase};
use super::driver::{Msg, WorkSource};

const PENDING: u8 = 0;
const WRITTEN: u8 = 1;
const CLEANED: u8 = 2;

/// Where one chunk's output range stands.
struct ChunkState {
    start: usize,
    len: usize,
    state: AtomicU8,
}

/// A raw pointer the chunks may share; each writes a disjoint range.
struct OutPtr<R>(*mut R);

impl<R> Clone for OutPtr<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for OutPtr<R> {}
// SAFETY: chunks write disjoint ranges of the output, and the output
// outlives every chunk (the call waits for their release).
unsafe impl<R: Send> Send for OutPtr<R> {}
// SAFETY: as above; the pointer itself is only copied.
unsafe impl<R: Send> Sync for OutPtr<R> {}

impl<R> OutPtr<R> {
    /// The slot at `i` (a method, so closures capture the whole `OutPtr`).
    fn at(self, i: usize) -> *mut R {
        self.0.wrapping_add(i)
    }
}

pub(super) struct SliceMap {
    pub(super) inner: Arc<Inner>,
    pub(super) chunker: Chunker,
    pub(super) max_in_flight: usize,
    pub(super) timeout: Option<Duration>,
    pub(super) bar: Option<Bar>,
}

impl SliceMap {
    pub(super) fn run<T, R, F>(mut self, items: &[T], f: F) -> Result<Vec<R>, BatchError>
    where
        T: Sync,
        R: Send,
        F: Fn(&T) -> R + Send + Sync,
    {
        if self.timeout.is_none() {
            return self.run_claiming(items, f);
        }
        let n = items.len();
        let mut out: Vec<R> = Vec::with_capacity(n);
        let ptr = OutPtr(out.as_mut_ptr());
        let f = Arc::new(f);
        let (tx, rx) = crossbeam_channel::unbounded::<ChunkMsg<()>>();
        let alive = Arc::new(AtomicUsize::new(0));
        let mut chunks: Vec<Arc<ChunkState>> = Vec::new();
        let mut in_flight = std::collections::HashMap::new();
        let mut next = 0usize;
        let mut failure: Option<(usize, TaskError)> = None;
        let mut closed = false;

        loop {
            while failure.is_none() && !closed && next < n && in_flight.len() < self.max_in_flight {
                let len = self.chunker.next_size(Some(n - next));
                let start = next;
                next += len;
                let Some(open) = self.inner.open() else {
                    closed = true;
                    break;
                };
                let state = Arc::new(ChunkState { start, len, state: AtomicU8::new(PENDING) });
                chunks.push(state.clone());
                let id = self.inner.next_id();
                let end = ChunkEnd::<()>::new(id, start, len, tx.clone(), alive.clone());
                let producer = end.clone();
                let f = f.clone();
                let work = Box::new(move || {
                    let t0 = Instant::now();
                    let errors = match run_range(items, &*f, ptr, start, len) {
                        Ok(()) => {
                            state.state.store(WRITTEN, Ordering::Release);
                            Vec::new()
                        }
                        Err(failed) => {
                            state.state.store(CLEANED, Ordering::Release);
                            vec![failed]
                        }
                    };
                    let elapsed = t0.elapsed();
                    producer.end(|task| ChunkMsg::Ran {
                        task,
                        start,
                        len,
                        values: Vec::new(),
                        errors,
                        elapsed,
                    });
                });
                // SAFETY: `run` does not return before `alive` is zero,
                // i.e. before every chunk closure and terminal was dropped.
                let (work, end_dyn) = unsafe { erase(work, end.clone()) };
                let options =
                    TaskOptions { timeout: self.timeout.map(|t| t * len as u32), retries: 0 };
                in_flight.insert(id, Instant::now());
                self.inner.send_with_id(&open, id, options, end_dyn, WorkSource::Once(Some(work)));
            }
            if in_flight.is_empty() {
                break;
            }
            let Ok(msg) = super::wait::recv(&rx, None, self.inner.spin) else { break };
            match msg {
                ChunkMsg::Ran { task, start, len, errors, elapsed, .. } => {
                    if let Some(sent) = in_flight.remove(&task) {
                        self.chunker.observe_round_trip(len, sent.elapsed(), elapsed);
                    }
                    if let Some((offset, error)) = errors.into_iter().next() {
                        keep_lowest(&mut failure, start + offset, error);
                    } else {
                        self.chunker.observe(len, elapsed);
                    }
                    if let Some(bar) = &self.bar {
                        bar.bar.inc(len as u64);
                    }
                }
                ChunkMsg::Lost { task, start, error, .. } => {
                    in_flight.remove(&task);
                    keep_lowest(&mut failure, start, error);
                }
            }
        }
        drop(tx);
        // Wait until no chunk can touch `items` or `out` any more.
        super::wait::until_zero(&alive);
        if let Some(bar) = &self.bar {
            bar.bar.finish();
        }
        let complete = failure.is_none()
            && !closed
            && chunks.iter().map(|c| c.len).sum::<usize>() == n
            && chunks.iter().all(|c| c.state.load(Ordering::Acquire) == WRITTEN);
        if complete {
            // SAFETY: every chunk wrote its whole range and the ranges
            // cover 0..n.
            unsafe { out.set_len(n) };
            return Ok(out);
        }
        for c in &chunks {
            if c.state.load(Ordering::Acquire) == WRITTEN {
                // SAFETY: this range was fully written and is dropped once;
                // `out`'s length stays 0, so its own drop frees only memory.
                unsafe { drop_range(ptr, c.start, c.len) };
            }
        }
        for task in in_flight.into_keys() {
            self.inner.link.send(Msg::Cancel(task));
        }
        match failure {
            Some((index, error)) => Err(BatchError::Failed { index, error }),
            None => Err(BatchError::Closed),
        }
    }
}

/// No range: a claiming task between two ranges.
const NONE: usize = usize::MAX;

/// What the claiming tasks of one `map_slice` share.
struct Claims {
    /// The first item no task has claimed (may run past the end).
    cursor: AtomicUsize,
    /// An item panicked or a task was lost: claim nothing more.
    stop: AtomicBool,
    /// The ranges fully written, as (start, len).
    written: Mutex<Vec<(usize, usize)>>,
    /// The lowest failed item and its error.
    failure: Mutex<Option<(usize, TaskError)>>,
    /// The start of the range each task runs now, or [`NONE`].
    current: Vec<AtomicUsize>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SliceMap {
    /// The claiming form of [`SliceMap::run`] (see the module docs): one
    /// task per worker, each running ranges from the shared cursor until
    /// none is left. Same outcome as chunks sent one by one: the results
    /// in order, or the lowest failed item, or the pool closed.
    fn run_claiming<T, R, F>(self, items: &[T], f: F) -> Result<Vec<R>, BatchError>
    where
        T: Sync,
        R: Send,
        F: Fn(&T) -> R + Send + Sync,
    {
        let n = items.len();
        let mut out: Vec<R> = Vec::with_capacity(n);
        if n == 0 {
            return Ok(out);
        }
        let ptr = OutPtr(out.as_mut_ptr());
        let tasks = self.inner.config.max.min(n);
        let claims = Arc::new(Claims {
            cursor: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            written: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            current: (0..tasks).map(|_| AtomicUsize::new(NONE)).collect(),
        });
        let f = Arc::new(f);
        let (tx, rx) = crossbeam_channel::unbounded::<ChunkMsg<()>>();
        let alive = Arc::new(AtomicUsize::new(0));
        let mut ids = Vec::with_capacity(tasks);
        for slot in 0..tasks {
            let Some(open) = self.inner.open() else { break };
            let id = self.inner.next_id();
            let end = ChunkEnd::<()>::new(id, 0, 0, tx.clone(), alive.clone());
            let producer = end.clone();
            let (f, claims, chunker) = (f.clone(), claims.clone(), self.chunker.clone());
            let bar = self.bar.as_ref().map(|b| b.bar.clone());
            let work = Box::new(move || {
                claim_and_run(items, &*f, ptr, &claims, slot, chunker, bar.as_ref());
                producer.end(|task| ChunkMsg::Ran {
                    task,
                    start: 0,
                    len: 0,
                    values: Vec::new(),
                    errors: Vec::new(),
                    elapsed: Duration::ZERO,
                });
            });
            // SAFETY: `run_claiming` does not return before `alive` is
            // zero, i.e. before every task closure and terminal was dropped.
            let (work, end_dyn) = unsafe { erase(work, end.clone()) };
            ids.push(id);
            let options = TaskOptions::default();
            self.inner.send_with_id(&open, id, options, end_dyn, WorkSource::Once(Some(work)));
        }
        drop(tx);
        // A lost task stops the claims. If it was running a range, the
        // batch fails there; otherwise its error stands for the first item
        // left undone, if any (the others may have finished meanwhile).
        let mut lost: Option<TaskError> = None;
        for _ in 0..ids.len() {
            let Ok(msg) = super::wait::recv(&rx, None, self.inner.spin) else { break };
            if let ChunkMsg::Lost { task, error, .. } = msg {
                claims.stop.store(true, Ordering::Release);
                let running = ids
                    .iter()
                    .position(|t| *t == task)
                    .map(|slot| claims.current[slot].load(Ordering::Acquire))
                    .filter(|&start| start != NONE);
                match running {
                    Some(start) => keep_lowest(&mut lock(&claims.failure), start, error),
                    None => {
                        lost.get_or_insert(error);
                    }
                }
            }
        }
        // Wait until no task can touch `items` or `out` any more.
        super::wait::until_zero(&alive);
        if let Some(bar) = &self.bar {
            bar.bar.finish();
        }
        let failure = lock(&claims.failure).take();
        let mut written = std::mem::take(&mut *lock(&claims.written));
        if failure.is_none() && written.iter().map(|r| r.1).sum::<usize>() == n {
            // SAFETY: the written ranges are disjoint (each was claimed
            // once) and add up to `n`, so they cover 0..n.
            unsafe { out.set_len(n) };
            return Ok(out);
        }
        for &(start, len) in &written {
            // SAFETY: this range was fully written and is dropped once;
            // `out`'s length stays 0, so its own drop frees only memory.
            unsafe { drop_range(ptr, start, len) };
        }
        match (failure, lost) {
            (Some((index, error)), _) => Err(BatchError::Failed { index, error }),
            (None, Some(error)) => {
                written.sort_unstable();
                let mut index = 0;
                for &(start, len) in &written {
                    if start != index {
                        break;
                    }
                    index += len;
                }
                Err(BatchError::Failed { index, error })
            }
            (None, None) => Err(BatchError::Closed),
        }
    }
}

/// One claiming task: ranges from `claims.cursor`, sized by this task's
/// own copy of the batch's chunker (an explicit `chunksize`, or automatic:
/// a claim costs an atomic add and two clock reads, so the measured
/// overhead keeps the shortest range at [`FLOOR_CHUNK_TIME`]'s worth),
/// until the slice is used up or the batch stops.
///
/// [`FLOOR_CHUNK_TIME`]: crate::chunking::FLOOR_CHUNK_TIME
fn claim_and_run<T, R>(
    items: &[T],
    f: &impl Fn(&T) -> R,
    ptr: OutPtr<R>,
    claims: &Claims,
    slot: usize,
    mut chunker: Chunker,
    bar: Option<&indicatif::ProgressBar>,
) {
    let n = items.len();
    while !claims.stop.load(Ordering::Acquire) {
        let left = n.saturating_sub(claims.cursor.load(Ordering::Relaxed));
        if left == 0 {
            break;
        }
        let claimed_at = Instant::now();
        let size = chunker.next_size(Some(left));
        let start = claims.cursor.fetch_add(size, Ordering::AcqRel);
        if start >= n {
            break;
        }
        let len = size.min(n - start);
        claims.current[slot].store(start, Ordering::Release);
        let t0 = Instant::now();
        let run = run_range(items, f, ptr, start, len);
        let elapsed = t0.elapsed();
        match run {
            Ok(()) => lock(&claims.written).push((start, len)),
            Err((offset, error)) => {
                keep_lowest(&mut lock(&claims.failure), start + offset, error);
                claims.stop.store(true, Ordering::Release);
            }
        }
        claims.current[slot].store(NONE, Ordering::Release);
        chunker.observe(len, elapsed);
        chunker.observe_round_trip(len, claimed_at.elapsed(), elapsed);
        if let Some(bar) = bar {
            bar.inc(len as u64);
        }
    }
}

/// Runs `f` over `items[start..start + len]`, writing each result into its
/// slot of the output. If an item panics, the results written so far are
/// dropped and the item's offset in the range comes back with the error.
fn run_range<T, R>(
    items: &[T],
    f: &impl Fn(&T) -> R,
    ptr: OutPtr<R>,
    start: usize,
    len: usize,
) -> Result<(), (usize, TaskError)> {
    let mut written = 0usize;
    let run = catch_unwind(AssertUnwindSafe(|| {
        for (i, x) in items[start..start + len].iter().enumerate() {
            let v = f(x);
            // SAFETY: slot `start + i` is in bounds (the output has
            // capacity `items.len()`), belongs to this range alone (chunks
            // and claims are disjoint), and is written once.
            unsafe { ptr.at(start + i).write(v) };
            written += 1;
        }
    }));
    run.map_err(|p| {
        // SAFETY: exactly the first `written` slots of the range were
        // initialised above, and nothing else drops them.
        unsafe { drop_range(ptr, start, written) };
        (written, TaskError::panic(panic_message(&*p)))
    })
}

/// Drops the results in slots `start..start + len` of the output.
///
/// # Safety
/// Those slots are initialised, and nothing else drops them.
unsafe fn drop_range<R>(ptr: OutPtr<R>, start: usize, len: usize) {
    // SAFETY: the caller's contract.
    unsafe { std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(ptr.at(start), len)) }
}

fn keep_lowest(failure: &mut Option<(usize, TaskError)>, index: usize, error: TaskError) {
    if failure.as_ref().is_none_or(|(i, _)| index < *i) {
        *failure = Some((index, error));
    }
}
