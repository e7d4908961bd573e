//! Field encodings (README.md, "Field encodings"): little-endian integers and
//! `f32`, length-prefixed `str` and `bytes`. Reading checks every length
//! against the bytes left in the frame before it looks at or copies anything.

use super::error::WireError;

/// Reads the fields of one frame body, front to back.
pub(crate) struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Fields { rest: body }
    }

    /// The next `n` bytes, or `Truncated` naming `field`.
    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        match self.rest.split_at_checked(n) {
            Some((head, tail)) => {
                self.rest = tail;
                Ok(head)
            }
            None => Err(WireError::Truncated {
                field,
                needed: n as u64,
                available: self.rest.len() as u64,
            }),
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let bytes = self.take(N, field)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        self.array(field).map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        self.array(field).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        self.array(field).map(u64::from_le_bytes)
    }

    pub(crate) fn f32(&mut self, field: &'static str) -> Result<f32, WireError> {
        self.array(field).map(f32::from_le_bytes)
    }

    pub(crate) fn magic(&mut self, field: &'static str) -> Result<[u8; 6], WireError> {
        self.array(field)
    }

    /// A `u32` length, checked against the bytes left, then that many bytes.
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], WireError> {
        let len = self.u32(field)?;
        if u64::from(len) > self.rest.len() as u64 {
            return Err(WireError::BadLength {
                field,
                len: u64::from(len),
                available: self.rest.len() as u64,
            });
        }
        self.take(len as usize, field)
    }

    /// A `bytes` field that must be UTF-8.
    pub(crate) fn str(&mut self, field: &'static str) -> Result<String, WireError> {
        let bytes = self.bytes(field)?;
        match core::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(WireError::BadUtf8 { field }),
        }
    }

    /// How many bytes are left.
    pub(crate) fn left(&self) -> usize {
        self.rest.len()
    }
}

/// Appends fields to a frame being built. Lengths are known to fit in a
/// `u32`: [`encode`](super::encode) checks the whole body first.
pub(crate) trait PutFields {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_f32(&mut self, v: f32);
    fn put_bytes(&mut self, v: &[u8]);
    fn put_str(&mut self, v: &str) {
        self.put_bytes(v.as_bytes());
    }
}

impl PutFields for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_f32(&mut self, v: f32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_bytes(&mut self, v: &[u8]) {
        // The caller checked that the whole body, so this field, fits a u32.
        self.put_u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.extend_from_slice(v);
    }
}

/// The encoded size of a `bytes` or `str` field holding `len` bytes.
pub(crate) fn sized(len: usize) -> u64 {
    4 + len as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_little_endian() {
        let mut out = Vec::new();
        out.put_u16(0x0102);
        out.put_u32(0x0304_0506);
        out.put_u64(0x0708_090a_0b0c_0d0e);
        out.put_f32(1.0);
        assert_eq!(
            out,
            [2, 1, 6, 5, 4, 3, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 9, 8, 7, 0, 0, 0x80, 0x3f]
        );
        let mut f = Fields::new(&out);
        assert_eq!(f.u16("a").unwrap(), 0x0102);
        assert_eq!(f.u32("b").unwrap(), 0x0304_0506);
        assert_eq!(f.u64("c").unwrap(), 0x0708_090a_0b0c_0d0e);
        assert_eq!(f.f32("d").unwrap(), 1.0);
        assert_eq!(f.left(), 0);
    }

    #[test]
    fn a_fixed_field_past_the_end_is_truncated() {
        let mut f = Fields::new(&[1, 2, 3]);
        assert_eq!(
            f.u64("JOB.task"),
            Err(WireError::Truncated { field: "JOB.task", needed: 8, available: 3 })
        );
    }

    #[test]
    fn a_lying_length_is_refused_before_reading() {
        // Claims 4 GiB - 1 with 2 bytes left: no allocation, no read.
        let mut f = Fields::new(&[0xff, 0xff, 0xff, 0xff, b'h', b'i']);
        assert_eq!(
            f.str("LOG.text"),
            Err(WireError::BadLength { field: "LOG.text", len: u64::from(u32::MAX), available: 2 })
        );
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let mut f = Fields::new(&[2, 0, 0, 0, 0xc3, 0x28]);
        assert_eq!(f.str("LOG.text"), Err(WireError::BadUtf8 { field: "LOG.text" }));
    }

    #[test]
    fn a_str_round_trips() {
        let mut out = Vec::new();
        out.put_str("héllo");
        assert_eq!(out.len() as u64, sized("héllo".len()));
        assert_eq!(Fields::new(&out).str("s").unwrap(), "héllo");
    }
}
