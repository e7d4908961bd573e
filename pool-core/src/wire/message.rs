//! The messages of the protocol (README.md, "Messages") and how one frame
//! body encodes each of them.

use core::fmt;

use super::codec::{Fields, PutFields, sized};
use super::error::WireError;
use super::{MAGIC, VERSION_MAJOR, VERSION_MINOR};

/// The kind byte that starts every frame body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// `0x01`, both directions, the first frame of each side.
    Hello = 0x01,
    /// `0x02`, worker → parent: `worker_init` is done.
    Ready = 0x02,
    /// `0x03`, worker → parent: `worker_init` failed; the worker exits.
    StartFailed = 0x03,
    /// `0x10`, parent → worker: run one task.
    Job = 0x10,
    /// `0x11`, parent → worker: finish, run `worker_exit`, send BYE, exit.
    Stop = 0x11,
    /// `0x20`, worker → parent: task progress.
    Progress = 0x20,
    /// `0x21`, worker → parent: a line of text from a task.
    Log = 0x21,
    /// `0x22`, worker → parent: a user payload from a task.
    Data = 0x22,
    /// `0x23`, worker → parent: the task's result.
    Done = 0x23,
    /// `0x24`, worker → parent: the task failed.
    Failed = 0x24,
    /// `0x30`, worker → parent: clean exit.
    Bye = 0x30,
}

/// Who may send a kind of message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Both sides (HELLO).
    Both,
    /// Only the parent.
    ParentToWorker,
    /// Only the worker.
    WorkerToParent,
}

impl Kind {
    /// Every kind of this protocol version, in code order.
    pub const ALL: [Kind; 11] = [
        Kind::Hello,
        Kind::Ready,
        Kind::StartFailed,
        Kind::Job,
        Kind::Stop,
        Kind::Progress,
        Kind::Log,
        Kind::Data,
        Kind::Done,
        Kind::Failed,
        Kind::Bye,
    ];

    /// The kind with this code, if the protocol has one.
    pub fn from_u8(code: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == code)
    }

    /// The kind's code on the wire.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind's name as the README spells it (`"HELLO"`, `"JOB"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hello => "HELLO",
            Kind::Ready => "READY",
            Kind::StartFailed => "START_FAILED",
            Kind::Job => "JOB",
            Kind::Stop => "STOP",
            Kind::Progress => "PROGRESS",
            Kind::Log => "LOG",
            Kind::Data => "DATA",
            Kind::Done => "DONE",
            Kind::Failed => "FAILED",
            Kind::Bye => "BYE",
        }
    }

    /// Who may send it.
    pub fn direction(self) -> Direction {
        match self {
            Kind::Hello => Direction::Both,
            Kind::Job | Kind::Stop => Direction::ParentToWorker,
            _ => Direction::WorkerToParent,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which end of a connection a HELLO comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    /// `0`: the pool's side.
    Parent = 0,
    /// `1`: the side that runs tasks.
    Worker = 1,
}

impl Role {
    /// The other end.
    pub fn peer(self) -> Role {
        match self {
            Role::Parent => Role::Worker,
            Role::Worker => Role::Parent,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Parent => "parent",
            Role::Worker => "worker",
        })
    }
}

/// Why a task failed (the `error kind` of FAILED).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FailureKind {
    /// `1`: the task panicked (Rust) or raised (other languages).
    Panic = 1,
    /// `2`: the argument or the result could not be (de)serialized.
    Serialization = 2,
}

/// A task argument or result: inline bytes, a shared-memory file the
/// receiver reads and then unlinks, or a range of the connection's
/// shared-memory segment (README.md, "Payloads").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Tag `0`: the bytes themselves.
    Inline(Vec<u8>),
    /// Tag `1`: the bytes are in a shared-memory segment.
    Shm {
        /// The segment's file name in the shared-memory directory (for
        /// example `/dev/shm` on Linux): `shoal-` then `A-Z a-z 0-9 . _ -`,
        /// at most [`MAX_SHM_NAME`] bytes. Never a path.
        name: String,
        /// How many bytes of the segment hold the payload.
        len: u64,
    },
    /// Tag `2` (minor 1): the bytes are at `offset .. offset + len` of the
    /// sender's segment of this connection, which stays (README.md,
    /// "Segments").
    Segment {
        /// Where the payload starts in the segment.
        offset: u64,
        /// How many bytes it has.
        len: u64,
    },
}

