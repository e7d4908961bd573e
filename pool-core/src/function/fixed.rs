//! Fixed-width numbers in a chunk: `u16`–`u128`, `i16`–`i128`, `f32`,
//! `f64`, and `usize`/`isize` as 64 bits, travel as little-endian bytes of
//! their width instead of postcard varints (see the chunk convention in
//! the parent module). The type decides on both sides: the parent and the
//! worker hold the same `Function<A, R>`, so no flag is sent.
//!
//! The dispatch is on `TypeId` and `Any` downcasts, all safe code; after
//! monomorphization the comparisons are constants and fold away, so a
//! chunk of `u64` costs one 8-byte copy per item.

use std::any::{Any, TypeId};

/// Moves `t` into a `U` when `T` and `U` are the same type.
#[inline(always)]
fn cast<T: 'static, U: 'static>(t: T) -> Option<U> {
    let mut slot = Some(t);
    (&mut slot as &mut dyn Any).downcast_mut::<Option<U>>().and_then(Option::take)
}

macro_rules! fixed_numbers {
    ($($t:ty),*) => {
        /// The width in bytes of `T` on the wire when it is a fixed-width
        /// number, `None` otherwise.
        #[inline(always)]
        pub(super) fn width<T: 'static>() -> Option<usize> {
            let id = TypeId::of::<T>();
            $(if id == TypeId::of::<$t>() {
                return Some(size_of::<$t>());
            })*
            if id == TypeId::of::<usize>() || id == TypeId::of::<isize>() {
                return Some(8);
            }
            None
        }

        /// Writes `t`'s little-endian bytes into `dst`, exactly its
        /// width long; `T` must be a fixed-width number.
        #[inline(always)]
        fn put_into<T: 'static>(t: &T, dst: &mut [u8]) {
            let t = t as &dyn Any;
            $(if let Some(v) = t.downcast_ref::<$t>() {
                return dst.copy_from_slice(&v.to_le_bytes());
            })*
            if let Some(v) = t.downcast_ref::<usize>() {
                return dst.copy_from_slice(&(*v as u64).to_le_bytes());
            }
            if let Some(v) = t.downcast_ref::<isize>() {
                return dst.copy_from_slice(&(*v as i64).to_le_bytes());
            }
            unreachable!("put_into is called only for fixed-width numbers")
        }

        /// Appends the little-endian bytes of every item when `T` is a
        /// fixed-width number; `false` (nothing written) otherwise. One
        /// resize, then fixed-size copies the compiler turns into a plain
        /// loop (a push per item would check the capacity each time).
        #[inline(always)]
        pub(super) fn put_all<T: 'static>(items: &[T], out: &mut Vec<u8>) -> bool {
            let Some(w) = width::<T>() else {
                return false;
            };
            let start = out.len();
            // No overflow: a `T` takes at least `w` bytes in memory.
            out.resize(start + items.len() * w, 0);
            for (dst, item) in out[start..].chunks_exact_mut(w).zip(items) {
                put_into(item, dst);
            }
            true
        }

        /// Reads a `T` from its `width::<T>()` little-endian bytes. `T`
        /// must be a fixed-width number and `bytes` exactly that long;
        /// `Err` only when a 64-bit value does not fit this platform's
        /// `usize` or `isize`.
        #[inline(always)]
        pub(super) fn get<T: 'static>(bytes: &[u8]) -> Result<T, String> {
            $(if TypeId::of::<T>() == TypeId::of::<$t>() {
                let v = <$t>::from_le_bytes(bytes.try_into().expect("the caller checked the width"));
                return Ok(cast(v).expect("the same type"));
            })*
            if TypeId::of::<T>() == TypeId::of::<usize>() {
                let v = u64::from_le_bytes(bytes.try_into().expect("the caller checked the width"));
                let v = usize::try_from(v).map_err(|_| format!("{v} does not fit a usize here"))?;
                return Ok(cast(v).expect("the same type"));
            }
            if TypeId::of::<T>() == TypeId::of::<isize>() {
                let v = i64::from_le_bytes(bytes.try_into().expect("the caller checked the width"));
                let v = isize::try_from(v).map_err(|_| format!("{v} does not fit an isize here"))?;
                return Ok(cast(v).expect("the same type"));
            }
            unreachable!("get is called only for fixed-width numbers")
        }
    };
}

fixed_numbers!(u16, u32, u64, u128, i16, i32, i64, i128, f32, f64);

/// The byte length of `count` values of width `w`, checked against what
/// `available` bytes can hold (a hostile count is an error, never an
/// allocation).
pub(super) fn body_len(count: u64, w: usize, available: usize) -> Result<usize, String> {
    usize::try_from(count)
        .ok()
        .and_then(|n| n.checked_mul(w))
        .filter(|&len| len <= available)
        .ok_or_else(|| {
            format!("{count} values of {w} bytes do not fit the {available} bytes that follow")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: 'static + Copy + PartialEq + std::fmt::Debug>(v: T) {
        let mut out = Vec::new();
        assert!(put_all(&[v], &mut out));
        assert_eq!(Some(out.len()), width::<T>());
        assert_eq!(get::<T>(&out).unwrap(), v);
    }

    #[test]
    fn every_fixed_number_round_trips_at_its_width() {
        round_trip(0xbeefu16);
        round_trip(u32::MAX);
        round_trip(u64::MAX - 1);
        round_trip(u128::MAX / 3);
        round_trip(-2i16);
        round_trip(i32::MIN);
        round_trip(-3i64);
        round_trip(i128::MIN + 1);
        round_trip(1.5f32);
        round_trip(-0.1f64);
        round_trip(usize::MAX);
        round_trip(isize::MIN);
        let mut out = Vec::new();
        put_all(&[300u32], &mut out);
        assert_eq!(out, [0x2c, 0x01, 0, 0]);
        put_all(&[1u16, 0x203], &mut out);
        assert_eq!(out, [0x2c, 0x01, 0, 0, 1, 0, 3, 2], "appended after what was there");
    }

    #[test]
    fn other_types_are_not_fixed() {
        assert_eq!(width::<u8>(), None);
        assert_eq!(width::<String>(), None);
        assert_eq!(width::<(u64, u64)>(), None);
        let mut out = Vec::new();
        assert!(!put_all(&[7u8], &mut out));
        assert!(!put_all(&["x".to_string()], &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn hostile_counts_are_errors() {
        assert!(body_len(1 << 62, 8, 100).unwrap_err().contains("do not fit"));
        assert!(body_len(13, 8, 100).is_err());
        assert_eq!(body_len(12, 8, 100).unwrap(), 96);
    }
}
