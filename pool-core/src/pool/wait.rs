//! Spin-then-block waiting: a hand-off between threads that are both awake
//! costs well under a microsecond, but waking a parked thread costs tens of
//! microseconds on small VMs. The pool's waits first spin (with
//! `yield_now`, so a 2-core machine is not starved) for at most [`SPIN`]
//! (or what the backend asks for, `Backend::spin`), then block.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

/// How long a waiter spins before it blocks.
pub const SPIN: Duration = Duration::from_micros(50);

/// Receives from `rx`, spinning for at most `spin` before blocking until
/// `deadline`.
pub fn recv<T>(
    rx: &Receiver<T>,
    deadline: Option<Instant>,
    spin: Duration,
) -> Result<T, RecvTimeoutError> {
    let start = Instant::now();
    let mut i = 0u32;
    loop {
        match rx.try_recv() {
            Ok(v) => return Ok(v),
            Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Empty) => {}
        }
        i += 1;
        if i.is_multiple_of(16) {
            let now = Instant::now();
            if now - start >= spin || deadline.is_some_and(|d| now >= d) {
                break;
            }
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    match deadline {
        Some(d) => rx.recv_deadline(d),
        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
    }
}

/// Spins until `done()` or [`SPIN`] passed; returns `done()`.
pub fn spin_until(mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut i = 0u32;
    loop {
        if done() {
            return true;
        }
        i += 1;
        if i.is_multiple_of(16) {
            if start.elapsed() >= SPIN {
                return done();
            }
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Waits until `count` is zero: spins briefly, then naps. Used where
/// borrowed data must outlive every closure that holds it (scopes, scoped
/// and slice batches); a closure on a detached thread may take a while.
pub fn until_zero(count: &std::sync::atomic::AtomicUsize) {
    use std::sync::atomic::Ordering;
    while count.load(Ordering::Acquire) > 0 {
        if !spin_until(|| count.load(Ordering::Acquire) == 0) {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}
