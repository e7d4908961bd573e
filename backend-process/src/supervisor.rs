//! The parent side of one worker process: spawn, handshake, a writer
//! thread (jobs out), a reader thread (frames in), kill with a grace
//! period, and reaping.
//!
//! Exactly one `Exited` report per worker that reported `Ready`, sent by
//! the reader after it reaped the child; a worker that failed to start
//! reports `StartFailed` instead.

use std::borrow::Cow;
use std::ffi::OsString;
use std::io::{BufReader, BufWriter, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use shoal_core::backend::{Job, ReportSink, TaskMessage, TaskSink, Work, Worker, WorkerReport};
use shoal_core::error::{ExitCause, TaskError, TaskErrorKind};
use shoal_core::wire::{self, FailureKind, Handshake, Message, Payload, SEGMENT_MINOR, WireError};
use shoal_core::{TaskId, WorkerId};

use crate::child::{ENV_FD, ENV_ID, ENV_MAX_RSS, ENV_PIN, ENV_SEGMENTS, ENV_SHM};
use crate::launch::{Launch, Proc};
use crate::segment::Segment;
use crate::{Output, Process, shm};

/// The fd number of the connection in the child.
const CHILD_FD: i32 = 3;
/// The fd numbers of the argument and result segments in the child.
const CHILD_SEGMENT_FDS: [i32; 2] = [4, 5];

enum Outgoing {
    Job(Job),
    Stop,
}

/// What the pool's handle, the writer and the reader share.
struct Shared {
    id: WorkerId,
    pid: u32,
    reports: Arc<dyn ReportSink>,
    /// The job on the worker, for its messages and result.
    current: Mutex<Option<(TaskId, Arc<dyn TaskSink>)>>,
    /// The pool asked for a kill (timeout, cancel, terminate).
    killed: AtomicBool,
    /// The child was reaped; its pid may be reused, so no more signals.
    reaped: Mutex<bool>,
    grace: Duration,
    /// The protocol minor the connection speaks (set by the reader after
    /// the handshake, before READY, so before any job).
    minor: AtomicU16,
}

impl Shared {
    fn signal(&self, sig: i32) {
        let reaped = self.reaped.lock().unwrap_or_else(|e| e.into_inner());
        if !*reaped {
            // SAFETY: plain kill(2) on our own child, which is not reaped
            // yet (we hold the lock that reaping takes), so the pid is ours.
            unsafe { libc::kill(self.pid as libc::pid_t, sig) };
        }
    }

    fn current_sink(&self, task: u64) -> Option<Arc<dyn TaskSink>> {
        let cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        cur.as_ref().filter(|(t, _)| t.0 == task).map(|(_, s)| s.clone())
    }

    fn take_current(&self, task: u64) -> Option<Arc<dyn TaskSink>> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if cur.as_ref().is_some_and(|(t, _)| t.0 == task) {
            cur.take().map(|(_, s)| s)
        } else {
            None
        }
    }
}

/// One worker process as the pool holds it.
pub(crate) struct ProcessWorker {
    tx: Sender<Outgoing>,
    shared: Arc<Shared>,
}

impl Worker for ProcessWorker {
    fn send(&mut self, job: Job) {
        // If the writer is gone the reader reports the exit.
        let _ = self.tx.send(Outgoing::Job(job));
    }

    fn stop(&mut self) {
        let _ = self.tx.send(Outgoing::Stop);
    }

    fn kill(&mut self) {
        self.shared.killed.store(true, Ordering::Release);
        self.shared.signal(libc::SIGTERM);
        let shared = self.shared.clone();
        let _ = std::thread::Builder::new().name("shoal-killer".into()).spawn(move || {
            std::thread::sleep(shared.grace);
            shared.signal(libc::SIGKILL);
        });
    }

    fn pid(&self) -> Option<u32> {
        Some(self.shared.pid)
    }
}

