//! The worker side: what a child process runs when the parent started it.
//!
//! The parent passes the connection as fd 3 and describes the worker in the
//! environment (`SHOAL_WORKER_FD`, `SHOAL_WORKER_ID`, `SHOAL_SHM_THRESHOLD`,
//! `SHOAL_PIN_CORE`, and `SHOAL_SEGMENTS`: the fds of the argument and
//! result segments). The worker sends its HELLO, checks the parent's, says
//! READY, then runs one JOB at a time until STOP (it then says BYE) or until
//! the socket closes (the parent is gone).

use std::borrow::Cow;
use std::io::{BufWriter, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use shoal_core::backend::{ExitHook, InitHook, Job, TaskMessage, TaskSink, Work, WorkerSpec};
use shoal_core::error::{TaskError, TaskErrorKind};
use shoal_core::function::Registry;
use shoal_core::wire::{self, FailureKind, Handshake, Message, Payload, SEGMENT_MINOR};
use shoal_core::worker::{WorkerRuntime, panic_message};
use shoal_core::{TaskId, WorkerId};

use crate::segment::Segment;
use crate::shm;

/// The variable that marks a worker process and holds its connection's fd.
pub(crate) const ENV_FD: &str = "SHOAL_WORKER_FD";
/// The worker's id.
pub(crate) const ENV_ID: &str = "SHOAL_WORKER_ID";
/// Payloads of at least this many bytes go through shared memory.
pub(crate) const ENV_SHM: &str = "SHOAL_SHM_THRESHOLD";
/// The core to pin the worker to.
pub(crate) const ENV_PIN: &str = "SHOAL_PIN_CORE";
/// The resident memory (bytes) above which the worker retires after a task.
pub(crate) const ENV_MAX_RSS: &str = "SHOAL_MAX_RSS";
/// `<argument segment fd>,<result segment fd>`.
pub(crate) const ENV_SEGMENTS: &str = "SHOAL_SEGMENTS";

/// The worker's ends of its two segments (argument: read, result: write).
fn open_segments() -> Option<(Segment, Arc<Mutex<Segment>>)> {
    let value = std::env::var(ENV_SEGMENTS).ok()?;
    let (a, r) = value.split_once(',')?;
    let (a, r): (i32, i32) = (a.parse().ok()?, r.parse().ok()?);
    // SAFETY: the parent passed these fds to us for the segments; nothing
    // else in this process owns them.
    let args = unsafe { Segment::open(a, false) };
    // SAFETY: as above.
    let results = unsafe { Segment::open(r, true) };
    match (args, results) {
        (Ok(a), Ok(r)) => Some((a, Arc::new(Mutex::new(r)))),
        (a, r) => {
            let why = a.err().or(r.err()).unwrap_or_default();
            eprintln!("shoal worker: no segments ({why}); payloads go through files");
            None
        }
    }
}

/// This process's resident set size, from `/proc/self/statm` (Linux).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Runs this process as a shoal worker if the parent started it as one,
/// and then exits; returns at once otherwise. Call it first thing in
/// `main`, with the functions the workers may run.
pub fn worker_main(registry: &Registry) {
    worker_main_with(registry, WorkerHooks::default());
}

/// What a worker program runs in the worker itself, before its first task
/// and after its last (closures cannot cross from the parent, so bindings
/// bring their `worker_init`/`worker_exit` this way). An `init` error is
/// the worker's start failure: the parent sees its message.
#[derive(Clone, Default)]
pub struct WorkerHooks {
    /// Runs when the worker starts, after the handshake.
    pub init: Option<InitHook>,
    /// Runs when the worker leaves after a stop or at the end of its
    /// lifespan (not when it is killed).
    pub exit: Option<ExitHook>,
}

/// [`worker_main`] with [`WorkerHooks`].
pub fn worker_main_with(registry: &Registry, hooks: WorkerHooks) {
    let Some(fd) = std::env::var(ENV_FD).ok().and_then(|v| v.parse::<i32>().ok()) else {
        return;
    };
    quiet_task_panics();
    crate::keep_freed_memory();
    let code = match run(fd, registry, hooks) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shoal worker: {e}");
            70
        }
    };
    std::process::exit(code);
}

