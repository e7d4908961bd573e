//! Whole-protocol tests: every kind round-trips, every decoding error is
//! reachable, and the README's test vectors are what the code produces.

use super::fuzzing::{self, valid_messages};
use super::*;

fn frame_of(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode(message, &mut out).unwrap();
    out
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn decode_frame(bytes: &[u8]) -> Result<Message, WireError> {
    read_message(&mut &bytes[..], DEFAULT_MAX_FRAME)
}

#[test]
fn every_kind_round_trips() {
    let valid = valid_messages();
    let mut kinds: Vec<Kind> = valid.iter().map(|(_, m)| m.kind()).collect();
    kinds.dedup();
    assert_eq!(kinds, Kind::ALL, "one sample of every kind, in code order");
    for (name, message) in valid {
        let bytes = frame_of(&message);
        assert_eq!(bytes.len() as u64, HEADER_LEN as u64 + message.body_len(), "{name}");
        assert_eq!(bytes[4], message.kind().code(), "{name}");
        assert_eq!(decode_body(&bytes[4..]), Ok(message.clone()), "{name}");
        assert_eq!(decode_frame(&bytes), Ok(message), "{name}");
    }
}

#[test]
fn kinds_have_codes_names_and_directions() {
    for kind in Kind::ALL {
        assert_eq!(Kind::from_u8(kind.code()), Some(kind));
    }
    assert_eq!(Kind::from_u8(0x7f), None);
    assert_eq!(Kind::Failed.to_string(), "FAILED");
    assert_eq!(Kind::Hello.direction(), Direction::Both);
    assert_eq!(Kind::Job.direction(), Direction::ParentToWorker);
    assert_eq!(Kind::Done.direction(), Direction::WorkerToParent);
}

#[test]
fn extremes_round_trip() {
    for message in [
        Message::Progress { task: u64::MAX, fraction: f32::NAN },
        Message::Log { task: 0, text: String::new() },
        Message::Data { task: 1, data: Vec::new() },
        Message::Done { task: 2, result: Payload::Inline(Vec::new()) },
        Message::Job {
            task: u64::MAX,
            attempt: u32::MAX,
            function: String::new(),
            argument: Payload::Shm { name: format!("shoal-{}", "x".repeat(249)), len: u64::MAX },
        },
    ] {
        let bytes = frame_of(&message);
        let back = decode_frame(&bytes).unwrap();
        assert_eq!(frame_of(&back), bytes, "{message:?}");
    }
}

/// Every decoding error variant, from a frame that triggers it.
#[test]
fn every_decoding_error_is_reported() {
    let hello_body = frame_of(&valid_messages()[0].1).split_off(4);
    let with = |at: usize, bytes: &[u8]| {
        let mut b = hello_body.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        frame(&b)
    };
    let cases: Vec<(Vec<u8>, WireError)> = vec![
        (vec![], WireError::Closed),
        (vec![1, 0], WireError::Truncated { field: "frame header", needed: 4, available: 2 }),
        (
            vec![9, 0, 0, 0, 0x21],
            WireError::Truncated { field: "frame body", needed: 9, available: 1 },
        ),
        (frame(&[0x21, 1, 2]), WireError::Truncated { field: "LOG.task", needed: 8, available: 2 }),
        (vec![0, 0, 0, 0], WireError::EmptyFrame),
        (
            vec![0xff, 0xff, 0xff, 0xff],
            WireError::TooLarge { len: u64::from(u32::MAX), max: u64::from(DEFAULT_MAX_FRAME) },
        ),
        (frame(&[0x7f]), WireError::UnknownKind(0x7f)),
        (
            frame(&[0x03, 5, 0, 0, 0, b'a']),
            WireError::BadLength { field: "START_FAILED.message", len: 5, available: 1 },
        ),
        (frame(&[0x03, 1, 0, 0, 0, 0xff]), WireError::BadUtf8 { field: "START_FAILED.message" }),
        (frame(&[0x11, 0]), WireError::TrailingBytes { kind: Kind::Stop, count: 1 }),
        (frame(&[0x23, 1, 0, 0, 0, 0, 0, 0, 0, 9]), WireError::UnknownPayloadTag(9)),
        (
            frame(&[0x23, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, b'x', 0, 0, 0, 0, 0, 0, 0, 0]),
            WireError::BadShmName { reason: "does not start with `shoal-`" },
        ),
        (
            frame(&[0x24, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            WireError::UnknownFailureKind(0),
        ),
        (with(11, &[5]), WireError::UnknownRole(5)),
        (with(1, b"SHOAL1"), WireError::BadMagic { found: *b"SHOAL1" }),
        (
            with(7, &[3, 0, 4, 0]),
            WireError::VersionMismatch { ours: (1, VERSION_MINOR), theirs: (3, 4) },
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(decode_frame(&bytes), Err(expected.clone()), "{bytes:02x?}");
        // The streaming decoder agrees, fed one byte at a time.
        let mut decoder = FrameDecoder::default();
        let mut got = Ok(None);
        for b in &bytes {
            decoder.feed(std::slice::from_ref(b));
            got = decoder.next_message();
            if got.is_err() {
                break;
            }
        }
        let got = match got {
            Ok(None) => decoder.finish().map(|()| None),
            other => other,
        };
        let expected = if expected == WireError::Closed { Ok(None) } else { Err(expected) };
        assert_eq!(got, expected, "{bytes:02x?}");
    }
}

#[test]
fn shm_names_are_single_shoal_file_names() {
    assert_eq!(check_shm_name("shoal-123-4-5.bin"), Ok(()));
    for bad in ["", "psm_1", "shoal-a/b", "shoal-..\\x", "shoal-\0", "shoal-é"] {
        assert!(check_shm_name(bad).is_err(), "{bad:?}");
    }
    assert!(check_shm_name(&format!("shoal-{}", "x".repeat(250))).is_err());
}

#[test]
#[cfg(target_pointer_width = "64")]
fn encode_refuses_a_body_over_4_gib() {
    // vec![0; n] maps zeroed pages lazily: the 4 GiB are never touched,
    // since encode checks body_len before it writes anything.
    let data = vec![0u8; 1 << 32];
    let message = Message::Data { task: 1, data };
    let mut out = vec![0xaa];
    assert_eq!(
        encode(&message, &mut out),
        Err(WireError::TooLarge { len: 1 + 8 + 4 + (1 << 32), max: u64::from(u32::MAX) })
    );
    assert_eq!(out, [0xaa], "out is left as it was");
    let bad_name = Message::Done { task: 1, result: Payload::Shm { name: "../x".into(), len: 1 } };
    assert!(matches!(encode(&bad_name, &mut out), Err(WireError::BadShmName { .. })));
    assert_eq!(out, [0xaa]);
}

#[test]
fn errors_display_what_happened() {
    let e = WireError::BadLength { field: "LOG.text", len: 100, available: 3 };
    assert_eq!(
        e.to_string(),
        "bad length: `LOG.text` claims 100 bytes but 3 are left in the frame"
    );
    let e = WireError::TooLarge { len: 60 << 20, max: 4096 };
    assert_eq!(e.to_string(), "frame too large: body of 62914560 bytes, the limit is 4096");
    let e = WireError::BadMagic { found: *b"GET / " };
    assert_eq!(e.to_string(), "bad magic: expected \"SHOAL\\0\", found \"GET / \"");
    let e: Box<dyn std::error::Error> = Box::new(WireError::UnknownKind(0x7f));
    assert_eq!(e.to_string(), "unknown message kind 0x7f");
}

/// The README's test vectors, as `(name, message)`.
fn readme_vectors() -> Vec<(&'static str, Message)> {
    vec![
        ("READY", Message::Ready),
        ("STOP", Message::Stop),
        ("BYE", Message::Bye),
        (
            "HELLO",
            Message::Hello(Hello {
                major: 1,
                minor: 0,
                role: Role::Worker,
                worker_id: 7,
                pid: 4242,
                max_frame: DEFAULT_MAX_FRAME,
                runtime: "py".into(),
            }),
        ),
        (
            "JOB",
            Message::Job {
                task: 1,
                attempt: 1,
                function: "sq".into(),
                argument: Payload::Inline(vec![0x07]),
            },
        ),
        ("PROGRESS", Message::Progress { task: 1, fraction: 0.5 }),
        ("LOG", Message::Log { task: 1, text: "hi".into() }),
        (
            "DONE",
            Message::Done { task: 1, result: Payload::Shm { name: "shoal-1".into(), len: 16 } },
        ),
        ("DONE-SEG", Message::Done { task: 1, result: Payload::Segment { offset: 4096, len: 10 } }),
        (
            "FAILED",
            Message::Failed {
                task: 1,
                kind: FailureKind::Panic,
                message: "boom".into(),
                traceback: String::new(),
            },
        ),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn readme_test_vectors_match_the_code() {
    let readme = include_str!("README.md");
    let section = readme.split("## Test vectors").nth(1).expect("a Test vectors section");
    let block = section.split("```").nth(1).expect("a fenced block");
    let lines: Vec<(&str, String)> = block
        .lines()
        .skip(1) // the fence's info string
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap();
            (name, words.collect::<String>())
        })
        .collect();
    let vectors = readme_vectors();
    for (name, message) in &vectors {
        let bytes = frame_of(message);
        let printed = lines.iter().find(|(n, _)| n == name).map(|(_, h)| h.as_str());
        assert_eq!(printed, Some(hex(&bytes).as_str()), "README vector {name}");
        assert_eq!(&decode_frame(&bytes).unwrap(), message);
    }
    assert_eq!(lines.len(), vectors.len(), "every README vector is checked");
}

#[test]
fn the_fuzz_drivers_accept_their_seeds() {
    for (_, seed) in fuzzing::frame_decoder_seeds() {
        fuzzing::fuzz_frame_decoder(&seed);
    }
    for (_, seed) in fuzzing::handshake_seeds() {
        fuzzing::fuzz_handshake(&seed);
    }
    fuzzing::fuzz_frame_decoder(&[]);
    fuzzing::fuzz_handshake(&[]);
}

/// Each frame-decoder seed ends the way its name says, so the corpus really
/// starts the fuzzer at each error path.
#[test]
fn each_seed_hits_the_error_it_is_named_after() {
    let expect = |name: &str| -> &str {
        let checks: &[(&str, &str)] = &[
            ("seed-valid-then-unknown-kind", "UnknownKind"),
            ("seed-valid-", "ok"),
            ("seed-stream-all-kinds-16-byte-limit", "TooLarge"),
            ("seed-stream-", "ok"),
            ("seed-truncated-field", "Truncated"),
            ("seed-truncated-", "Truncated"),
            ("seed-lying-length", "BadLength"),
            ("seed-oversized-header-60mib", "Truncated"),
            ("seed-oversized-", "TooLarge"),
            ("seed-empty-frame", "EmptyFrame"),
            ("seed-bad-utf8", "BadUtf8"),
            ("seed-unknown-kind", "UnknownKind"),
            ("seed-trailing-bytes", "TrailingBytes"),
            ("seed-bad-magic", "BadMagic"),
            ("seed-hello-major-2", "VersionMismatch"),
            ("seed-hello-unknown-role", "UnknownRole"),
            ("seed-unknown-payload-tag", "UnknownPayloadTag"),
            ("seed-bad-shm-name", "BadShmName"),
            ("seed-unknown-failure-kind", "UnknownFailureKind"),
            ("seed-progress-nan", "ok"),
        ];
        checks.iter().find(|(prefix, _)| name.starts_with(prefix)).map_or("?", |c| c.1)
    };
    for (name, data) in fuzzing::frame_decoder_seeds() {
        let max_frame = fuzzing::max_frame_for(data[0]);
        let mut reader = &data[2..];
        let end = loop {
            match read_message(&mut reader, max_frame) {
                Ok(_) => {}
                Err(WireError::Closed) => break "ok".to_owned(),
                Err(e) => break format!("{e:?}"),
            }
        };
        assert!(end.starts_with(expect(&name)), "{name} ended with {end}");
    }
}
