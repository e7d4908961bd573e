//! The handshake (README.md, "Handshake"): each side sends one HELLO, reads
//! the peer's, and checks magic, version, role, worker id and limits.

#[cfg(doc)]
use super::HANDSHAKE_MAX_FRAME;
use super::error::WireError;
use super::message::{Hello, Message, Role};
use super::{DEFAULT_MAX_FRAME, MIN_MAX_FRAME, VERSION_MAJOR, VERSION_MINOR};

/// The longest `runtime` text [`Handshake::runtime`] sends.
pub const MAX_RUNTIME: usize = 256;

/// What the peer told us in its HELLO, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's role (always the opposite of ours).
    pub role: Role,
    /// The worker this connection is for.
    pub worker_id: u64,
    /// The peer's process id (0 where there is none).
    pub pid: u32,
    /// The peer's protocol version `(major, minor)`.
    pub version: (u16, u16),
    /// The minor version both sides speak: `min(ours, theirs)`. A message
    /// kind introduced in minor `m` may be sent only if this is `>= m`.
    pub minor: u16,
    /// The largest frame body the peer accepts: never send a bigger one.
    pub max_frame: u32,
    /// The peer's implementation, as it describes itself.
    pub runtime: String,
}

/// One side's handshake: the HELLO to send, then the check of the peer's.
///
/// Both sides send their HELLO first, without waiting for the peer's, so
/// each side sees a version mismatch itself. The first frame should be
/// read with a limit of [`HANDSHAKE_MAX_FRAME`](super::HANDSHAKE_MAX_FRAME).
///
/// ```
/// use shoal_core::wire::{Handshake, Role};
///
/// let parent = Handshake::parent(7).pid(100);
/// let worker = Handshake::worker(7).pid(200).runtime("python shoal 0.1.0");
/// let (to_worker, to_parent) = (parent.hello(), worker.hello());
/// let peer = parent.receive(to_parent).unwrap();
/// assert_eq!((peer.role, peer.pid, peer.runtime.as_str()), (Role::Worker, 200, "python shoal 0.1.0"));
/// assert_eq!(worker.receive(to_worker).unwrap().pid, 100);
/// ```
#[derive(Clone, Debug)]
pub struct Handshake {
    ours: Hello,
}

impl Handshake {
    /// The parent's side of the connection to worker `worker_id`.
    pub fn parent(worker_id: u64) -> Self {
        Handshake::new(Role::Parent, worker_id)
    }

    /// The side of worker `worker_id` (the id the parent gave it, for
    /// example through its command line or environment).
    pub fn worker(worker_id: u64) -> Self {
        Handshake::new(Role::Worker, worker_id)
    }

    fn new(role: Role, worker_id: u64) -> Self {
        Handshake {
            ours: Hello {
                major: VERSION_MAJOR,
                minor: VERSION_MINOR,
                role,
                worker_id,
                pid: 0,
                max_frame: DEFAULT_MAX_FRAME,
                runtime: concat!("rust shoal-core ", env!("CARGO_PKG_VERSION")).to_owned(),
            },
        }
    }

    /// Our process id, sent in the HELLO (default 0: this crate does no I/O,
    /// so it does not look it up).
    pub fn pid(mut self, pid: u32) -> Self {
        self.ours.pid = pid;
        self
    }

    /// The largest frame body we accept (default [`DEFAULT_MAX_FRAME`]);
    /// values below [`MIN_MAX_FRAME`] are raised to it.
    pub fn max_frame(mut self, max_frame: u32) -> Self {
        self.ours.max_frame = max_frame.max(MIN_MAX_FRAME);
        self
    }

    /// How we describe our implementation (default
    /// `"rust shoal-core <version>"`), cut to at most [`MAX_RUNTIME`] bytes
    /// so that the HELLO always fits [`HANDSHAKE_MAX_FRAME`].
    pub fn runtime(mut self, runtime: impl Into<String>) -> Self {
        let mut runtime = runtime.into();
        let mut end = runtime.len().min(MAX_RUNTIME);
        while !runtime.is_char_boundary(end) {
            end -= 1;
        }
        runtime.truncate(end);
        self.ours.runtime = runtime;
        self
    }

    /// Our HELLO, as it will be sent.
    pub fn ours(&self) -> &Hello {
        &self.ours
    }

    /// The message to send first.
    pub fn hello(&self) -> Message {
        Message::Hello(self.ours.clone())
    }

