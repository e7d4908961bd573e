//! Framing (README.md, "Frames"): [`encode`] writes one whole frame,
//! [`FrameDecoder`] turns a byte stream, fed in pieces of any size, back
//! into messages.

use super::error::WireError;
use super::message::{Message, decode_body};
use super::{DEFAULT_MAX_FRAME, HEADER_LEN};

/// Appends one whole frame (4-byte length header and body) to `out`.
///
/// Fails, leaving `out` as it was, when the body would not fit in a `u32`
/// ([`WireError::TooLarge`]) or a shared-memory payload has an invalid name
/// ([`WireError::BadShmName`]): the peer would refuse either. It does not
/// know the peer's `max_frame`; compare [`Message::body_len`] with it first.
pub fn encode(message: &Message, out: &mut Vec<u8>) -> Result<(), WireError> {
    let body_len = message.body_len();
    let Ok(len32) = u32::try_from(body_len) else {
        return Err(WireError::TooLarge { len: body_len, max: u64::from(u32::MAX) });
    };
    message.check()?;
    out.reserve(HEADER_LEN + len32 as usize);
    out.extend_from_slice(&len32.to_le_bytes());
    let start = out.len();
    message.put_body(out);
    debug_assert_eq!((out.len() - start) as u64, body_len, "body_len disagrees with put_body");
    Ok(())
}

/// Checks a frame header against the limit: the body length it declares,
/// or the error. Nothing is allocated before this passes.
pub(crate) fn check_header(header: [u8; HEADER_LEN], max_frame: u32) -> Result<usize, WireError> {
    let len = u32::from_le_bytes(header);
    if len == 0 {
        Err(WireError::EmptyFrame)
    } else if len > max_frame {
        Err(WireError::TooLarge { len: u64::from(len), max: u64::from(max_frame) })
    } else {
        Ok(len as usize)
    }
}

/// Grows `buf` so that `additional` more bytes fit, doubling its capacity
/// (for linear copying) but never beyond `limit` bytes in all.
pub(crate) fn grow(buf: &mut Vec<u8>, additional: usize, limit: usize) {
    let needed = buf.len() + additional;
    if needed > buf.capacity() {
        let target = needed.max(buf.capacity().saturating_mul(2)).min(limit).max(needed);
        buf.reserve_exact(target - buf.len());
    }
}

/// A buffer larger than this is freed after its frame is decoded, so one
/// big frame does not pin its memory for the life of the connection.
const KEEP_CAPACITY: usize = 64 * 1024;

/// A streaming, sans-IO frame decoder.
///
/// Feed it bytes as they arrive, in pieces of any size, and take messages
/// out. It holds at most one frame (at most `max_frame + 4` bytes), refuses
/// a too-large length as soon as the 4 header bytes are in, and grows its
/// buffer only as body bytes actually arrive. After an error it is
/// *poisoned*: it accepts no more bytes and keeps returning that error (a
/// connection is never resynchronised).
///
/// ```
/// use shoal_core::wire::{FrameDecoder, Message, encode};
///
/// let mut stream = Vec::new();
/// encode(&Message::Ready, &mut stream).unwrap();
/// encode(&Message::Log { task: 7, text: "hi".into() }, &mut stream).unwrap();
///
/// let mut decoder = FrameDecoder::default();
/// let mut input = &stream[..];
/// let mut got = Vec::new();
/// loop {
///     let used = decoder.feed(input);
///     input = &input[used..];
///     match decoder.next_message().unwrap() {
///         Some(message) => got.push(message),
///         None if input.is_empty() => break,
///         None => {}
///     }
/// }
/// assert_eq!(got, [Message::Ready, Message::Log { task: 7, text: "hi".into() }]);
/// decoder.finish().unwrap(); // no partial frame left
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame: u32,
    /// The current frame: header, then as much of the body as arrived.
    buf: Vec<u8>,
    /// The current frame's body length, once its header is in and checked.
    body_len: Option<usize>,
    /// Set by the first error; the decoder is dead after it.
    error: Option<WireError>,
}

