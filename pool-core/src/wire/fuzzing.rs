//! Fuzz drivers and their seed corpus, shared by the cargo-fuzz targets in
//! `fuzz/` and by `tests/wire_corpus.rs`, which replays the committed
//! corpus on stable Rust. Not a public API.
//!
//! Each driver panics only when a property fails; a panic on any input is a
//! bug in the wire module.
//!
//! Input layout of [`fuzz_frame_decoder`]: byte 0 picks the frame limit
//! ([`max_frame_for`]), byte 1 seeds how the rest is split into `feed`
//! calls ([`Splits`]), the rest is the byte stream. Input layout of
//! [`fuzz_handshake`]: byte 0 is the expected worker id, the rest is the
//! byte stream.

use super::{
    DEFAULT_MAX_FRAME, FailureKind, FrameDecoder, HANDSHAKE_MAX_FRAME, HEADER_LEN, Handshake,
    Hello, MAGIC, MIN_MAX_FRAME, Message, Payload, PeerInfo, Role, VERSION_MAJOR, WireError,
    encode, read_message,
};

/// The frame limit a fuzz input's first byte selects: its low 4 bits, 0 for
/// [`DEFAULT_MAX_FRAME`], `k` for `2^(k+3)` bytes (16 B to 256 KiB).
pub fn max_frame_for(selector: u8) -> u32 {
    match selector & 0x0f {
        0 => DEFAULT_MAX_FRAME,
        k => 1 << (k + 3),
    }
}

/// Chunk sizes for `feed`, from a fuzz input's second byte: its low 4 bits
/// give the largest chunk, `2^k` bytes (0: one byte at a time); all 8 bits
/// seed a xorshift generator that picks each size in `1..=2^k`.
pub struct Splits {
    state: u32,
    max: u32,
}

impl Splits {
    /// The splits for this selector byte.
    pub fn new(selector: u8) -> Self {
        Splits {
            state: 0x9e37_79b9 ^ ((u32::from(selector) << 8) | 1),
            max: 1 << (selector & 0x0f),
        }
    }

    /// The next chunk size.
    pub fn next_len(&mut self) -> usize {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        (1 + self.state % self.max) as usize
    }
}

/// What decoding a stream gave: every message re-encoded, one after the
/// other, then how the stream ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    reencoded: Vec<u8>,
    messages: usize,
    end: Result<(), WireError>,
}

impl Outcome {
    fn new() -> Self {
        Outcome { reencoded: Vec::new(), messages: 0, end: Ok(()) }
    }

    fn push(&mut self, message: &Message) {
        // Whatever decodes must encode again (encode checks no less than
        // the decoder), to the very same bytes (the encoding is canonical).
        encode(message, &mut self.reencoded).expect("a decoded message re-encodes");
        self.messages += 1;
    }
}

/// Decodes `stream` with a [`FrameDecoder`], fed in chunks from `splits`
/// (`None`: all at once).
fn decode_fed(stream: &[u8], max_frame: u32, mut splits: Option<Splits>) -> Outcome {
    let mut decoder = FrameDecoder::new(max_frame);
    let mut outcome = Outcome::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let len = splits.as_mut().map_or(rest.len(), |s| s.next_len().min(rest.len()));
        let mut chunk = &rest[..len];
        rest = &rest[len..];
        loop {
            let used = decoder.feed(chunk);
            chunk = &chunk[used..];
            assert!(
                decoder.buffered() <= max_frame as usize + HEADER_LEN,
                "the decoder buffers {} bytes with max_frame {max_frame}",
                decoder.buffered()
            );
            match decoder.next_message() {
                Ok(Some(message)) => outcome.push(&message),
                Ok(None) if chunk.is_empty() => break,
                Ok(None) => assert!(used > 0, "feed took nothing and nothing came out"),
                Err(e) => {
                    outcome.end = Err(e);
                    return outcome;
                }
            }
        }
    }
    outcome.end = decoder.finish();
    outcome
}

