//! Open batches: the input is a channel that stays open while the batch
//! runs, so tasks can be added to a running batch (`apply_async` and
//! `Executor.submit` in the bindings, a GUI adding work). Made by
//! [`super::BatchBuilder::open_with`].
//!
//! The engine pulls from [`OpenItems`] without blocking: an empty channel
//! means "nothing now", not "the end". When it has nothing to feed, the
//! engine waits for whichever comes first, a chunk's result or a new item
//! (a `crossbeam_channel::Select` on both); the input ends when every
//! [`Feeder`] is dropped and the channel is drained.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

/// Adds items to an open batch. Clone it to add from several threads; the
/// batch's input ends when every clone is dropped.
pub struct Feeder<A> {
    tx: Sender<A>,
}

impl<A> Clone for Feeder<A> {
    fn clone(&self) -> Self {
        Feeder { tx: self.tx.clone() }
    }
}

impl<A> Feeder<A> {
    /// Adds `item` to the batch; gives it back if the batch is gone.
    pub fn send(&self, item: A) -> Result<(), A> {
        self.tx.send(item).map_err(|e| e.into_inner())
    }
}

/// The engine's side of an open batch's input.
pub struct OpenItems<A> {
    rx: Receiver<A>,
    ended: Arc<AtomicBool>,
}

impl<A> Iterator for OpenItems<A> {
    type Item = A;

    /// The next item if one is waiting; `None` when none is waiting now.
    fn next(&mut self) -> Option<A> {
        match self.rx.try_recv() {
            Ok(a) => Some(a),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.ended.store(true, Ordering::Release);
                None
            }
        }
    }
}

/// What the engine keeps of an open input: a receiver to wait on, and
/// whether the input ended.
pub(super) struct OpenInput<A> {
    pub(super) rx: Receiver<A>,
    ended: Arc<AtomicBool>,
}

impl<A> OpenInput<A> {
    /// True once every feeder is gone and the channel is drained.
    pub(super) fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }
}

/// A new open input: the feeder, the engine's items and its wait handle.
pub(super) fn channel<A>() -> (Feeder<A>, OpenItems<A>, OpenInput<A>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let ended = Arc::new(AtomicBool::new(false));
    (Feeder { tx }, OpenItems { rx: rx.clone(), ended: ended.clone() }, OpenInput { rx, ended })
}