/// A task's panic travels to the parent as its error: print only panics
/// outside tasks.
pub(crate) fn quiet_task_panics() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if shoal_core::task::task_id().is_none() {
            default_hook(info);
        }
    }));
}

type Conn = Arc<Mutex<BufWriter<UnixStream>>>;

fn send(conn: &Conn, message: &Message) -> Result<(), String> {
    let mut w = conn.lock().unwrap_or_else(|e| e.into_inner());
    wire::write_message(&mut *w, message).map_err(|e| e.to_string())?;
    w.flush().map_err(|e| e.to_string())
}

/// The current task's messages and result go out as frames.
struct ChildSink {
    task: u64,
    conn: Conn,
    shm_threshold: usize,
    worker: WorkerId,
    /// The result segment, when the connection speaks minor 1.
    segment: Option<Arc<Mutex<Segment>>>,
}

impl TaskSink for ChildSink {
    fn message(&self, message: TaskMessage) {
        let task = self.task;
        let m = match message {
            TaskMessage::Progress(fraction) => Message::Progress { task, fraction },
            TaskMessage::Log(text) => Message::Log { task, text },
            TaskMessage::Data(data) => Message::Data { task, data },
        };
        let _ = send(&self.conn, &m);
    }

    fn result_bytes(&self, bytes: Vec<u8>) -> Result<(), TaskError> {
        let tag = format!("w{}", self.worker.0);
        // The parent read our previous result before it sent this job: the
        // segment is ours again (README "Segments").
        let mut segment =
            self.segment.as_ref().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()));
        let result =
            shm::to_payload(Cow::Owned(bytes), self.shm_threshold, &tag, segment.as_deref_mut())
                .map_err(|e| TaskError::serialization(format!("shared memory: {e}")))?;
        drop(segment);
        send(&self.conn, &Message::Done { task: self.task, result })
            .map_err(|e| TaskError::serialization(format!("cannot send the result: {e}")))
    }
}

/// Runs a named job on arguments borrowed from the argument segment, as
/// `WorkerRuntime::run` does for owned ones (which needs them in an `Arc`,
/// a copy).
fn run_borrowed(
    registry: &Registry,
    worker: WorkerId,
    task: u64,
    function: &str,
    arguments: &[u8],
    sink: Arc<ChildSink>,
) -> Result<(), TaskError> {
    let Some(f) = registry.get(function) else {
        return Err(TaskError::serialization(format!(
            "no function named `{function}` is registered in this worker (it has: {})",
            registry.names().join(", ")
        )));
    };
    let as_sink: Arc<dyn TaskSink> = sink.clone();
    let ran = shoal_core::task::run_as(worker, TaskId(task), as_sink, || {
        catch_unwind(AssertUnwindSafe(|| f.call_chunk(arguments)))
    });
    match ran {
        Ok(Ok(bytes)) => sink.result_bytes(bytes),
        Ok(Err(e)) => Err(TaskError::serialization(e)),
        Err(p) => Err(TaskError::panic(panic_message(&*p))),
    }
}