/// Spawns worker `id` and its threads.
pub(crate) fn start(
    cfg: &Process,
    id: WorkerId,
    reports: Arc<dyn ReportSink>,
) -> Result<ProcessWorker, String> {
    let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    // Without segments (not Linux, or no memfd) payloads use files.
    let segments = match cfg.segment_size {
        0 => None,
        size => Segment::create(size).and_then(|a| Ok((a, Segment::create(size)?))).ok(),
    };
    let program = match &cfg.program {
        Some(p) => p.clone(),
        None => {
            std::env::current_exe().map_err(|e| format!("cannot find the current program: {e}"))?
        }
    };
    let mut env: Vec<(OsString, OsString)> = cfg.env.clone();
    env.push((ENV_FD.into(), CHILD_FD.to_string().into()));
    env.push((ENV_ID.into(), id.0.to_string().into()));
    env.push((ENV_SHM.into(), cfg.shm_threshold.to_string().into()));
    if cfg.pin {
        env.push((ENV_PIN.into(), id.0.to_string().into()));
    }
    if segments.is_some() {
        let value = format!("{},{}", CHILD_SEGMENT_FDS[0], CHILD_SEGMENT_FDS[1]);
        env.push((ENV_SEGMENTS.into(), value.into()));
    }
    if let Some(bytes) = cfg.max_memory {
        env.push((ENV_MAX_RSS.into(), bytes.to_string().into()));
    }
    let mut fds = [(theirs.as_raw_fd(), CHILD_FD), (-1, -1), (-1, -1)];
    if let Some((args, results)) = &segments {
        fds[1] = (args.fd(), CHILD_SEGMENT_FDS[0]);
        fds[2] = (results.fd(), CHILD_SEGMENT_FDS[1]);
    }
    let mut child = match &cfg.launcher {
        Some(launcher) => {
            if cfg.output == Output::Capture || cfg.configure.is_some() {
                return Err(
                    "output capture and `configure` need the worker program, not a launcher"
                        .to_owned(),
                );
            }
            let launch = Launch {
                worker: id,
                fds: fds.iter().copied().filter(|f| f.0 >= 0).collect(),
                env,
                current_dir: cfg.current_dir.clone(),
            };
            let pid = launcher
                .launch(&launch)
                .map_err(|e| format!("cannot launch worker {}: {e}", id.0))?;
            Proc::Launched(pid)
        }
        None => Proc::Command(command(cfg, id, &program, env, fds)?),
    };
    drop(theirs);
    let pid = child.id();
    if cfg.output == Output::Capture {
        // Set below, once `shared` exists.
    }
    let shared = Arc::new(Shared {
        id,
        pid,
        reports,
        current: Mutex::new(None),
        killed: AtomicBool::new(false),
        reaped: Mutex::new(false),
        grace: cfg.grace,
        minor: AtomicU16::new(0),
    });
    if let Proc::Command(c) = &mut child {
        if let Some(out) = c.stdout.take() {
            capture(out, "stdout", shared.clone());
        }
        if let Some(err) = c.stderr.take() {
            capture(err, "stderr", shared.clone());
        }
    }
    let write_half = ours.try_clone().map_err(|e| format!("socket: {e}"))?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let threshold = cfg.shm_threshold;
    let max_frame = cfg.max_frame;
    let (args_segment, results_segment) = segments.unzip();
    let w_shared = shared.clone();
    let out = Out { stream: write_half, threshold, max_frame, segment: args_segment };
    std::thread::Builder::new()
        .name(format!("shoal-writer-{}", id.0))
        .spawn(move || {
            crate::latency::short_slice();
            writer(out, rx, w_shared)
        })
        .map_err(|e| format!("cannot start a writer thread: {e}"))?;
    let r_shared = shared.clone();
    std::thread::Builder::new()
        .name(format!("shoal-reader-{}", id.0))
        .spawn(move || {
            crate::latency::short_slice();
            reader(ours, child, r_shared, max_frame, results_segment)
        })
        .map_err(|e| format!("cannot start a reader thread: {e}"))?;
    Ok(ProcessWorker { tx, shared })
}