/// The longest shared-memory segment name (the usual file name limit).
pub const MAX_SHM_NAME: usize = 255;

/// The prefix every shared-memory segment name starts with.
pub const SHM_PREFIX: &str = "shoal-";

/// Checks a shared-memory segment name (README.md, "Payloads"). A valid name
/// is a single file name: it cannot climb out of the shared-memory
/// directory, so a hostile peer cannot make the receiver read or unlink
/// anything but a shoal segment.
pub fn check_shm_name(name: &str) -> Result<(), WireError> {
    if name.len() > MAX_SHM_NAME {
        return Err(WireError::BadShmName { reason: "longer than 255 bytes" });
    }
    if !name.starts_with(SHM_PREFIX) {
        return Err(WireError::BadShmName { reason: "does not start with `shoal-`" });
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err(WireError::BadShmName {
            reason: "has a character other than A-Z a-z 0-9 . _ -",
        });
    }
    Ok(())
}

/// The first frame of each side (README.md, "Handshake").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's major version ([`VERSION_MAJOR`]).
    pub major: u16,
    /// The sender's minor version ([`VERSION_MINOR`] for this code).
    pub minor: u16,
    /// Which end the sender is.
    pub role: Role,
    /// The worker this connection is for (the parent assigns it).
    pub worker_id: u64,
    /// The sender's process id, 0 where there is none.
    pub pid: u32,
    /// The largest frame body the sender accepts.
    pub max_frame: u32,
    /// Free text naming the sender's implementation, for example
    /// `"rust shoal-process 0.1.0"` or `"python shoal 0.1.0 cpython 3.11"`.
    pub runtime: String,
}

/// One message, typed and owning its data.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// `0x01` HELLO.
    Hello(Hello),
    /// `0x02` READY: `worker_init` is done, the worker takes jobs.
    Ready,
    /// `0x03` START_FAILED: `worker_init` failed; the worker exits.
    StartFailed {
        /// What went wrong.
        message: String,
    },
    /// `0x10` JOB: run one attempt of one task.
    Job {
        /// The task id.
        task: u64,
        /// 1 for the first attempt, 2 for the first retry, ...
        attempt: u32,
        /// The function's registered name.
        function: String,
        /// The serialized argument.
        argument: Payload,
    },
    /// `0x11` STOP: finish the current task, run `worker_exit`, send BYE,
    /// exit.
    Stop,
    /// `0x20` PROGRESS.
    Progress {
        /// The task id.
        task: u64,
        /// Fraction done; meant to be in `[0, 1]` (the wire carries any
        /// `f32`; the pool clamps and ignores NaN).
        fraction: f32,
    },
    /// `0x21` LOG.
    Log {
        /// The task id.
        task: u64,
        /// A line of text.
        text: String,
    },
    /// `0x22` DATA.
    Data {
        /// The task id.
        task: u64,
        /// A user payload.
        data: Vec<u8>,
    },
    /// `0x23` DONE: the task's serialized result.
    Done {
        /// The task id.
        task: u64,
        /// The serialized result.
        result: Payload,
    },
    /// `0x24` FAILED.
    Failed {
        /// The task id.
        task: u64,
        /// Panic or serialization.
        kind: FailureKind,
        /// The error message.
        message: String,
        /// The remote traceback; empty when there is none.
        traceback: String,
    },
    /// `0x30` BYE: the worker exits cleanly after this.
    Bye,
}

