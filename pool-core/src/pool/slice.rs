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

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
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
                    let mut written = 0usize;
                    let run = catch_unwind(AssertUnwindSafe(|| {
                        for (i, x) in items[start..start + len].iter().enumerate() {
                            let v = f(x);
                            // SAFETY: slot `start + i` is in bounds (the
                            // output has capacity `n`), belongs to this
                            // chunk alone, and is written once.
                            unsafe { ptr.at(start + i).write(v) };
                            written += 1;
                        }
                    }));
                    let errors = match run {
                        Ok(()) => {
                            state.state.store(WRITTEN, Ordering::Release);
                            Vec::new()
                        }
                        Err(p) => {
                            // SAFETY: exactly the first `written` slots of
                            // this chunk were initialised above.
                            unsafe {
                                std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                                    ptr.at(start),
                                    written,
                                ))
                            };
                            state.state.store(CLEANED, Ordering::Release);
                            vec![(written, TaskError::panic(panic_message(&*p)))]
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
            let Ok(msg) = super::wait::recv(&rx, None) else { break };
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
                unsafe {
                    std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                        out.as_mut_ptr().add(c.start),
                        c.len,
                    ))
                };
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

fn keep_lowest(failure: &mut Option<(usize, TaskError)>, index: usize, error: TaskError) {
    if failure.as_ref().is_none_or(|(i, _)| index < *i) {
        *failure = Some((index, error));
    }
}
