//! Segments (wire protocol 1.1, payload tag 2): one shared-memory region
//! per direction of a connection, mapped by both processes for their whole
//! life and reused for every payload, so a large argument or result costs
//! one copy in and one out, with no file created, read or unlinked and no
//! fresh pages to fault in.
//!
//! The parent creates both as memfds (Linux), sizes them once and seals
//! them against shrinking and growing: a mapped page can never vanish under
//! a reader (which would be a SIGBUS, not an error). Pages are allocated
//! only when written. The writer keeps the pages its last [`WINDOW`]
//! payloads needed (at least [`RETAIN`] bytes) and gives the rest back
//! before it writes the next one (hole punching, which leaves the size and
//! so the seals intact): a steady stream of large payloads keeps its pages
//! warm, a one-off giant one does not pin its memory.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Bytes of pages a segment always keeps.
pub(crate) const RETAIN: usize = 4 << 20;

/// How many recent payloads' sizes decide which pages a segment keeps.
pub(crate) const WINDOW: usize = 64;

/// One mapped segment.
pub(crate) struct Segment {
    fd: OwnedFd,
    ptr: *mut u8,
    size: usize,
    writable: bool,
    /// The end of the pages that may be backed (written since the last
    /// release).
    high: usize,
    /// The sizes of the last [`WINDOW`] payloads, a ring.
    recent: [usize; WINDOW],
    writes: usize,
}

// SAFETY: the mapping is plain memory owned by this value; the protocol's
// ownership rules (README "Segments") keep writer and reader apart.
unsafe impl Send for Segment {}

fn last_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

impl Segment {
    /// A new sealed segment of `size` bytes, mapped writable.
    #[cfg(target_os = "linux")]
    pub(crate) fn create(size: usize) -> Result<Segment, String> {
        // SAFETY: memfd_create with a NUL-terminated name; the returned fd
        // is ours.
        let fd = unsafe {
            libc::memfd_create(
                c"shoal-segment".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Err(last_error("memfd_create"));
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let len = libc::off_t::try_from(size).map_err(|_| "segment too large".to_string())?;
        // SAFETY: plain syscalls on our fd.
        unsafe {
            if libc::ftruncate(fd.as_raw_fd(), len) != 0 {
                return Err(last_error("ftruncate"));
            }
            let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
            if libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) != 0 {
                return Err(last_error("sealing"));
            }
        }
        Self::map(fd, true)
    }

    /// Segments need memfds, which only Linux has here.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn create(_size: usize) -> Result<Segment, String> {
        Err("segments need Linux memfds".into())
    }

    /// Maps an inherited segment (the worker's side); refuses one that is
    /// not sealed against shrinking.
    ///
    /// # Safety
    /// `fd` is an open fd this process owns and nothing else will close.
    pub(crate) unsafe fn open(fd: RawFd, writable: bool) -> Result<Segment, String> {
        // SAFETY: the caller's contract.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: fcntl on our fd.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        #[cfg(target_os = "linux")]
        {
            // SAFETY: fcntl on our fd.
            let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
            if seals < 0 || seals & libc::F_SEAL_SHRINK == 0 {
                return Err("the segment is not sealed against shrinking".into());
            }
        }
        Self::map(fd, writable)
    }