impl Payload {
    fn encoded_len(&self) -> u64 {
        match self {
            Payload::Inline(bytes) => 1 + sized(bytes.len()),
            Payload::Shm { name, .. } => 1 + sized(name.len()) + 8,
            Payload::Segment { .. } => 1 + 8 + 8,
        }
    }

    fn put(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Inline(bytes) => {
                out.put_u8(0);
                out.put_bytes(bytes);
            }
            Payload::Shm { name, len } => {
                out.put_u8(1);
                out.put_str(name);
                out.put_u64(*len);
            }
            Payload::Segment { offset, len } => {
                out.put_u8(2);
                out.put_u64(*offset);
                out.put_u64(*len);
            }
        }
    }

    fn read(f: &mut Fields<'_>, tag: &'static str, field: &'static str) -> Result<Self, WireError> {
        match f.u8(tag)? {
            0 => Ok(Payload::Inline(f.bytes(field)?.to_vec())),
            1 => {
                let name = f.str(field)?;
                check_shm_name(&name)?;
                let len = f.u64(field)?;
                Ok(Payload::Shm { name, len })
            }
            2 => Ok(Payload::Segment { offset: f.u64(field)?, len: f.u64(field)? }),
            other => Err(WireError::UnknownPayloadTag(other)),
        }
    }
}

impl Message {
    /// The message's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Hello(_) => Kind::Hello,
            Message::Ready => Kind::Ready,
            Message::StartFailed { .. } => Kind::StartFailed,
            Message::Job { .. } => Kind::Job,
            Message::Stop => Kind::Stop,
            Message::Progress { .. } => Kind::Progress,
            Message::Log { .. } => Kind::Log,
            Message::Data { .. } => Kind::Data,
            Message::Done { .. } => Kind::Done,
            Message::Failed { .. } => Kind::Failed,
            Message::Bye => Kind::Bye,
        }
    }

    /// The length of the encoded body (the frame without its 4-byte
    /// header). Compare it with the peer's `max_frame` before sending; a
    /// payload that would not fit goes through shared memory instead.
    pub fn body_len(&self) -> u64 {
        1 + match self {
            Message::Hello(h) => 6 + 2 + 2 + 1 + 8 + 4 + 4 + sized(h.runtime.len()),
            Message::Ready | Message::Stop | Message::Bye => 0,
            Message::StartFailed { message } => sized(message.len()),
            Message::Job { function, argument, .. } => {
                8 + 4 + sized(function.len()) + argument.encoded_len()
            }
            Message::Progress { .. } => 8 + 4,
            Message::Log { text, .. } => 8 + sized(text.len()),
            Message::Data { data, .. } => 8 + sized(data.len()),
            Message::Done { result, .. } => 8 + result.encoded_len(),
            Message::Failed { message, traceback, .. } => {
                8 + 1 + sized(message.len()) + sized(traceback.len())
            }
        }
    }

    /// Checks what the decoder would refuse but the types allow (a bad
    /// shared-memory name).
    pub(crate) fn check(&self) -> Result<(), WireError> {
        match self {
            Message::Job { argument: Payload::Shm { name, .. }, .. }
            | Message::Done { result: Payload::Shm { name, .. }, .. } => check_shm_name(name),
            _ => Ok(()),
        }
    }

    /// Appends the body (kind byte and fields). The caller has checked
    /// [`body_len`](Self::body_len) and [`check`](Self::check).
    pub(crate) fn put_body(&self, out: &mut Vec<u8>) {
        out.put_u8(self.kind().code());
        match self {
            Message::Hello(h) => {
                out.extend_from_slice(MAGIC);
                out.put_u16(h.major);
                out.put_u16(h.minor);
                out.put_u8(h.role as u8);
                out.put_u64(h.worker_id);
                out.put_u32(h.pid);
                out.put_u32(h.max_frame);
                out.put_str(&h.runtime);
            }
            Message::Ready | Message::Stop | Message::Bye => {}
            Message::StartFailed { message } => out.put_str(message),
            Message::Job { task, attempt, function, argument } => {
                out.put_u64(*task);
                out.put_u32(*attempt);
                out.put_str(function);
                argument.put(out);
            }
            Message::Progress { task, fraction } => {
                out.put_u64(*task);
                out.put_f32(*fraction);
            }
            Message::Log { task, text } => {
                out.put_u64(*task);
                out.put_str(text);
            }
            Message::Data { task, data } => {
                out.put_u64(*task);
                out.put_bytes(data);
            }
            Message::Done { task, result } => {
                out.put_u64(*task);
                result.put(out);
            }
            Message::Failed { task, kind, message, traceback } => {
                out.put_u64(*task);
                out.put_u8(*kind as u8);
                out.put_str(message);
                out.put_str(traceback);
            }
        }
    }
}

