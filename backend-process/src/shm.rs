//! Shared-memory payloads: a payload above the threshold is written to a
//! file in the shared-memory directory (`/dev/shm` on Linux, a tmpfs, so
//! the bytes stay in memory) and only its name travels in the frame. The
//! receiver reads the file and unlinks it. Names follow
//! `shoal_core::wire::check_shm_name`, so a hostile peer cannot make the
//! receiver touch any other file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use shoal_core::wire::{Payload, check_shm_name};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The directory segments live in.
fn dir() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() { shm } else { std::env::temp_dir() }
}

/// `bytes` as a payload: inline below `threshold`, else a new segment.
pub(crate) fn to_payload(bytes: &[u8], threshold: usize, tag: &str) -> std::io::Result<Payload> {
    if bytes.len() < threshold {
        return Ok(Payload::Inline(bytes.to_vec()));
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("shoal-{}-{tag}-{n}", std::process::id());
    std::fs::write(dir().join(&name), bytes)?;
    Ok(Payload::Shm { name, len: bytes.len() as u64 })
}

/// The bytes of a payload; a segment is read (at most `max` bytes, and
/// exactly its stated length) and unlinked.
pub(crate) fn from_payload(payload: Payload, max: u64) -> Result<Vec<u8>, String> {
    match payload {
        Payload::Inline(b) => Ok(b),
        Payload::Shm { name, len } => {
            check_shm_name(&name).map_err(|e| e.to_string())?;
            let path = dir().join(&name);
            let result = read_segment(&path, len, max);
            let _ = std::fs::remove_file(&path);
            result
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
    fn small_inline_big_through_a_segment_that_is_unlinked() {
        assert!(matches!(to_payload(&[1; 10], 100, "t").unwrap(), Payload::Inline(_)));
        let p = to_payload(&[7; 1000], 100, "t").unwrap();
        let Payload::Shm { name, len } = &p else { panic!("{p:?}") };
        assert_eq!(*len, 1000);
        assert!(dir().join(name).exists());
        let path = dir().join(name);
        assert_eq!(from_payload(p, 1 << 20).unwrap(), vec![7; 1000]);
        assert!(!path.exists(), "the reader unlinks the segment");
    }

    #[test]
    fn hostile_segments_are_refused() {
        let e =
            from_payload(Payload::Shm { name: "../etc/passwd".into(), len: 1 }, 10).unwrap_err();
        assert!(e.contains("shoal-"), "{e}");
        let p = to_payload(&[1; 50], 10, "t").unwrap();
        let Payload::Shm { name, .. } = &p else { panic!() };
        let lying = Payload::Shm { name: name.clone(), len: 5 };
        assert!(from_payload(lying, 1000).unwrap_err().contains("holds 50 bytes"));
        let p = to_payload(&[1; 50], 10, "t").unwrap();
        assert!(from_payload(p, 20).unwrap_err().contains("exceeds"));
    }
}