    fn map(fd: OwnedFd, writable: bool) -> Result<Segment, String> {
        // SAFETY: fstat into a zeroed struct.
        let size = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd.as_raw_fd(), &mut st) != 0 {
                return Err(last_error("fstat"));
            }
            usize::try_from(st.st_size).map_err(|_| "bad segment size".to_string())?
        };
        if size == 0 {
            return Err("empty segment".into());
        }
        let prot = if writable { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        // SAFETY: a fresh shared mapping of the whole file; checked below.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), size, prot, libc::MAP_SHARED, fd.as_raw_fd(), 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(last_error("mmap"));
        }
        Ok(Segment { fd, ptr: ptr.cast(), size, writable, high: 0, recent: [0; WINDOW], writes: 0 })
    }

    /// The fd, for handing to a child.
    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The segment's size in bytes.
    #[cfg(test)]
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Writes `bytes` at offset 0; `None` when they do not fit (or the
    /// segment is read-only here). The caller owns the segment's writing
    /// side and the receiver is done with the previous payload.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Option<(u64, u64)> {
        if !self.writable || bytes.len() > self.size {
            return None;
        }
        self.recent[self.writes % WINDOW] = bytes.len();
        self.writes += 1;
        let keep = self.recent.iter().copied().max().unwrap_or(0);
        self.release_beyond(keep);
        // SAFETY: `bytes.len() <= size` bytes of our writable mapping; no
        // one reads them now (protocol ownership rules).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr, bytes.len()) };
        self.high = self.high.max(bytes.len());
        Some((0, bytes.len() as u64))
    }

    /// The payload at `offset .. offset + len`, checked against the size.
    pub(crate) fn read(&self, offset: u64, len: u64) -> Result<&[u8], String> {
        if offset.checked_add(len).is_none_or(|end| end > self.size as u64) {
            return Err(format!(
                "segment range {offset} + {len} does not lie inside the segment of {} bytes",
                self.size
            ));
        }
        // SAFETY: inside the mapping (checked); the mapping lives as long
        // as `self`, and the size cannot shrink (sealed).
        Ok(unsafe { std::slice::from_raw_parts(self.ptr.add(offset as usize), len as usize) })
    }

    /// Gives back the pages beyond `max(keep, RETAIN)` that earlier payloads
    /// used.
    fn release_beyond(&mut self, keep: usize) {
        let page = 4096;
        let from = keep.max(RETAIN).next_multiple_of(page);
        if self.high <= from {
            return;
        }
        #[cfg(target_os = "linux")]
        // SAFETY: punching a hole in our own memfd keeps its size.
        unsafe {
            libc::fallocate(
                self.fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                from as libc::off_t,
                (self.high - from) as libc::off_t,
            );
        }
        self.high = from;
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.size) };
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn resident_pages(s: &Segment) -> usize {
        let pages = s.size / 4096;
        let mut vec = vec![0u8; pages];
        // SAFETY: mincore over our own mapping into a buffer of one byte per
        // page.
        let r = unsafe { libc::mincore(s.ptr.cast(), s.size, vec.as_mut_ptr()) };
        assert_eq!(r, 0);
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    #[test]
    fn both_sides_see_the_bytes_and_ranges_are_checked() {
        let mut w = Segment::create(1 << 16).unwrap();
        // SAFETY: a fresh duplicate we own.
        let r = unsafe { Segment::open(libc::dup(w.fd()), false) }.unwrap();
        assert_eq!(r.size(), 1 << 16);
        assert_eq!(w.write(&[7; 100]), Some((0, 100)));
        assert_eq!(r.read(0, 100).unwrap(), &[7; 100][..]);
        assert_eq!(w.write(&vec![1; (1 << 16) + 1]), None, "too large");
        assert!(r.read(1 << 16, 1).unwrap_err().contains("inside"));
        assert!(r.read(u64::MAX, 2).is_err(), "overflow");
        assert_eq!(r.read(1 << 16, 0).unwrap(), &[] as &[u8]);
    }

    #[test]
    fn the_size_is_sealed_and_unsealed_fds_are_refused() {
        let w = Segment::create(1 << 16).unwrap();
        // SAFETY: plain syscalls on our fd.
        assert_ne!(unsafe { libc::ftruncate(w.fd(), 0) }, 0, "cannot shrink");
        // SAFETY: a fresh memfd we own, never sealed.
        let fd = unsafe { libc::memfd_create(c"x".as_ptr(), 0) };
        // SAFETY: as above.
        unsafe { libc::ftruncate(fd, 4096) };
        // SAFETY: our fd.
        let e = unsafe { Segment::open(fd, false) }.err().unwrap();
        assert!(e.contains("sealed"), "{e}");
    }

    #[test]
    fn pages_beyond_the_recent_payloads_are_given_back() {
        let big = RETAIN + (2 << 20);
        let mut w = Segment::create(RETAIN + (4 << 20)).unwrap();
        w.write(&vec![1; big]).unwrap();
        assert!(resident_pages(&w) >= big / 4096);
        for _ in 1..WINDOW {
            w.write(&[2; 10]).unwrap();
            assert!(resident_pages(&w) >= big / 4096, "kept while the big one is recent");
        }
        w.write(&[2; 10]).unwrap();
        assert!(resident_pages(&w) <= RETAIN / 4096, "{}", resident_pages(&w));
        // SAFETY: a fresh duplicate we own.
        let r = unsafe { Segment::open(libc::dup(w.fd()), false) }.unwrap();
        assert_eq!(r.read(RETAIN as u64 + 10, 1).unwrap(), [0], "a hole reads as zeros");
    }
}
