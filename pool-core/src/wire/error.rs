//! [`WireError`]: everything that can go wrong on a connection.

use core::fmt;
use std::io;

use super::message::{Kind, Role};

/// A protocol or I/O error on a connection.
///
/// Every error is fatal for its connection: the side that sees it closes the
/// connection and never tries to resynchronise (README.md, "Error handling").
/// Decoding never panics and never allocates more than the frame's declared
/// length, whatever the input.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The stream ended cleanly between two frames (the peer closed it).
    Closed,
    /// The stream or the frame ended before `field` was complete: `needed`
    /// bytes were needed, only `available` were there.
    Truncated {
        /// What was being read (`"frame header"`, `"frame body"`,
        /// `"JOB.task"`, ...).
        field: &'static str,
        /// How many bytes the field needs.
        needed: u64,
        /// How many bytes were left.
        available: u64,
    },
    /// A frame header declared a body of `len` bytes, more than the limit
    /// `max` of this connection (checked before anything is allocated). Also
    /// returned by [`encode`](super::encode) for a message whose body does
    /// not fit in a `u32`.
    TooLarge {
        /// The declared (or needed) body length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A frame header declared a body of 0 bytes (a body holds at least the
    /// kind byte).
    EmptyFrame,
    /// The kind byte names no message of this protocol version.
    UnknownKind(u8),
    /// A length prefix inside a frame claims more bytes than the frame has
    /// left.
    BadLength {
        /// The field whose length is wrong.
        field: &'static str,
        /// The claimed length.
        len: u64,
        /// The bytes left in the frame after the length prefix.
        available: u64,
    },
    /// A `str` field is not valid UTF-8.
    BadUtf8 {
        /// The field.
        field: &'static str,
    },
    /// Bytes are left in the frame after its last field.
    TrailingBytes {
        /// The message kind.
        kind: Kind,
        /// How many bytes are left over.
        count: u64,
    },
    /// A payload tag is neither 0 (inline) nor 1 (shared memory).
    UnknownPayloadTag(u8),
    /// A shared-memory payload names a file that is not a valid segment
    /// name (README.md, "Payloads").
    BadShmName {
        /// Why the name was refused.
        reason: &'static str,
    },
    /// A FAILED message's error kind is neither 1 (panic) nor 2
    /// (serialization).
    UnknownFailureKind(u8),
    /// A HELLO's role is neither 0 (parent) nor 1 (worker).
    UnknownRole(u8),
    /// A HELLO does not start with `b"SHOAL\0"`.
    BadMagic {
        /// The six bytes found instead.
        found: [u8; 6],
    },
    /// The peer speaks another major version of the protocol.
    VersionMismatch {
        /// Our `(major, minor)`.
        ours: (u16, u16),
        /// The peer's `(major, minor)`.
        theirs: (u16, u16),
    },
    /// The peer's HELLO has the wrong role (a parent talking to a parent).
    WrongRole {
        /// The role we expected the peer to have.
        expected: Role,
        /// The role it announced.
        got: Role,
    },
    /// The peer's HELLO names another worker than this connection is for.
    WrongWorker {
        /// The worker id this side expected.
        expected: u64,
        /// The worker id the peer announced.
        got: u64,
    },
    /// The peer's HELLO announces a `max_frame` below
    /// [`MIN_MAX_FRAME`](super::MIN_MAX_FRAME).
    MaxFrameTooSmall {
        /// The announced limit.
        value: u32,
        /// The smallest limit a peer may announce.
        min: u32,
    },
    /// A valid message arrived where the protocol does not allow it.
    UnexpectedMessage {
        /// What was allowed (for example `"HELLO"`).
        expected: &'static str,
        /// The kind that arrived.
        got: Kind,
    },
    /// Reading or writing the underlying stream failed.
    Io {
        /// The I/O error's kind.
        kind: io::ErrorKind,
        /// Its message.
        message: String,
    },
}

impl WireError {
    /// Whether the peer simply closed the stream between two frames.
    pub fn is_closed(&self) -> bool {
        matches!(self, WireError::Closed)
    }
}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        WireError::Io { kind: e.kind(), message: e.to_string() }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Closed => f.write_str("the peer closed the connection"),
            WireError::Truncated { field, needed, available } => write!(
                f,
                "truncated frame: `{field}` needs {needed} bytes but only {available} are there"
            ),
            WireError::TooLarge { len, max } => {
                write!(f, "frame too large: body of {len} bytes, the limit is {max}")
            }
            WireError::EmptyFrame => f.write_str("empty frame: a body needs at least a kind byte"),
            WireError::UnknownKind(k) => write!(f, "unknown message kind 0x{k:02x}"),
            WireError::BadLength { field, len, available } => write!(
                f,
                "bad length: `{field}` claims {len} bytes but {available} are left in the frame"
            ),
            WireError::BadUtf8 { field } => write!(f, "`{field}` is not valid UTF-8"),
            WireError::TrailingBytes { kind, count } => {
                write!(f, "{count} trailing bytes after the last field of {kind}")
            }
            WireError::UnknownPayloadTag(t) => write!(f, "unknown payload tag {t}"),
            WireError::BadShmName { reason } => {
                write!(f, "bad shared-memory segment name: {reason}")
            }
            WireError::UnknownFailureKind(k) => write!(f, "unknown FAILED error kind {k}"),
            WireError::UnknownRole(r) => write!(f, "unknown HELLO role {r}"),
            WireError::BadMagic { found } => {
                write!(f, "bad magic: expected \"SHOAL\\0\", found \"{}\"", found.escape_ascii())
            }
            WireError::VersionMismatch { ours, theirs } => write!(
                f,
                "protocol version mismatch: we speak {}.{}, the peer speaks {}.{}",
                ours.0, ours.1, theirs.0, theirs.1
            ),
            WireError::WrongRole { expected, got } => {
                write!(f, "the peer says it is a {got}, expected a {expected}")
            }
            WireError::WrongWorker { expected, got } => {
                write!(f, "the peer says it is worker {got}, expected worker {expected}")
            }
            WireError::MaxFrameTooSmall { value, min } => {
                write!(f, "the peer's max_frame {value} is below the minimum {min}")
            }
            WireError::UnexpectedMessage { expected, got } => {
                write!(f, "unexpected message: expected {expected}, got {got}")
            }
            WireError::Io { kind, message } => write!(f, "I/O error ({kind:?}): {message}"),
        }
    }
}

impl std::error::Error for WireError {}
