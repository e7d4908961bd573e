//! Shared-memory payloads: a payload above the threshold goes into the
//! sender's segment of the connection when it has one and the payload fits
//! (payload tag 2, see `segment.rs`); otherwise it is written to a file in
//! the shared-memory directory (`/dev/shm` on Linux, a tmpfs, so the bytes
//! stay in memory) and only its name travels in the frame. The receiver
//! reads the file and unlinks it. Names follow
//! `shoal_core::wire::check_shm_name`, so a hostile peer cannot make the
//! receiver touch any other file.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use shoal_core::wire::{Payload, check_shm_name};

use crate::segment::Segment;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The directory segments live in.
fn dir() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() { shm } else { std::env::temp_dir() }
}

/// `bytes` as a payload: inline below `threshold`, else in `segment` if
/// there is one and they fit, else a new shared-memory file.
pub(crate) fn to_payload(
    bytes: Cow<'_, [u8]>,
    threshold: usize,
    tag: &str,
    segment: Option<&mut Segment>,
) -> std::io::Result<Payload> {
    if bytes.len() < threshold {
        return Ok(Payload::Inline(bytes.into_owned()));
    }
    if let Some((offset, len)) = segment.and_then(|s| s.write(&bytes)) {
        return Ok(Payload::Segment { offset, len });
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("shoal-{}-{tag}-{n}", std::process::id());
    std::fs::write(dir().join(&name), &bytes)?;
    Ok(Payload::Shm { name, len: bytes.len() as u64 })
}

/// The bytes of a payload: a file is read (at most `max` bytes, and
/// exactly its stated length) and unlinked; a segment range is borrowed
/// from `segment`, which the caller checked is there (a segment payload
/// without one is a protocol error, not a task's).
pub(crate) fn from_payload(
    payload: Payload,
    max: u64,
    segment: Option<&Segment>,
) -> Result<Cow<'_, [u8]>, String> {
    match payload {
        Payload::Inline(b) => Ok(Cow::Owned(b)),
        Payload::Shm { name, len } => {
            check_shm_name(&name).map_err(|e| e.to_string())?;
            let path = dir().join(&name);
            let result = read_segment(&path, len, max);
            let _ = std::fs::remove_file(&path);
            result.map(Cow::Owned)
        }
        Payload::Segment { offset, len } => {
            if len > max {
                return Err(format!("a segment payload of {len} bytes exceeds the limit of {max}"));
            }
            let segment = segment.ok_or("a segment payload, but this connection has none")?;
            segment.read(offset, len).map(Cow::Borrowed)
        }
    }
}

fn read_segment(path: &std::path::Path, len: u64, max: u64) -> Result<Vec<u8>, String> {
    if len > max {
        return Err(format!("a shared-memory payload of {len} bytes exceeds the limit of {max}"));
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("shared-memory segment: {e}"))?;
    if meta.len() != len {
        return Err(format!(
            "shared-memory segment holds {} bytes, the frame says {len}",
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| format!("shared-memory segment: {e}"))
}

/// Removes a segment that will never be read (its receiver died).
pub(crate) fn discard(payload: &Payload) {
    if let Payload::Shm { name, .. } = payload
        && check_shm_name(name).is_ok()
    {
        let _ = std::fs::remove_file(dir().join(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_inline_big_through_a_file_that_is_unlinked() {
        let small = to_payload(Cow::Borrowed(&[1; 10]), 100, "t", None).unwrap();
        assert!(matches!(small, Payload::Inline(_)));
        let p = to_payload(Cow::Borrowed(&[7; 1000]), 100, "t", None).unwrap();
        let Payload::Shm { name, len } = &p else { panic!("{p:?}") };
        assert_eq!(*len, 1000);
        assert!(dir().join(name).exists());
        let path = dir().join(name);
        assert_eq!(from_payload(p, 1 << 20, None).unwrap().as_ref(), &[7; 1000][..]);
        assert!(!path.exists(), "the reader unlinks the file");
    }

    #[test]
    fn hostile_files_are_refused() {
        let hostile = Payload::Shm { name: "../etc/passwd".into(), len: 1 };
        let e = from_payload(hostile, 10, None).unwrap_err();
        assert!(e.contains("shoal-"), "{e}");
        let p = to_payload(Cow::Borrowed(&[1; 50]), 10, "t", None).unwrap();
        let Payload::Shm { name, .. } = &p else { panic!() };
        let lying = Payload::Shm { name: name.clone(), len: 5 };
        assert!(from_payload(lying, 1000, None).unwrap_err().contains("holds 50 bytes"));
        let p = to_payload(Cow::Borrowed(&[1; 50]), 10, "t", None).unwrap();
        assert!(from_payload(p, 20, None).unwrap_err().contains("exceeds"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn big_payloads_go_through_the_segment_when_they_fit() {
        let mut seg = Segment::create(4096).unwrap();
        let p = to_payload(Cow::Borrowed(&[3; 500]), 100, "t", Some(&mut seg)).unwrap();
        assert_eq!(p, Payload::Segment { offset: 0, len: 500 });
        assert_eq!(from_payload(p, 1 << 20, Some(&seg)).unwrap().as_ref(), &[3; 500][..]);
        let too_big = to_payload(Cow::Borrowed(&[3; 5000]), 100, "t", Some(&mut seg)).unwrap();
        assert!(matches!(too_big, Payload::Shm { .. }), "a file when it does not fit");
        discard(&too_big);
        let outside = Payload::Segment { offset: 4000, len: 200 };
        assert!(from_payload(outside, 1 << 20, Some(&seg)).unwrap_err().contains("inside"));
        let none = Payload::Segment { offset: 0, len: 1 };
        assert!(from_payload(none, 1 << 20, None).unwrap_err().contains("has none"));
        let over = Payload::Segment { offset: 0, len: 200 };
        assert!(from_payload(over, 100, Some(&seg)).unwrap_err().contains("exceeds"));
    }
}