/// Decodes one frame body (the bytes after the 4-byte header). Every field
/// must be present and valid and nothing may follow the last one.
pub fn decode_body(body: &[u8]) -> Result<Message, WireError> {
    let Some((&code, rest)) = body.split_first() else {
        return Err(WireError::EmptyFrame);
    };
    let kind = Kind::from_u8(code).ok_or(WireError::UnknownKind(code))?;
    let mut f = Fields::new(rest);
    let message = match kind {
        Kind::Hello => Message::Hello(read_hello(&mut f)?),
        Kind::Ready => Message::Ready,
        Kind::StartFailed => Message::StartFailed { message: f.str("START_FAILED.message")? },
        Kind::Job => Message::Job {
            task: f.u64("JOB.task")?,
            attempt: f.u32("JOB.attempt")?,
            function: f.str("JOB.function")?,
            argument: Payload::read(&mut f, "JOB.argument tag", "JOB.argument")?,
        },
        Kind::Stop => Message::Stop,
        Kind::Progress => Message::Progress {
            task: f.u64("PROGRESS.task")?,
            fraction: f.f32("PROGRESS.fraction")?,
        },
        Kind::Log => Message::Log { task: f.u64("LOG.task")?, text: f.str("LOG.text")? },
        Kind::Data => {
            Message::Data { task: f.u64("DATA.task")?, data: f.bytes("DATA.data")?.to_vec() }
        }
        Kind::Done => Message::Done {
            task: f.u64("DONE.task")?,
            result: Payload::read(&mut f, "DONE.result tag", "DONE.result")?,
        },
        Kind::Failed => Message::Failed {
            task: f.u64("FAILED.task")?,
            kind: match f.u8("FAILED.kind")? {
                1 => FailureKind::Panic,
                2 => FailureKind::Serialization,
                other => return Err(WireError::UnknownFailureKind(other)),
            },
            message: f.str("FAILED.message")?,
            traceback: f.str("FAILED.traceback")?,
        },
        Kind::Bye => Message::Bye,
    };
    match f.left() {
        0 => Ok(message),
        count => Err(WireError::TrailingBytes { kind, count: count as u64 }),
    }
}

/// HELLO: magic and version first, so that a peer of another major version
/// is reported as [`WireError::VersionMismatch`] whatever follows.
fn read_hello(f: &mut Fields<'_>) -> Result<Hello, WireError> {
    let found = f.magic("HELLO.magic")?;
    if &found != MAGIC {
        return Err(WireError::BadMagic { found });
    }
    let major = f.u16("HELLO.major")?;
    let minor = f.u16("HELLO.minor")?;
    if major != VERSION_MAJOR {
        return Err(WireError::VersionMismatch {
            ours: (VERSION_MAJOR, VERSION_MINOR),
            theirs: (major, minor),
        });
    }
    let role = match f.u8("HELLO.role")? {
        0 => Role::Parent,
        1 => Role::Worker,
        other => return Err(WireError::UnknownRole(other)),
    };
    Ok(Hello {
        major,
        minor,
        role,
        worker_id: f.u64("HELLO.worker_id")?,
        pid: f.u32("HELLO.pid")?,
        max_frame: f.u32("HELLO.max_frame")?,
        runtime: f.str("HELLO.runtime")?,
    })
}