impl Default for FrameDecoder {
    /// A decoder with the default limit ([`DEFAULT_MAX_FRAME`]).
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameDecoder {
    /// A decoder that refuses frame bodies longer than `max_frame` bytes.
    pub fn new(max_frame: u32) -> Self {
        FrameDecoder { max_frame, buf: Vec::new(), body_len: None, error: None }
    }

    /// The current limit on frame bodies.
    pub fn max_frame(&self) -> u32 {
        self.max_frame
    }

    /// Changes the limit for frames whose header has not fully arrived yet
    /// (for example from [`HANDSHAKE_MAX_FRAME`](super::HANDSHAKE_MAX_FRAME)
    /// to the connection's own limit once the handshake is done).
    pub fn set_max_frame(&mut self, max_frame: u32) {
        self.max_frame = max_frame;
    }

    /// Takes bytes from `data` and returns how many it took. It takes
    /// everything up to the end of the current frame and stops there (or at
    /// a bad header), so call [`next_message`](Self::next_message) and feed
    /// the rest. Takes nothing once the decoder has failed.
    pub fn feed(&mut self, data: &[u8]) -> usize {
        if self.error.is_some() {
            return 0;
        }
        let mut used = 0;
        let body_len = match self.body_len {
            Some(len) => len,
            None => {
                let n = (HEADER_LEN - self.buf.len()).min(data.len());
                self.buf.extend_from_slice(&data[..n]);
                used = n;
                let Ok(header) = <[u8; HEADER_LEN]>::try_from(&self.buf[..]) else {
                    return used; // header still incomplete
                };
                match check_header(header, self.max_frame) {
                    Ok(len) => {
                        self.body_len = Some(len);
                        len
                    }
                    Err(e) => {
                        self.error = Some(e);
                        return used;
                    }
                }
            }
        };
        let frame_len = HEADER_LEN + body_len;
        let n = (frame_len - self.buf.len()).min(data.len() - used);
        grow(&mut self.buf, n, frame_len);
        self.buf.extend_from_slice(&data[used..used + n]);
        used + n
    }

    /// The next complete message, `Ok(None)` if its frame has not fully
    /// arrived, or the error that killed the connection.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let Some(body_len) = self.body_len else { return Ok(None) };
        if self.buf.len() < HEADER_LEN + body_len {
            return Ok(None);
        }
        let decoded = decode_body(&self.buf[HEADER_LEN..]);
        self.body_len = None;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        match decoded {
            Ok(message) => Ok(Some(message)),
            Err(e) => {
                self.error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// How many bytes of the current, incomplete frame are buffered (at
    /// most `max_frame + 4`).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Call at end of stream: `Ok` when the stream ended between two
    /// frames, [`WireError::Truncated`] when a frame was cut off, or the
    /// error the decoder already failed with.
    pub fn finish(&self) -> Result<(), WireError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.body_len {
            _ if self.buf.is_empty() => Ok(()),
            None => Err(WireError::Truncated {
                field: "frame header",
                needed: HEADER_LEN as u64,
                available: self.buf.len() as u64,
            }),
            Some(len) => Err(WireError::Truncated {
                field: "frame body",
                needed: len as u64,
                available: (self.buf.len() - HEADER_LEN) as u64,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Payload;

    fn frames(messages: &[Message]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            encode(m, &mut out).unwrap();
        }
        out
    }

    /// Feeds `data` in pieces of `step` bytes; returns the messages and the
    /// first error (or `finish`'s verdict).
    fn decode_in_steps(
        decoder: &mut FrameDecoder,
        data: &[u8],
        step: usize,
    ) -> (Vec<Message>, Result<(), WireError>) {
        let mut got = Vec::new();
        for piece in data.chunks(step) {
            let mut piece = piece;
            loop {
                let used = decoder.feed(piece);
                piece = &piece[used..];
                assert!(decoder.buffered() <= decoder.max_frame() as usize + HEADER_LEN);
                match decoder.next_message() {
                    Ok(Some(m)) => got.push(m),
                    Ok(None) if piece.is_empty() => break,
                    Ok(None) => {}
                    Err(e) => return (got, Err(e)),
                }
            }
        }
        (got, decoder.finish())
    }

    fn sample() -> Vec<Message> {
        vec![
            Message::Ready,
            Message::Job {
                task: 1,
                attempt: 1,
                function: "square".into(),
                argument: Payload::Inline(vec![1, 2, 3]),
            },
            Message::Progress { task: 1, fraction: 0.5 },
            Message::Log { task: 1, text: "halfway".into() },
            Message::Done { task: 1, result: Payload::Inline(vec![9]) },
            Message::Bye,
        ]
    }

    #[test]
    fn byte_at_a_time_feed_gives_the_same_messages() {
        let stream = frames(&sample());
        for step in [1, 2, 3, 5, 7, 64, stream.len()] {
            let (got, end) = decode_in_steps(&mut FrameDecoder::default(), &stream, step);
            assert_eq!(got, sample(), "step {step}");
            assert_eq!(end, Ok(()), "step {step}");
        }
    }

    #[test]
    fn feed_stops_at_the_end_of_a_frame() {
        let stream = frames(&[Message::Ready, Message::Stop]);
        let mut d = FrameDecoder::default();
        assert_eq!(d.feed(&stream), 5);
        assert_eq!(d.feed(&stream[5..]), 0, "a complete frame waits for next_message");
        assert_eq!(d.next_message(), Ok(Some(Message::Ready)));
        assert_eq!(d.next_message(), Ok(None));
        assert_eq!(d.feed(&stream[5..]), 5);
        assert_eq!(d.next_message(), Ok(Some(Message::Stop)));
    }

    #[test]
    fn a_too_large_header_is_refused_before_its_body_arrives() {
        let mut d = FrameDecoder::new(1024);
        let header = 60u32 * 1024 * 1024;
        let mut data = header.to_le_bytes().to_vec();
        data.extend_from_slice(&[0x21; 100]);
        assert_eq!(d.feed(&data), 4, "takes the header only");
        assert!(d.buf.capacity() <= 64, "nothing allocated for the body");
        let too_large = WireError::TooLarge { len: u64::from(header), max: 1024 };
        assert_eq!(d.next_message(), Err(too_large.clone()));
        assert_eq!(d.feed(&data[4..]), 0, "poisoned");
        assert_eq!(d.next_message(), Err(too_large.clone()));
        assert_eq!(d.finish(), Err(too_large));
    }

    #[test]
    fn max_frame_is_inclusive() {
        let m = Message::Data { task: 1, data: vec![0; 100] };
        let body = m.body_len() as u32;
        let stream = frames(std::slice::from_ref(&m));
        let (got, end) = decode_in_steps(&mut FrameDecoder::new(body), &stream, 1);
        assert_eq!((got, end), (vec![m.clone()], Ok(())));
        let (got, end) = decode_in_steps(&mut FrameDecoder::new(body - 1), &stream, 1);
        assert!(got.is_empty());
        assert_eq!(
            end,
            Err(WireError::TooLarge { len: u64::from(body), max: u64::from(body - 1) })
        );
    }

    #[test]
    fn an_empty_frame_is_refused() {
        let mut d = FrameDecoder::default();
        d.feed(&[0, 0, 0, 0, 2]);
        assert_eq!(d.next_message(), Err(WireError::EmptyFrame));
    }

    #[test]
    fn a_claimed_body_costs_only_what_arrives() {
        // The header claims 60 MiB, 10 bytes follow: the buffer holds 14.
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut data = (60u32 << 20).to_le_bytes().to_vec();
        data.extend_from_slice(&[0x22; 10]);
        assert_eq!(d.feed(&data), 14);
        assert_eq!(d.next_message(), Ok(None));
        assert!(d.buf.capacity() < 1024, "capacity {}", d.buf.capacity());
        assert_eq!(
            d.finish(),
            Err(WireError::Truncated { field: "frame body", needed: 60 << 20, available: 10 })
        );
    }

    #[test]
    fn the_buffer_never_outgrows_its_frame() {
        let m = Message::Data { task: 3, data: vec![7; 100_000] };
        let stream = frames(std::slice::from_ref(&m));
        let mut d = FrameDecoder::default();
        for piece in stream.chunks(999) {
            assert_eq!(d.feed(piece), piece.len());
            assert!(d.buf.capacity() <= stream.len());
        }
        assert_eq!(d.next_message(), Ok(Some(m)));
        assert_eq!(d.buf.capacity(), 0, "a big buffer is freed after its frame");
    }

    #[test]
    fn a_partial_header_at_the_end_is_truncated() {
        let mut d = FrameDecoder::default();
        d.feed(&[5, 0]);
        assert_eq!(
            d.finish(),
            Err(WireError::Truncated { field: "frame header", needed: 4, available: 2 })
        );
    }

    #[test]
    fn a_bad_body_poisons_the_decoder() {
        let mut stream = vec![1, 0, 0, 0, 0x7f];
        stream.extend(frames(&[Message::Ready]));
        let (got, end) = decode_in_steps(&mut FrameDecoder::default(), &stream, 1);
        assert!(got.is_empty());
        assert_eq!(end, Err(WireError::UnknownKind(0x7f)));
    }

    #[test]
    fn set_max_frame_applies_to_the_next_header() {
        let big = Message::Data { task: 1, data: vec![0; 5000] };
        let stream = frames(&[Message::Ready, big.clone()]);
        let mut d = FrameDecoder::new(4096);
        assert_eq!(d.feed(&stream), 5);
        assert_eq!(d.next_message(), Ok(Some(Message::Ready)));
        d.set_max_frame(DEFAULT_MAX_FRAME);
        assert_eq!(d.feed(&stream[5..]), stream.len() - 5);
        assert_eq!(d.next_message(), Ok(Some(big)));
    }

    #[test]
    fn encode_refuses_a_bad_shm_name_and_leaves_out_alone() {
        let mut out = vec![1, 2, 3];
        let m = Message::Done {
            task: 1,
            result: Payload::Shm { name: "../etc/passwd".into(), len: 10 },
        };
        assert!(matches!(encode(&m, &mut out), Err(WireError::BadShmName { .. })));
        assert_eq!(out, [1, 2, 3]);
    }
}