    /// Checks the peer's first message: it must be a HELLO of our major
    /// version, from the other role, for the same worker, accepting frames of
    /// at least [`MIN_MAX_FRAME`] bytes. A higher minor is accepted; the
    /// connection then speaks the lower of the two.
    pub fn receive(self, message: Message) -> Result<PeerInfo, WireError> {
        let theirs = match message {
            Message::Hello(hello) => hello,
            other => {
                return Err(WireError::UnexpectedMessage { expected: "HELLO", got: other.kind() });
            }
        };
        if theirs.major != self.ours.major {
            return Err(WireError::VersionMismatch {
                ours: (self.ours.major, self.ours.minor),
                theirs: (theirs.major, theirs.minor),
            });
        }
        let expected = self.ours.role.peer();
        if theirs.role != expected {
            return Err(WireError::WrongRole { expected, got: theirs.role });
        }
        if theirs.worker_id != self.ours.worker_id {
            return Err(WireError::WrongWorker {
                expected: self.ours.worker_id,
                got: theirs.worker_id,
            });
        }
        if theirs.max_frame < MIN_MAX_FRAME {
            return Err(WireError::MaxFrameTooSmall {
                value: theirs.max_frame,
                min: MIN_MAX_FRAME,
            });
        }
        Ok(PeerInfo {
            role: theirs.role,
            worker_id: theirs.worker_id,
            pid: theirs.pid,
            version: (theirs.major, theirs.minor),
            minor: theirs.minor.min(self.ours.minor),
            max_frame: theirs.max_frame,
            runtime: theirs.runtime,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{FrameDecoder, HANDSHAKE_MAX_FRAME, Kind, encode};

    fn hello(role: Role, worker_id: u64) -> Hello {
        match Handshake::new(role, worker_id).hello() {
            Message::Hello(h) => h,
            _ => unreachable!(),
        }
    }

    #[test]
    fn both_sides_agree_over_the_wire() {
        let parent = Handshake::parent(3).pid(10).max_frame(1 << 20);
        let worker = Handshake::worker(3).pid(11).runtime("python shoal 0.1.0 cpython 3.11");
        let mut stream = Vec::new();
        encode(&worker.hello(), &mut stream).unwrap();
        let mut d = FrameDecoder::new(HANDSHAKE_MAX_FRAME);
        assert_eq!(d.feed(&stream), stream.len());
        let peer = parent.clone().receive(d.next_message().unwrap().unwrap()).unwrap();
        assert_eq!(
            peer,
            PeerInfo {
                role: Role::Worker,
                worker_id: 3,
                pid: 11,
                version: (1, VERSION_MINOR),
                minor: VERSION_MINOR,
                max_frame: DEFAULT_MAX_FRAME,
                runtime: "python shoal 0.1.0 cpython 3.11".into(),
            }
        );
        let peer = worker.receive(parent.hello()).unwrap();
        assert_eq!((peer.role, peer.pid, peer.max_frame), (Role::Parent, 10, 1 << 20));
    }

    #[test]
    fn a_higher_minor_is_accepted_and_the_lower_one_spoken() {
        let mut theirs = hello(Role::Worker, 1);
        theirs.minor = 7;
        let peer = Handshake::parent(1).receive(Message::Hello(theirs)).unwrap();
        assert_eq!((peer.version, peer.minor), ((1, 7), VERSION_MINOR));
    }

    #[test]
    fn a_lower_minor_is_the_one_spoken() {
        let mut theirs = hello(Role::Worker, 1);
        theirs.minor = 0;
        let peer = Handshake::parent(1).receive(Message::Hello(theirs)).unwrap();
        assert_eq!((peer.version, peer.minor), ((1, 0), 0));
    }

    #[test]
    fn another_major_is_a_version_mismatch_naming_both() {
        let mut theirs = hello(Role::Worker, 1);
        (theirs.major, theirs.minor) = (2, 3);
        let e = Handshake::parent(1).receive(Message::Hello(theirs)).unwrap_err();
        assert_eq!(e, WireError::VersionMismatch { ours: (1, 1), theirs: (2, 3) });
        assert_eq!(e.to_string(), "protocol version mismatch: we speak 1.1, the peer speaks 2.3");
    }

    #[test]
    fn the_same_role_on_both_ends_is_refused() {
        let e = Handshake::parent(1).receive(Message::Hello(hello(Role::Parent, 1))).unwrap_err();
        assert_eq!(e, WireError::WrongRole { expected: Role::Worker, got: Role::Parent });
        let e = Handshake::worker(1).receive(Message::Hello(hello(Role::Worker, 1))).unwrap_err();
        assert_eq!(e, WireError::WrongRole { expected: Role::Parent, got: Role::Worker });
    }

    #[test]
    fn another_worker_id_is_refused() {
        let e = Handshake::parent(1).receive(Message::Hello(hello(Role::Worker, 2))).unwrap_err();
        assert_eq!(e, WireError::WrongWorker { expected: 1, got: 2 });
    }

    #[test]
    fn a_tiny_max_frame_is_refused_and_ours_is_raised() {
        let mut theirs = hello(Role::Worker, 1);
        theirs.max_frame = 100;
        let e = Handshake::parent(1).receive(Message::Hello(theirs)).unwrap_err();
        assert_eq!(e, WireError::MaxFrameTooSmall { value: 100, min: MIN_MAX_FRAME });
        assert_eq!(Handshake::parent(1).max_frame(10).ours().max_frame, MIN_MAX_FRAME);
    }

    #[test]
    fn anything_but_hello_first_is_unexpected() {
        let e = Handshake::parent(1)
            .receive(Message::Done { task: 1, result: crate::wire::Payload::Inline(vec![]) })
            .unwrap_err();
        assert_eq!(e, WireError::UnexpectedMessage { expected: "HELLO", got: Kind::Done });
        assert_eq!(e.to_string(), "unexpected message: expected HELLO, got DONE");
    }

    #[test]
    fn our_hello_fits_the_handshake_limit() {
        let h = Handshake::worker(u64::MAX).runtime("é".repeat(1000));
        assert_eq!(h.ours().runtime.len(), MAX_RUNTIME);
        assert!(h.hello().body_len() <= u64::from(HANDSHAKE_MAX_FRAME));
        let h = Handshake::worker(1).runtime(format!("x{}", "é".repeat(200)));
        assert_eq!(h.ours().runtime.len(), MAX_RUNTIME - 1, "cut at a char boundary");
    }
}
