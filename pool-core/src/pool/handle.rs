//! The handle of one submitted task: wait, poll, cancel, and its messages.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::backend::{TaskMessage, TaskSink};
use crate::error::TaskError;
use crate::ids::{TaskId, WorkerId};

use super::driver::DriverLink;

/// One message of a task's stream. The stream is `Scheduled`, then
/// `Started` (again after each retry), any number of `Progress`, `Log` and
/// `Data`, then exactly one of `Done` or `Failed`.
#[derive(Clone, Debug, PartialEq)]
pub enum Message<R> {
    /// The pool accepted the task.
    Scheduled,
    /// A worker took the task.
    Started(WorkerId),
    /// The task reported progress in `[0, 1]`.
    Progress(f32),
    /// The task logged a line.
    Log(String),
    /// The task sent a user payload.
    Data(Vec<u8>),
    /// The task's result.
    Done(R),
    /// Why the task ended without a result.
    Failed(TaskError),
}

impl<R> From<TaskMessage> for Message<R> {
    fn from(m: TaskMessage) -> Self {
        match m {
            TaskMessage::Progress(p) => Message::Progress(p),
            TaskMessage::Log(l) => Message::Log(l),
            TaskMessage::Data(d) => Message::Data(d),
        }
    }
}

/// Turns a named task's result bytes into its value.
type DecodeOne<R> = fn(&[u8]) -> Result<R, TaskError>;

struct State<R> {
    messages: VecDeque<Message<R>>,
    /// Set once; the first terminal outcome wins.
    ended: bool,
    waiters: usize,
}

/// What the task's handle and its producers (worker, driver) share.
pub(crate) struct TaskCell<R> {
    state: Mutex<State<R>>,
    cond: Condvar,
    /// Mirrors `state.ended` for lock-free spinning.
    ended: AtomicBool,
    /// For scoped tasks: released when the last owner drops the cell.
    _guard: Option<super::scope::ReleaseGuard>,
    /// For named functions: turns the worker's result bytes into `R`.
    decode: Option<DecodeOne<R>>,
}

/// The driver's view of a task: it reports starts and terminal failures.
pub(crate) trait TaskEnd: TaskSink {
    /// A worker took the task.
    fn started(&self, worker: WorkerId);
    /// The task ended with an error (unless it already ended).
    fn fail(&self, error: TaskError);
}

impl<R> TaskCell<R> {
    pub(crate) fn new() -> Arc<Self> {
        Self::make(None, None)
    }

    pub(crate) fn with_guard(guard: super::scope::ReleaseGuard) -> Arc<Self> {
        Self::make(Some(guard), None)
    }

    pub(crate) fn with_decoder(decode: DecodeOne<R>) -> Arc<Self> {
        Self::make(None, Some(decode))
    }

