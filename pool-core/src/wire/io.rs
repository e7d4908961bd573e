//! Blocking helpers over `std::io::{Read, Write}`: one message per call.

use std::io::{ErrorKind, Read, Write};

use super::HEADER_LEN;
use super::error::WireError;
use super::frame::{check_header, encode, grow};
use super::message::{Message, decode_body};

/// The most bytes [`read_message`] asks a reader for at once, and so the
/// most it allocates ahead of bytes that actually arrived.
pub const READ_STEP: usize = 64 * 1024;

/// Reads one whole message.
///
/// Reads the 4-byte header, checks the length against `max_frame` (before
/// allocating anything), then reads the body in steps of at most
/// [`READ_STEP`] bytes, growing the buffer only as bytes arrive: a peer that
/// claims 60 MiB and sends 10 bytes costs one step of memory, not 60 MiB.
///
/// End of stream before the first header byte is [`WireError::Closed`];
/// anywhere else it is [`WireError::Truncated`]. `Interrupted` reads are
/// retried; other I/O errors are returned as [`WireError::Io`].
pub fn read_message<R: Read + ?Sized>(
    reader: &mut R,
    max_frame: u32,
) -> Result<Message, WireError> {
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(reader, &mut header)?;
    if got == 0 {
        return Err(WireError::Closed);
    }
    if got < HEADER_LEN {
        return Err(WireError::Truncated {
            field: "frame header",
            needed: HEADER_LEN as u64,
            available: got as u64,
        });
    }
    let body_len = check_header(header, max_frame)?;
    let mut body = Vec::new();
    read_body(reader, body_len, &mut body)?;
    decode_body(&body)
}

/// Reads exactly `len` body bytes into `body` in bounded steps; its capacity
/// never exceeds `len` nor about twice the bytes received plus one step.
fn read_body<R: Read + ?Sized>(
    reader: &mut R,
    len: usize,
    body: &mut Vec<u8>,
) -> Result<(), WireError> {
    while body.len() < len {
        let step = (len - body.len()).min(READ_STEP);
        grow(body, step, len);
        let start = body.len();
        body.resize(start + step, 0);
        let got = read_full(reader, &mut body[start..])?;
        body.truncate(start + got);
        if got < step {
            return Err(WireError::Truncated {
                field: "frame body",
                needed: len as u64,
                available: body.len() as u64,
            });
        }
    }
    Ok(())
}

/// Fills `buf` unless the stream ends first; returns how many bytes it read.
fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> Result<usize, WireError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n.min(buf.len() - filled),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(filled)
}

/// Encodes one message and writes the whole frame with one `write_all`. It
/// does not flush. Errors are those of [`encode`] and the writer's.
pub fn write_message<W: Write + ?Sized>(
    writer: &mut W,
    message: &Message,
) -> Result<(), WireError> {
    let mut frame = Vec::new();
    encode(message, &mut frame)?;
    writer.write_all(&frame)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{DEFAULT_MAX_FRAME, Payload};
    use std::io;

    /// A reader that serves `data`, counts what it served and records the
    /// largest buffer it was handed.
    struct Counting<'a> {
        data: &'a [u8],
        served: usize,
        largest_request: usize,
        interrupt_first: bool,
    }

    impl<'a> Counting<'a> {
        fn new(data: &'a [u8]) -> Self {
            Counting { data, served: 0, largest_request: 0, interrupt_first: false }
        }
    }

    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.interrupt_first {
                self.interrupt_first = false;
                return Err(io::Error::from(ErrorKind::Interrupted));
            }
            self.largest_request = self.largest_request.max(buf.len());
            // Serve at most 3 bytes per call, like a slow pipe.
            let n = buf.len().min(self.data.len()).min(3);
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.served += n;
            Ok(n)
        }
    }

    #[test]
    fn read_and_write_round_trip_over_a_slow_reader() {
        let messages = [
            Message::Ready,
            Message::Job {
                task: 9,
                attempt: 2,
                function: "f".into(),
                argument: Payload::Inline(vec![5; 1000]),
            },
            Message::Bye,
        ];
        let mut stream = Vec::new();
        for m in &messages {
            write_message(&mut stream, m).unwrap();
        }
        let mut r = Counting::new(&stream);
        r.interrupt_first = true;
        for m in &messages {
            assert_eq!(&read_message(&mut r, DEFAULT_MAX_FRAME).unwrap(), m);
        }
        assert_eq!(read_message(&mut r, DEFAULT_MAX_FRAME), Err(WireError::Closed));
    }

    #[test]
    fn a_60_mib_claim_then_eof_reads_little_and_allocates_little() {
        let mut data = (60u32 << 20).to_le_bytes().to_vec();
        data.extend_from_slice(b"0123456789");
        let mut r = Counting::new(&data);
        assert_eq!(
            read_message(&mut r, DEFAULT_MAX_FRAME),
            Err(WireError::Truncated { field: "frame body", needed: 60 << 20, available: 10 })
        );
        assert_eq!(r.served, 14);
        assert!(r.largest_request <= READ_STEP, "asked for {} bytes", r.largest_request);

        // The buffer itself: capacity bounded by one step, not the claim.
        let mut body = Vec::new();
        let mut r = Counting::new(b"0123456789");
        assert!(read_body(&mut r, 60 << 20, &mut body).is_err());
        assert_eq!(body.len(), 10);
        assert!(body.capacity() <= READ_STEP, "capacity {}", body.capacity());
    }

    #[test]
    fn body_capacity_grows_with_the_bytes_that_arrive() {
        let len = 1 << 20;
        let data = vec![1u8; len / 2];
        let mut body = Vec::new();
        assert!(read_body(&mut &data[..], len, &mut body).is_err());
        assert_eq!(body.len(), len / 2);
        assert!(body.capacity() <= 2 * (len / 2) + READ_STEP, "capacity {}", body.capacity());
        let full = vec![1u8; len];
        let mut body = Vec::new();
        read_body(&mut &full[..], len, &mut body).unwrap();
        assert_eq!(body.capacity(), len, "never beyond the frame");
    }

    #[test]
    fn a_too_large_header_is_refused_before_reading_the_body() {
        let mut data = 5000u32.to_le_bytes().to_vec();
        data.extend_from_slice(&[0; 5000]);
        let mut r = Counting::new(&data);
        assert_eq!(read_message(&mut r, 4096), Err(WireError::TooLarge { len: 5000, max: 4096 }));
        assert_eq!(r.served, 4);
    }

    #[test]
    fn eof_inside_the_header_is_truncated() {
        assert_eq!(
            read_message(&mut &[3u8, 0][..], DEFAULT_MAX_FRAME),
            Err(WireError::Truncated { field: "frame header", needed: 4, available: 2 })
        );
    }

    #[test]
    fn io_errors_keep_their_kind() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(ErrorKind::ConnectionReset, "reset by peer"))
            }
        }
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(ErrorKind::BrokenPipe, "pipe closed"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let e = read_message(&mut Broken, DEFAULT_MAX_FRAME).unwrap_err();
        assert_eq!(
            e,
            WireError::Io { kind: ErrorKind::ConnectionReset, message: "reset by peer".into() }
        );
        assert_eq!(e.to_string(), "I/O error (ConnectionReset): reset by peer");
        let e = write_message(&mut Broken, &Message::Ready).unwrap_err();
        assert!(matches!(e, WireError::Io { kind: ErrorKind::BrokenPipe, .. }));
    }
}