/// Decodes `stream` with [`read_message`] until it fails; a clean
/// [`WireError::Closed`] counts as the end.
fn decode_read(stream: &[u8], max_frame: u32) -> Outcome {
    let mut reader = stream;
    let mut outcome = Outcome::new();
    loop {
        match read_message(&mut reader, max_frame) {
            Ok(message) => outcome.push(&message),
            Err(WireError::Closed) => return outcome,
            Err(e) => {
                outcome.end = Err(e);
                return outcome;
            }
        }
    }
}

/// The frame decoder's fuzz driver: decodes the stream three ways (fed in
/// the input's splits, fed whole, and through [`read_message`]) and checks
/// that no call panics, the decoder never buffers more than one frame, all
/// three agree on the messages and the error, and every decoded message
/// re-encodes to exactly the bytes it came from.
pub fn fuzz_frame_decoder(data: &[u8]) {
    let &[limit, split, ref stream @ ..] = data else { return };
    let max_frame = max_frame_for(limit);
    let split_fed = decode_fed(stream, max_frame, Some(Splits::new(split)));
    let whole_fed = decode_fed(stream, max_frame, None);
    let read = decode_read(stream, max_frame);
    assert_eq!(split_fed, whole_fed, "split feeding changed the result");
    assert_eq!(read, whole_fed, "read_message and FrameDecoder disagree");
    assert!(stream.starts_with(&whole_fed.reencoded), "re-encoding changed the bytes");
    if whole_fed.end.is_ok() {
        assert_eq!(whole_fed.reencoded.len(), stream.len(), "bytes left over without an error");
    }
}

/// What a handshake must answer to `message`, worked out independently of
/// [`Handshake::receive`].
fn expected_answer(ours: &Hello, message: &Message) -> Result<PeerInfo, WireError> {
    let Message::Hello(theirs) = message else {
        return Err(WireError::UnexpectedMessage { expected: "HELLO", got: message.kind() });
    };
    if theirs.major != VERSION_MAJOR {
        Err(WireError::VersionMismatch {
            ours: (ours.major, ours.minor),
            theirs: (theirs.major, theirs.minor),
        })
    } else if theirs.role == ours.role {
        Err(WireError::WrongRole { expected: ours.role.peer(), got: theirs.role })
    } else if theirs.worker_id != ours.worker_id {
        Err(WireError::WrongWorker { expected: ours.worker_id, got: theirs.worker_id })
    } else if theirs.max_frame < MIN_MAX_FRAME {
        Err(WireError::MaxFrameTooSmall { value: theirs.max_frame, min: MIN_MAX_FRAME })
    } else {
        Ok(PeerInfo {
            role: theirs.role,
            worker_id: theirs.worker_id,
            pid: theirs.pid,
            version: (theirs.major, theirs.minor),
            minor: theirs.minor.min(ours.minor),
            max_frame: theirs.max_frame,
            runtime: theirs.runtime.clone(),
        })
    }
}

fn check_side(handshake: Handshake, message: &Message) {
    let expected = expected_answer(handshake.ours(), message);
    assert_eq!(handshake.receive(message.clone()), expected);
}

