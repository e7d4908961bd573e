//! Scoped tasks: tasks that borrow from the caller's stack, as with
//! `rayon::scope` and `std::thread::scope`.
//!
//! Soundness rests on one rule: [`Pool::scope`] returns (or unwinds) only
//! after every task of the scope was released, that is, its closure and its
//! result cell were dropped by everyone (worker, driver, handle). A task
//! that timed out on a thread that cannot be killed is waited for.

use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::backend::LocalWork;
use crate::error::{BatchError, SubmitError, SubmitRefusal, TaskError};
use crate::ids::TaskId;

use super::Pool;
use super::driver::WorkSource;
use super::handle::{Message, TaskCell, TaskEnd, TaskHandle};

/// Decrements the scope's count of unreleased tasks when dropped.
pub(crate) struct ReleaseGuard(Arc<AtomicUsize>);

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A scope of [`Pool::scope`]; its tasks may borrow anything that outlives
/// `'env`.
pub struct Scope<'scope, 'env: 'scope> {
    pool: &'scope Pool,
    unreleased: Arc<AtomicUsize>,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

/// The handle of a scoped task; it cannot leave the scope.
pub struct ScopedHandle<'scope, R> {
    handle: TaskHandle<R>,
    _scope: PhantomData<&'scope ()>,
}

impl<R> ScopedHandle<'_, R> {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.handle.id()
    }
    /// Whether the task ended.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
    /// Asks the pool to cancel the task.
    pub fn cancel(&self) {
        self.handle.cancel()
    }
    /// Waits for the result.
    pub fn wait(self) -> Result<R, TaskError> {
        self.handle.wait()
    }
    /// The next message, waiting at most `timeout`.
    pub fn next_message(&self, timeout: Option<Duration>) -> Option<Message<R>> {
        self.handle.next_message(timeout)
    }
}

pub(crate) fn run<'env, F, T>(pool: &Pool, f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let scope = Scope {
        pool,
        unreleased: Arc::new(AtomicUsize::new(0)),
        _scope: PhantomData,
        _env: PhantomData,
    };
    let result = catch_unwind(AssertUnwindSafe(|| f(&scope)));
    scope.wait_released();
    match result {
        Ok(v) => v,
        Err(p) => resume_unwind(p),
    }
}

impl<'scope, 'env> Scope<'scope, 'env> {
    fn wait_released(&self) {
        super::wait::until_zero(&self.unreleased);
    }

    /// Submits a task that may borrow from the enclosing stack. A closed
    /// pool hands it back.
    pub fn submit<F, R>(&'scope self, f: F) -> Result<ScopedHandle<'scope, R>, SubmitError<F>>
    where
        F: FnOnce() -> R + Send + 'env,
        R: Send + 'env,
    {
        let f = self.pool.check_local(f)?;
        let Some(open) = self.pool.inner.open() else {
            return Err(SubmitError::new(f, SubmitRefusal::Closed));
        };
        self.unreleased.fetch_add(1, Ordering::AcqRel);
        let cell = TaskCell::<R>::with_guard(ReleaseGuard(self.unreleased.clone()));
        let producer = cell.clone();
        let work: Box<dyn FnOnce() + Send + 'env> = Box::new(move || {
            producer.complete(f());
        });
        let end: Arc<dyn TaskEnd + 'env> = cell.clone();
        // SAFETY: only lifetimes change. The closure and the cell (the only
        // things that may borrow from 'env) each keep the release guard's
        // cell alive, and `run` does not return before every guard dropped.
        let (work, end) = unsafe {
            (
                std::mem::transmute::<Box<dyn FnOnce() + Send + 'env>, LocalWork>(work),
                std::mem::transmute::<Arc<dyn TaskEnd + 'env>, Arc<dyn TaskEnd>>(end),
            )
        };
        let options = self.pool.default_options();
        let id = self.pool.inner.send_task(&open, options, end, WorkSource::Once(Some(work)));
        Ok(ScopedHandle {
            handle: TaskHandle::new(id, cell, self.pool.inner.link.clone()),
            _scope: PhantomData,
        })
    }

    /// An ordered map whose function and items may borrow from the
    /// enclosing stack; like [`Pool::map`] otherwise. Over a slice,
    /// [`Pool::map_slice`] is faster: it neither moves items into chunks
    /// nor copies results out of them.
    pub fn map<I, T, R, F>(&self, items: I, f: F) -> Result<Vec<R>, BatchError>
    where
        I: IntoIterator<Item = T>,
        T: Send + 'env,
        R: Send + 'env,
        F: Fn(T) -> R + Send + Sync + 'env,
    {
        self.pool.batch().map_scoped(items, f)
    }

    /// [`Scope::map`] with a fixed chunk size.
    pub fn map_chunked<I, T, R, F>(
        &self,
        chunksize: usize,
        items: I,
        f: F,
    ) -> Result<Vec<R>, BatchError>
    where
        I: IntoIterator<Item = T>,
        T: Send + 'env,
        R: Send + 'env,
        F: Fn(T) -> R + Send + Sync + 'env,
    {
        self.pool.batch().chunksize(chunksize).map_scoped(items, f)
    }
}