fn run(fd: i32, registry: &Registry, hooks: WorkerHooks) -> Result<(), String> {
    // SAFETY: the parent passed this fd to us as our end of the connection;
    // nothing else in this process owns it.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    // Programs this worker starts (nested pools, subprocesses of tasks) must
    // not inherit its connection.
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    let id: u64 = std::env::var(ENV_ID).ok().and_then(|v| v.parse().ok()).ok_or("no worker id")?;
    let shm_threshold =
        std::env::var(ENV_SHM).ok().and_then(|v| v.parse().ok()).unwrap_or(usize::MAX);
    let max_rss: Option<u64> = std::env::var(ENV_MAX_RSS).ok().and_then(|v| v.parse().ok());
    if let Some(core) = std::env::var(ENV_PIN).ok().and_then(|v| v.parse::<usize>().ok())
        && let Some(cores) = core_affinity::get_core_ids()
        && !cores.is_empty()
    {
        core_affinity::set_for_current(cores[core % cores.len()]);
    }
    let mut reader = std::io::BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let conn: Conn = Arc::new(Mutex::new(BufWriter::new(stream)));
    let hs = Handshake::worker(id)
        .pid(std::process::id())
        .runtime(concat!("rust shoal-process ", env!("CARGO_PKG_VERSION")));
    send(&conn, &hs.hello())?;
    let first =
        wire::read_message(&mut reader, wire::HANDSHAKE_MAX_FRAME).map_err(|e| e.to_string())?;
    let our_max = hs.ours().max_frame;
    let peer = hs.receive(first).map_err(|e| e.to_string())?;
    let segments = open_segments().filter(|_| peer.minor >= SEGMENT_MINOR);
    let (args_segment, results_segment) = segments.unzip();
    let worker = WorkerId(id);
    let mut rt = WorkerRuntime::new(WorkerSpec { id: worker, init: hooks.init, exit: hooks.exit })
        .with_registry(registry.clone());
    if let Err(e) = rt.init() {
        send(&conn, &Message::StartFailed { message: e.clone() })?;
        return Err(e);
    }
    send(&conn, &Message::Ready)?;
    loop {
        let message = match wire::read_message(&mut reader, our_max) {
            Ok(m) => m,
            // The parent is gone: leave quietly.
            Err(e) if e.is_closed() => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        match message {
            Message::Job { task, attempt, function, argument } => {
                if matches!(argument, Payload::Segment { .. }) && args_segment.is_none() {
                    return Err("a segment payload, but no segment was agreed".into());
                }
                let sink = Arc::new(ChildSink {
                    task,
                    conn: conn.clone(),
                    shm_threshold,
                    worker,
                    segment: results_segment.clone(),
                });
                let argument =
                    shm::from_payload(argument, u64::from(u32::MAX), args_segment.as_ref());
                let outcome = match argument {
                    // A segment's bytes are read where they are.
                    Ok(Cow::Borrowed(bytes)) => {
                        run_borrowed(registry, worker, task, &function, bytes, sink)
                    }
                    Ok(Cow::Owned(bytes)) => rt.run(Job {
                        task: TaskId(task),
                        attempt,
                        work: Work::Named { function, argument: Arc::new(bytes) },
                        sink,
                    }),
                    Err(e) => Err(TaskError::serialization(e)),
                };
                if let Err(e) = outcome {
                    let (kind, message, traceback) = match e.kind() {
                        TaskErrorKind::Panic { message, traceback } => (
                            FailureKind::Panic,
                            message.clone(),
                            traceback.clone().unwrap_or_default(),
                        ),
                        other => (FailureKind::Serialization, format!("{other:?}"), String::new()),
                    };
                    let message = match e.kind() {
                        TaskErrorKind::Serialization { message } => message.clone(),
                        _ => message,
                    };
                    send(&conn, &Message::Failed { task, kind, message, traceback })?;
                }
                if max_rss.is_some_and(|cap| rss_bytes().is_some_and(|rss| rss > cap)) {
                    // Over the memory cap: retire between tasks. The parent
                    // starts a replacement; a job it sent meanwhile goes
                    // back to its queue (we never read it).
                    rt.exit();
                    send(&conn, &Message::Bye)?;
                    return Ok(());
                }
            }
            Message::Stop => {
                rt.exit();
                send(&conn, &Message::Bye)?;
                return Ok(());
            }
            other => return Err(format!("unexpected {} from the parent", other.kind())),
        }
    }
}