/// The worker program's command, with the fds moved into place in the
/// child, and started.
fn command(
    cfg: &Process,
    id: WorkerId,
    program: &std::path::Path,
    env: Vec<(OsString, OsString)>,
    fds: [(RawFd, RawFd); 3],
) -> Result<Child, String> {
    let mut cmd = Command::new(program);
    cmd.args(&cfg.args).envs(env).stdin(Stdio::null());
    if let Some(dir) = &cfg.current_dir {
        cmd.current_dir(dir);
    }
    match cfg.output {
        Output::Inherit => {}
        Output::Null => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        Output::Capture => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
    }
    if let Some(configure) = &cfg.configure {
        configure(id, &mut cmd);
    }
    let parent_pid = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and calls
    // only async-signal-safe functions (dup2, fcntl, prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            // Each fd first moves above the targets (a source may be
            // another's target), then lands on its number without
            // FD_CLOEXEC; the temporary copies close at exec.
            let mut moved = [-1; 3];
            for (i, &(from, _)) in fds.iter().enumerate().filter(|(_, f)| f.0 >= 0) {
                moved[i] = libc::fcntl(from, libc::F_DUPFD_CLOEXEC, 10);
                if moved[i] == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, &(_, to)) in fds.iter().enumerate().filter(|(_, f)| f.0 >= 0) {
                if libc::dup2(moved[i], to) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            #[cfg(target_os = "linux")]
            {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
                if libc::getppid() != parent_pid {
                    // The parent died before the death signal was armed.
                    libc::_exit(1);
                }
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| format!("cannot start {}: {e}", program.display()))
}

/// Forwards a captured output stream, line by line, to the running task.
fn capture(stream: impl std::io::Read + Send + 'static, name: &'static str, shared: Arc<Shared>) {
    let _ = std::thread::Builder::new().name(format!("shoal-{name}")).spawn(move || {
        use std::io::BufRead;
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let sink = shared.current.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some((_, sink)) = sink {
                sink.message(TaskMessage::Log(format!("[{name}] {line}")));
            }
        }
    });
}

/// What the writer thread writes to.
struct Out {
    stream: UnixStream,
    threshold: usize,
    max_frame: u32,
    /// The argument segment (parent to worker), if the worker has one.
    segment: Option<Segment>,
}

fn writer(out: Out, rx: Receiver<Outgoing>, shared: Arc<Shared>) {
    let Out { stream, threshold, max_frame, mut segment } = out;
    let mut out = BufWriter::new(stream);
    let hello = Handshake::parent(shared.id.0)
        .pid(std::process::id())
        .max_frame(max_frame)
        .runtime(concat!("rust shoal-process ", env!("CARGO_PKG_VERSION")))
        .hello();
    if wire::write_message(&mut out, &hello).and_then(|()| out.flush().map_err(Into::into)).is_err()
    {
        return;
    }
    // No spin: a spinning writer takes a core from the worker processes.
    while let Ok(msg) = shoal_core::wait::recv(&rx, None, Duration::ZERO) {
        let frame = match msg {
            Outgoing::Stop => Message::Stop,
            Outgoing::Job(job) => {
                let Job { task, attempt, work, sink } = job;
                let Work::Named { function, argument } = work else {
                    // The pool never sends closures here (`accepts`).
                    let _ = sink;
                    continue;
                };
                let tag = format!("p{}", shared.id.0);
                let segment = segment
                    .as_mut()
                    .filter(|_| shared.minor.load(Ordering::Acquire) >= SEGMENT_MINOR);
                let bytes = Cow::Borrowed(argument.as_slice());
                let argument = match shm::to_payload(bytes, threshold, &tag, segment) {
                    Ok(p) => p,
                    Err(e) => {
                        let err = TaskError::serialization(format!("shared memory: {e}"));
                        shared.reports.report(WorkerReport::Failed(shared.id, task, err));
                        continue;
                    }
                };
                *shared.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((task, sink));
                Message::Job { task: task.0, attempt, function, argument }
            }
        };
        let sent =
            wire::write_message(&mut out, &frame).and_then(|()| out.flush().map_err(Into::into));
        if sent.is_err() {
            // The worker is gone; the reader reports it. A segment it will
            // never read is removed.
            if let Message::Job { argument, .. } = &frame {
                shm::discard(argument);
            }
            break;
        }
    }
}