    fn make(guard: Option<super::scope::ReleaseGuard>, decode: Option<DecodeOne<R>>) -> Arc<Self> {
        let mut messages = VecDeque::with_capacity(4);
        messages.push_back(Message::Scheduled);
        Arc::new(TaskCell {
            state: Mutex::new(State { messages, ended: false, waiters: 0 }),
            cond: Condvar::new(),
            ended: AtomicBool::new(false),
            _guard: guard,
            decode,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<R>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, message: Message<R>, terminal: bool) -> bool {
        let mut s = self.lock();
        if s.ended {
            return false;
        }
        s.messages.push_back(message);
        if terminal {
            s.ended = true;
            self.ended.store(true, Ordering::Release);
        }
        let wake = s.waiters > 0;
        drop(s);
        if wake {
            self.cond.notify_all();
        }
        true
    }

    /// Delivers the result; false when the task already ended (a late
    /// result after a timeout or cancel is dropped).
    pub(crate) fn complete(&self, value: R) -> bool {
        self.push(Message::Done(value), true)
    }
}

impl<R: Send> TaskSink for TaskCell<R> {
    fn message(&self, message: TaskMessage) {
        self.push(message.into(), false);
    }
    fn result_bytes(&self, bytes: Vec<u8>) -> Result<(), TaskError> {
        let Some(decode) = self.decode else {
            return Err(TaskError::serialization("this task expects an in-process result"));
        };
        self.complete(decode(&bytes)?);
        Ok(())
    }
}

impl<R: Send> TaskEnd for TaskCell<R> {
    fn started(&self, worker: WorkerId) {
        self.push(Message::Started(worker), false);
    }
    fn fail(&self, error: TaskError) {
        self.push(Message::Failed(error), true);
    }
}

/// A submitted task. Dropping the handle does not cancel the task.
pub struct TaskHandle<R> {
    id: TaskId,
    cell: Arc<TaskCell<R>>,
    link: DriverLink,
}

impl<R> std::fmt::Debug for TaskHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("id", &self.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<R> TaskHandle<R> {
    pub(crate) fn new(id: TaskId, cell: Arc<TaskCell<R>>, link: DriverLink) -> Self {
        TaskHandle { id, cell, link }
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Whether the task ended (its terminal message is ready).
    pub fn is_finished(&self) -> bool {
        self.cell.ended.load(Ordering::Acquire)
    }

    /// Asks the pool to cancel the task: a queued task is removed, a running
    /// one is stopped (its worker is killed or detached and replaced). The
    /// task then ends `Cancelled`, unless it ended first.
    pub fn cancel(&self) {
        self.link.cancel(self.id);
    }

    /// Waits for the task's result.
    pub fn wait(self) -> Result<R, TaskError> {
        match self.wait_until(None) {
            Ok(r) => r,
            Err(_) => unreachable!("no deadline"),
        }
    }

    /// Waits at most `timeout`; on timeout the handle comes back.
    pub fn wait_timeout(self, timeout: Duration) -> Result<Result<R, TaskError>, Self> {
        let deadline = Instant::now().checked_add(timeout);
        self.wait_until(deadline)
    }

    /// The result if the task ended, else the handle back. Never blocks.
    pub fn poll(self) -> Result<Result<R, TaskError>, Self> {
        if self.is_finished() { Ok(self.take_outcome()) } else { Err(self) }
    }

    fn wait_until(self, deadline: Option<Instant>) -> Result<Result<R, TaskError>, Self> {
        if super::wait::spin_until(|| self.is_finished()) {
            return Ok(self.take_outcome());
        }
        {
            let mut s = self.cell.lock();
            s.waiters += 1;
            while !s.ended {
                match deadline {
                    None => s = self.cell.cond.wait(s).unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            break;
                        }
                        s = self
                            .cell
                            .cond
                            .wait_timeout(s, d - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                }
            }
            s.waiters -= 1;
            if !s.ended {
                drop(s);
                return Err(self);
            }
        }
        Ok(self.take_outcome())
    }

    fn take_outcome(self) -> Result<R, TaskError> {
        let mut s = self.cell.lock();
        while let Some(m) = s.messages.pop_back() {
            match m {
                Message::Done(r) => return Ok(r),
                Message::Failed(e) => return Err(e),
                _ => {}
            }
        }
        unreachable!("an ended task has a terminal message")
    }

    /// The task's messages as a blocking iterator, ending after `Done` or
    /// `Failed`.
    pub fn messages(self) -> Messages<R> {
        Messages { handle: Some(self) }
    }

    /// The next message, waiting at most `timeout` (`None` on timeout or
    /// after the terminal message was taken).
    pub fn next_message(&self, timeout: Option<Duration>) -> Option<Message<R>> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut s = self.cell.lock();
        loop {
            if let Some(m) = s.messages.pop_front() {
                return Some(m);
            }
            if s.ended {
                return None;
            }
            s.waiters += 1;
            s = match deadline {
                None => self.cell.cond.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        s.waiters -= 1;
                        return None;
                    }
                    self.cell.cond.wait_timeout(s, d - now).unwrap_or_else(|e| e.into_inner()).0
                }
            };
            s.waiters -= 1;
        }
    }
}

/// A task's message stream; see [`TaskHandle::messages`].
pub struct Messages<R> {
    handle: Option<TaskHandle<R>>,
}

impl<R> Iterator for Messages<R> {
    type Item = Message<R>;
    fn next(&mut self) -> Option<Message<R>> {
        let h = self.handle.as_ref()?;
        let m = h.next_message(None);
        if matches!(m, None | Some(Message::Done(_)) | Some(Message::Failed(_))) {
            self.handle = None;
        }
        m
    }
}