/// The handshake's fuzz driver: decodes frames under the handshake limit
/// (then the default one, as a connection would after its first frame) and
/// hands each message to a fresh parent and a fresh worker handshake for
/// worker `data[0]`, checking each answer against the rules of the README.
/// It also runs one honest handshake over the wire, which must succeed.
pub fn fuzz_handshake(data: &[u8]) {
    let &[id, ref stream @ ..] = data else { return };
    let worker_id = u64::from(id);

    let parent = Handshake::parent(worker_id).pid(1);
    let worker = Handshake::worker(worker_id).pid(2);
    let over_the_wire = |m: &Message| {
        let mut frame = Vec::new();
        encode(m, &mut frame).expect("our HELLO encodes");
        read_message(&mut &frame[..], HANDSHAKE_MAX_FRAME).expect("our HELLO decodes")
    };
    let (to_worker, to_parent) = (over_the_wire(&parent.hello()), over_the_wire(&worker.hello()));
    assert_eq!(parent.receive(to_parent).expect("honest handshake").pid, 2);
    assert_eq!(worker.receive(to_worker).expect("honest handshake").pid, 1);

    let mut decoder = FrameDecoder::new(HANDSHAKE_MAX_FRAME);
    let mut rest = stream;
    loop {
        let used = decoder.feed(rest);
        rest = &rest[used..];
        match decoder.next_message() {
            Ok(Some(message)) => {
                decoder.set_max_frame(DEFAULT_MAX_FRAME);
                check_side(Handshake::parent(worker_id), &message);
                check_side(Handshake::worker(worker_id), &message);
            }
            Ok(None) if rest.is_empty() => return,
            Ok(None) => {}
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------------------
// The seed corpus. `tests/wire_corpus.rs` checks that the committed files
// `fuzz/corpus/<target>/seed-*` are exactly these, and rewrites them when
// run with SHOAL_BLESS=1.

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn frame_of(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode(message, &mut out).expect("seed messages encode");
    out
}

fn body_of(message: &Message) -> Vec<u8> {
    frame_of(message).split_off(HEADER_LEN)
}

fn hello(role: Role, worker_id: u64) -> Hello {
    Hello {
        major: 1,
        minor: 0,
        role,
        worker_id,
        pid: 4242,
        max_frame: DEFAULT_MAX_FRAME,
        runtime: "rust shoal-process 0.1.0".into(),
    }
}

/// One valid message of every kind (both HELLO roles, every payload tag,
/// both failure kinds), with a name for each.
pub fn valid_messages() -> Vec<(&'static str, Message)> {
    let shm = |n: &str| Payload::Shm { name: format!("shoal-4242-7-{n}"), len: 1 << 20 };
    vec![
        ("hello-parent", Message::Hello(hello(Role::Parent, 7))),
        ("hello-worker", Message::Hello(hello(Role::Worker, 7))),
        ("ready", Message::Ready),
        ("start-failed", Message::StartFailed { message: "worker_init: no GPU".into() }),
        (
            "job-inline",
            Message::Job {
                task: 1,
                attempt: 1,
                function: "square".into(),
                argument: Payload::Inline(vec![0x80, 0x04, 0x4b, 0x07, 0x2e]),
            },
        ),
        (
            "job-shm",
            Message::Job { task: 2, attempt: 3, function: "mod.fn".into(), argument: shm("1") },
        ),
        (
            "job-segment",
            Message::Job {
                task: 3,
                attempt: 1,
                function: "mod.fn".into(),
                argument: Payload::Segment { offset: 4096, len: 1 << 20 },
            },
        ),
        ("stop", Message::Stop),
        ("progress", Message::Progress { task: 1, fraction: 0.25 }),
        ("log", Message::Log { task: 1, text: "étape 1/4 ✓".into() }),
        ("data", Message::Data { task: 1, data: vec![0, 1, 2, 255] }),
        ("done-inline", Message::Done { task: 1, result: Payload::Inline(vec![49]) }),
        ("done-shm", Message::Done { task: 2, result: shm("2") }),
        (
            "done-segment",
            Message::Done { task: 3, result: Payload::Segment { offset: 0, len: 300 } },
        ),
        (
            "failed-panic",
            Message::Failed {
                task: 1,
                kind: FailureKind::Panic,
                message: "ZeroDivisionError: division by zero".into(),
                traceback: "Traceback (most recent call last):\n  File \"w.py\", line 3".into(),
            },
        ),
        (
            "failed-serialization",
            Message::Failed {
                task: 2,
                kind: FailureKind::Serialization,
                message: "cannot pickle '_thread.lock' object".into(),
                traceback: String::new(),
            },
        ),
        ("bye", Message::Bye),
    ]
}

/// The seeds of the `frame_decoder` target: `(file name, contents)`.
pub fn frame_decoder_seeds() -> Vec<(String, Vec<u8>)> {
    // Default limit; chunks of up to 2^15 bytes, or one byte at a time.
    const WHOLE: [u8; 2] = [0x00, 0x0f];
    const BYTEWISE: [u8; 2] = [0x00, 0x00];
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: &str, prefix: [u8; 2], stream: &[u8]| {
        let mut data = prefix.to_vec();
        data.extend_from_slice(stream);
        seeds.push((format!("seed-{name}"), data));
    };

    let valid = valid_messages();
    for (name, message) in &valid {
        add(&format!("valid-{name}"), WHOLE, &frame_of(message));
    }
    let all: Vec<u8> = valid.iter().flat_map(|(_, m)| frame_of(m)).collect();
    add("stream-all-kinds-bytewise", BYTEWISE, &all);
    add("stream-all-kinds-random-splits", [0x00, 0x35], &all);
    add("stream-all-kinds-16-byte-limit", [0x01, 0x03], &all);

    let job = frame_of(&valid[4].1);
    add("truncated-header", WHOLE, &job[..2]);
    add("truncated-body", BYTEWISE, &job[..job.len() / 2]);
    add("truncated-field-job-task", WHOLE, &frame(&[0x10, 1, 2]));
    add("truncated-field-hello-magic", WHOLE, &frame(&[0x01, b'S', b'H']));

    let mut lying_str = vec![0x21];
    lying_str.extend_from_slice(&1u64.to_le_bytes());
    lying_str.extend_from_slice(&0xffff_fff0u32.to_le_bytes());
    lying_str.extend_from_slice(b"hi");
    add("lying-length-log-text", WHOLE, &frame(&lying_str));
    let mut lying_bytes = vec![0x22];
    lying_bytes.extend_from_slice(&1u64.to_le_bytes());
    lying_bytes.extend_from_slice(&1000u32.to_le_bytes());
    lying_bytes.extend_from_slice(&[1, 2, 3]);
    add("lying-length-data", WHOLE, &frame(&lying_bytes));
    let mut lying_payload = vec![0x23];
    lying_payload.extend_from_slice(&1u64.to_le_bytes());
    lying_payload.push(0);
    lying_payload.extend_from_slice(&(60u32 << 20).to_le_bytes());
    lying_payload.push(9);
    add("lying-length-done-result", WHOLE, &frame(&lying_payload));

    add("oversized-header-max-u32", WHOLE, &[0xff, 0xff, 0xff, 0xff, 0x02]);
    add("oversized-header-60mib-then-eof", BYTEWISE, &[0x00, 0x00, 0xc0, 0x03, 0x21, 0x01]);
    let mut small_limit = frame_of(&Message::Log { task: 1, text: "x".repeat(100) });
    add("oversized-for-16-byte-limit", [0x01, 0x0f], &small_limit);
    small_limit.truncate(20);
    add("oversized-for-16-byte-limit-cut", [0x01, 0x00], &small_limit);
    add("empty-frame", WHOLE, &[0, 0, 0, 0, 0x02]);

    let mut bad_utf8 = body_of(&Message::Log { task: 1, text: "ab".into() });
    let n = bad_utf8.len();
    bad_utf8[n - 2..].copy_from_slice(&[0xc3, 0x28]);
    add("bad-utf8-log-text", WHOLE, &frame(&bad_utf8));
    let mut bad_fn = body_of(&Message::Job {
        task: 1,
        attempt: 1,
        function: "fn".into(),
        argument: Payload::Inline(vec![]),
    });
    bad_fn[1 + 8 + 4 + 4] = 0xff;
    add("bad-utf8-job-function", WHOLE, &frame(&bad_fn));
    let mut bad_runtime = body_of(&valid[1].1);
    let n = bad_runtime.len();
    bad_runtime[n - 1] = 0x80;
    add("bad-utf8-hello-runtime", WHOLE, &frame(&bad_runtime));

    for kind in [0x00, 0x04, 0x12, 0x25, 0x7f, 0xff] {
        add(&format!("unknown-kind-{kind:02x}"), WHOLE, &frame(&[kind, 1, 2, 3]));
    }
    let mut ready_then_unknown = frame_of(&Message::Ready);
    ready_then_unknown.extend(frame(&[0x31]));
    add("valid-then-unknown-kind", BYTEWISE, &ready_then_unknown);

    add("trailing-bytes-ready", WHOLE, &frame(&[0x02, 0x00]));
    let mut trailing = body_of(&valid[4].1);
    trailing.extend_from_slice(b"extra");
    add("trailing-bytes-job", WHOLE, &frame(&trailing));

    let mut bad_magic = body_of(&valid[0].1);
    bad_magic[1..7].copy_from_slice(b"SHOAL!");
    add("bad-magic", WHOLE, &frame(&bad_magic));
    let mut major2 = body_of(&valid[0].1);
    major2[7..9].copy_from_slice(&2u16.to_le_bytes());
    add("hello-major-2", WHOLE, &frame(&major2));
    let mut major2_short = vec![0x01];
    major2_short.extend_from_slice(MAGIC);
    major2_short.extend_from_slice(&[2, 0, 9, 0]);
    add("hello-major-2-new-layout", WHOLE, &frame(&major2_short));
    let mut role = body_of(&valid[0].1);
    role[11] = 2;
    add("hello-unknown-role", WHOLE, &frame(&role));

    let mut tag = body_of(&Message::Done { task: 1, result: Payload::Inline(vec![1]) });
    tag[9] = 3;
    add("unknown-payload-tag", WHOLE, &frame(&tag));
    for (name, shm) in [("traversal", "shoal-../../etc/passwd"), ("prefix", "psm_4242")] {
        let mut body = body_of(&Message::Done { task: 1, result: Payload::Inline(vec![]) });
        body.truncate(9);
        body.push(1);
        body.extend_from_slice(&(shm.len() as u32).to_le_bytes());
        body.extend_from_slice(shm.as_bytes());
        body.extend_from_slice(&10u64.to_le_bytes());
        add(&format!("bad-shm-name-{name}"), WHOLE, &frame(&body));
    }
    let failed = valid.iter().find(|(name, _)| *name == "failed-panic").expect("a FAILED");
    let mut failure = body_of(&failed.1);
    failure[9] = 3;
    add("unknown-failure-kind", WHOLE, &frame(&failure));
    add(
        "progress-nan",
        WHOLE,
        &frame_of(&Message::Progress { task: 1, fraction: f32::from_bits(0x7fc0_0001) }),
    );
    seeds
}

/// The seeds of the `handshake` target: `(file name, contents)`; worker id 7.
pub fn handshake_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: &str, stream: &[u8]| {
        let mut data = vec![7];
        data.extend_from_slice(stream);
        seeds.push((format!("seed-{name}"), data));
    };
    let with = |role: Role, edit: &dyn Fn(&mut Hello)| {
        let mut h = hello(role, 7);
        edit(&mut h);
        frame_of(&Message::Hello(h))
    };
    add("parent-hello", &with(Role::Parent, &|_| {}));
    add("worker-hello", &with(Role::Worker, &|_| {}));
    add("worker-hello-higher-minor", &with(Role::Worker, &|h| h.minor = 3));
    add("worker-hello-major-2", &with(Role::Worker, &|h| h.major = 2));
    add("worker-hello-wrong-id", &with(Role::Worker, &|h| h.worker_id = 8));
    add("worker-hello-tiny-max-frame", &with(Role::Worker, &|h| h.max_frame = 16));
    add("worker-hello-empty-runtime", &with(Role::Worker, &|h| h.runtime.clear()));
    add("worker-hello-oversized", &with(Role::Worker, &|h| h.runtime = "r".repeat(5000)));
    let w = with(Role::Worker, &|_| {});
    add("worker-hello-truncated", &w[..w.len() - 3]);
    let mut bad_magic = w.clone();
    bad_magic[5] = b'X';
    add("worker-hello-bad-magic", &bad_magic);
    add("ready-first", &frame_of(&Message::Ready));
    add(
        "job-first",
        &frame_of(&Message::Job {
            task: 1,
            attempt: 1,
            function: "f".into(),
            argument: Payload::Inline(vec![1]),
        }),
    );
    let mut then_ready = w.clone();
    then_ready.extend(frame_of(&Message::Ready));
    add("worker-hello-then-ready", &then_ready);
    let mut both = with(Role::Parent, &|_| {});
    both.extend_from_slice(&w);
    add("both-hellos", &both);
    add("http-request", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    seeds
}