enum Ended {
    /// EOF after BYE, or EOF.
    Closed { bye: bool },
    /// The worker broke the protocol.
    Protocol(String),
    /// It never got ready.
    StartFailed,
}

fn reader(
    stream: UnixStream,
    mut child: Proc,
    shared: Arc<Shared>,
    max_frame: u32,
    segment: Option<Segment>,
) {
    let mut input = BufReader::new(stream);
    let ended = read_frames(&mut input, &shared, max_frame, segment.as_ref());
    let started = !matches!(ended, Ended::StartFailed);
    let (cause_hint, bye) = match ended {
        Ended::Closed { bye } => (None, bye),
        Ended::Protocol(why) => {
            shared.signal(libc::SIGKILL);
            (Some(ExitCause::Protocol(why)), false)
        }
        Ended::StartFailed => (None, false),
    };
    let status = reap(&mut child, &shared, bye);
    // A payload the worker will never read.
    shared.current.lock().unwrap_or_else(|e| e.into_inner()).take();
    if !started {
        return;
    }
    let cause = cause_hint.unwrap_or_else(|| {
        if shared.killed.load(Ordering::Acquire) {
            ExitCause::Killed
        } else {
            match status {
                Some(s) if bye && s.success() => ExitCause::Stopped,
                Some(s) => match (s.code(), s.signal()) {
                    (Some(c), _) => ExitCause::Code(c),
                    (None, Some(sig)) => ExitCause::Signal(sig),
                    _ => ExitCause::Vanished("unknown exit status".into()),
                },
                None => ExitCause::Vanished("could not reap the worker".into()),
            }
        }
    });
    shared.reports.report(WorkerReport::Exited { worker: shared.id, pid: Some(shared.pid), cause });
}

/// Waits for the child: after BYE it gets the grace period to exit, else
/// (the socket closed without BYE) it is killed if it still runs.
fn reap(child: &mut Proc, shared: &Shared, bye: bool) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + if bye { shared.grace } else { Duration::from_millis(50) };
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                let _ = child.kill();
                break child.wait().ok();
            }
            Err(_) => break None,
        }
    };
    *shared.reaped.lock().unwrap_or_else(|e| e.into_inner()) = true;
    status
}

/// The worker closed its end: EOF, or a reset because it exited with a
/// frame of ours unread (it retired as a job arrived). Neither breaks the
/// protocol.
fn disconnected(e: &WireError) -> bool {
    e.is_closed()
        || matches!(
            e,
            WireError::Io {
                kind: std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe,
                ..
            }
        )
}

