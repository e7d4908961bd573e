//! The wire protocol between a pool and its out-of-process workers (child
//! processes now; Python workers and remote TCP workers later).
//!
//! The protocol itself, language-neutral (a Python worker implements it with
//! the `struct` module), is specified in `README.md` in this folder: frames,
//! field encodings, every message kind, the handshake, the connection
//! states, limits, error handling and versioning. Read it first.
//!
//! This module is sans-IO, in the style of rustls and quinn-proto: it turns
//! messages into bytes and bytes into messages and checks the handshake, but
//! owns no socket and starts no thread. It builds for
//! `wasm32-unknown-unknown`; its only I/O is through the
//! `std::io::{Read, Write}` traits of the blocking helpers.
//!
//! * [`Message`], [`Payload`], [`Hello`]: typed, owning messages.
//! * [`encode`] one whole frame; [`decode_body`] one frame body.
//! * [`FrameDecoder`]: streaming decoder, fed bytes in pieces of any size.
//! * [`read_message`] / [`write_message`]: blocking, one message per call.
//! * [`Handshake`]: the HELLO to send and the check of the peer's.
//! * [`WireError`]: what went wrong; every error ends the connection.
//!
//! ```
//! use shoal_core::wire::{self, Message, Payload};
//!
//! let job = Message::Job {
//!     task: 42,
//!     attempt: 1,
//!     function: "square".into(),
//!     argument: Payload::Inline(vec![7]),
//! };
//! let mut pipe = Vec::new();
//! wire::write_message(&mut pipe, &job).unwrap();
//! let back = wire::read_message(&mut &pipe[..], wire::DEFAULT_MAX_FRAME).unwrap();
//! assert_eq!(back, job);
//! ```

mod codec;
mod error;
mod frame;
mod handshake;
mod io;
mod message;

#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod tests;

pub use error::WireError;
pub use frame::{FrameDecoder, encode};
pub use handshake::{Handshake, MAX_RUNTIME, PeerInfo};
pub use io::{READ_STEP, read_message, write_message};
pub use message::{
    Direction, FailureKind, Hello, Kind, MAX_SHM_NAME, Message, Payload, Role, SHM_PREFIX,
    check_shm_name, decode_body,
};

/// The first six bytes of every HELLO after its kind byte.
pub const MAGIC: &[u8; 6] = b"SHOAL\0";

/// The protocol's major version: peers of different majors cannot talk.
pub const VERSION_MAJOR: u16 = 1;

/// The protocol's minor version implemented here (1: payload tag 2,
/// segments).
pub const VERSION_MINOR: u16 = 1;

/// The first minor version with segment payloads ([`Payload::Segment`]).
pub const SEGMENT_MINOR: u16 = 1;

/// The length of a frame header (`u32` LE body length).
pub const HEADER_LEN: usize = 4;

/// The default limit on a frame body: 64 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 64 * 1024 * 1024;

/// The smallest `max_frame` a side may announce in its HELLO.
pub const MIN_MAX_FRAME: u32 = 4096;

/// The limit to read the first frame (the peer's HELLO) with, before the
/// peer is known.
pub const HANDSHAKE_MAX_FRAME: u32 = 4096;