fn read_frames(
    input: &mut BufReader<UnixStream>,
    shared: &Shared,
    max_frame: u32,
    segment: Option<&Segment>,
) -> Ended {
    let first = match wire::read_message(input, wire::HANDSHAKE_MAX_FRAME) {
        Ok(m) => m,
        Err(e) if disconnected(&e) => {
            let why = "the worker closed the connection before its handshake".to_string();
            shared.reports.report(WorkerReport::StartFailed(shared.id, why));
            return Ended::StartFailed;
        }
        Err(e) => return Ended::Protocol(format!("handshake: {e}")),
    };
    match Handshake::parent(shared.id.0).receive(first) {
        Ok(peer) => shared.minor.store(peer.minor, Ordering::Release),
        Err(e) => {
            let why = format!("handshake failed: {e}");
            shared.reports.report(WorkerReport::StartFailed(shared.id, why));
            shared.signal(libc::SIGKILL);
            return Ended::StartFailed;
        }
    }
    // Segment payloads from the worker only with a segment and minor 1.
    let segment = segment.filter(|_| shared.minor.load(Ordering::Acquire) >= SEGMENT_MINOR);
    let mut ready = false;
    let mut bye = false;
    loop {
        let message = match wire::read_message(input, max_frame) {
            Ok(m) => m,
            Err(e) if disconnected(&e) => {
                if !ready {
                    let why = "the worker exited before it was ready".to_string();
                    shared.reports.report(WorkerReport::StartFailed(shared.id, why));
                    return Ended::StartFailed;
                }
                return Ended::Closed { bye };
            }
            Err(e) => return Ended::Protocol(e.to_string()),
        };
        match message {
            Message::Ready if !ready => {
                ready = true;
                shared.reports.report(WorkerReport::Ready(shared.id));
            }
            Message::StartFailed { message } if !ready => {
                shared.reports.report(WorkerReport::StartFailed(shared.id, message));
                shared.signal(libc::SIGKILL);
                return Ended::StartFailed;
            }
            Message::Progress { task, fraction } => {
                if let Some(s) = shared.current_sink(task) {
                    let f = if fraction.is_nan() { 0.0 } else { fraction.clamp(0.0, 1.0) };
                    s.message(TaskMessage::Progress(f));
                }
            }
            Message::Log { task, text } => {
                if let Some(s) = shared.current_sink(task) {
                    s.message(TaskMessage::Log(text));
                }
            }
            Message::Data { task, data } => {
                if let Some(s) = shared.current_sink(task) {
                    s.message(TaskMessage::Data(data));
                }
            }
            Message::Done { task, result } => {
                if matches!(result, Payload::Segment { .. }) && segment.is_none() {
                    return Ended::Protocol("a segment payload, but no segment was agreed".into());
                }
                let Some(sink) = shared.take_current(task) else {
                    shm::discard(&result);
                    return Ended::Protocol(format!("DONE for task {task}, which is not running"));
                };
                let limit = u64::from(max_frame).max(1 << 32);
                // Out of the segment first: the worker may reuse it once
                // its next JOB arrives (wire README, "Segments").
                let bytes = shm::from_payload(result, limit, segment).map(Cow::into_owned);
                // The worker is free now: it takes its next job while this
                // thread decodes (a Python chunk's results take the
                // interpreter lock, which another thread may hold).
                shared.reports.report(WorkerReport::Returned(shared.id, TaskId(task)));
                let report = match bytes {
                    Ok(bytes) => match sink.result_bytes(bytes) {
                        Ok(()) => WorkerReport::Done(shared.id, TaskId(task)),
                        Err(e) => WorkerReport::Failed(shared.id, TaskId(task), e),
                    },
                    Err(e) => {
                        WorkerReport::Failed(shared.id, TaskId(task), TaskError::serialization(e))
                    }
                };
                shared.reports.report(report);
            }
            Message::Failed { task, kind, message, traceback } => {
                if shared.take_current(task).is_none() {
                    return Ended::Protocol(format!(
                        "FAILED for task {task}, which is not running"
                    ));
                }
                let err = match kind {
                    FailureKind::Panic => TaskError::new(TaskErrorKind::Panic {
                        message,
                        traceback: (!traceback.is_empty()).then_some(traceback),
                    }),
                    FailureKind::Serialization => TaskError::serialization(message),
                };
                shared.reports.report(WorkerReport::Failed(shared.id, TaskId(task), err));
            }
            Message::Bye => bye = true,
            other => return Ended::Protocol(format!("unexpected {} from a worker", other.kind())),
        }
    }
}
