//! The bytes of the chunk convention (see the parent module's docs):
//!
//! * **arguments**: the postcard encoding of `Vec<A>` (a varint count, then
//!   the items), except that a fixed-width number `A` (see [`fixed`]) is
//!   written as `count` little-endian values of its width;
//! * **results**: `values: u64` little-endian, then `values` values of `R`
//!   (the results of the items that returned, in item order, without a
//!   length prefix; postcard, or little-endian of its width when `R` is a
//!   fixed-width number), then the postcard encoding of
//!   `Vec<(u64, String)>`: for each item that panicked, its index in the
//!   chunk and the panic message, indices strictly increasing. A chunk of
//!   `n` items has `values + errors = n`.
//!
//! Both sides work item by item: the worker decodes one argument, calls
//! the function and appends its result, never holding the chunk's
//! arguments or results as a `Vec`; the parent encodes into one buffer
//! sized up front. postcard's own `Vec` output calls `memcpy` for every
//! varint, which cost more than the encoding itself.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::fixed;
use crate::worker::panic_message;

/// The most bytes an encoder reserves up front from a size estimate
/// (it grows as usual beyond).
const MAX_RESERVE: usize = 16 << 20;

/// The most bytes an encoder reserves from its first item's size.
const MAX_FIRST_RESERVE: usize = 1 << 30;

/// The most items a decoder reserves room for from a count it read, in
/// bytes of the output vector: a hostile count costs at most this much
/// before the values that back it arrive.
const MAX_PREALLOC: usize = 16 << 20;

/// postcard output into a `Vec<u8>` that copies short pieces (varints,
/// single bytes) itself instead of calling `memcpy`.
struct VecOut(Vec<u8>);

impl postcard::ser_flavors::Flavor for VecOut {
    type Output = Vec<u8>;

    #[inline(always)]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() <= 16 {
            for &b in data {
                self.0.push(b);
            }
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// A guess at the encoded size of `n` values of `T`, for reserving.
fn estimate<T>(n: usize) -> usize {
    n.saturating_mul(size_of::<T>().max(1)).saturating_add(16).min(MAX_RESERVE)
}

/// Encodes a chunk of arguments: the same bytes as postcard's `&[A]` (a
/// varint count, then the items), into a buffer sized from the type, then
/// from the first item's encoding (a chunk of 1 MiB byte buffers is sized
/// once instead of doubling, and copied, about log2(n) times).
pub(super) fn encode_arguments<A: Serialize + 'static>(items: &[A]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    encode_arguments_into(items, &mut out)?;
    Ok(out)
}

/// [`encode_arguments`] into `out` (cleared first), so a caller can reuse
/// one warm buffer for many chunks instead of faulting in fresh pages for
/// each (a chunk of 1 MiB payloads is megabytes).
pub(super) fn encode_arguments_into<A: Serialize + 'static>(
    items: &[A],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    out.clear();
    out.reserve(estimate::<A>(items.len()));
    let mut ser = postcard::Serializer { output: VecOut(std::mem::take(out)) };
    let encoded = encode_items(items, &mut ser);
    *out = ser.output.0;
    encoded
}

fn encode_items<A: Serialize + 'static>(
    items: &[A],
    ser: &mut postcard::Serializer<VecOut>,
) -> Result<(), String> {
    items.len().serialize(&mut *ser).map_err(|e| e.to_string())?;
    if fixed::put_all(items, &mut ser.output.0) {
        return Ok(());
    }
    let Some((first, rest)) = items.split_first() else {
        return Ok(());
    };
    let before = ser.output.0.len();
    first.serialize(&mut *ser).map_err(|e| e.to_string())?;
    let first_len = ser.output.0.len() - before;
    let wanted = first_len.saturating_mul(rest.len());
    let spare = ser.output.0.capacity() - ser.output.0.len();
    if wanted > spare {
        ser.output.0.reserve(wanted.min(MAX_FIRST_RESERVE));
    }
    for item in rest {
        item.serialize(&mut *ser).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Why running a chunk failed as a whole.
pub(super) enum RunError {
    /// The arguments could not be decoded.
    Arguments(String),
    /// A result could not be encoded.
    Result(String),
}

/// Decodes the arguments one by one, calls `f` on each (catching a panic
/// per item) and encodes the results as they come.
pub(super) fn run<A, R>(arguments: &[u8], f: fn(A) -> R) -> Result<Vec<u8>, RunError>
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    if let Some(w) = fixed::width::<A>() {
        return run_fixed(arguments, w, f);
    }
    let mut de = postcard::Deserializer::from_bytes(arguments);
    let mut results = ResultsWriter::new();
    let mut result_error = None;
    let visitor = RunEach { f, results: &mut results, result_error: &mut result_error };
    let ran = (&mut de).deserialize_seq(visitor);
    if let Some(e) = result_error {
        return Err(RunError::Result(e));
    }
    ran.map_err(|e| RunError::Arguments(e.to_string()))?;
    let rest = de.finalize().map_err(|e| RunError::Arguments(e.to_string()))?;
    if !rest.is_empty() {
        return Err(RunError::Arguments(left_over(rest.len())));
    }
    results.finish().map_err(RunError::Result)
}

/// [`run`] for fixed-width arguments of `w` bytes each.
fn run_fixed<A, R>(arguments: &[u8], w: usize, f: fn(A) -> R) -> Result<Vec<u8>, RunError>
where
    A: 'static,
    R: Serialize + 'static,
{
    let (count, body) = postcard::take_from_bytes::<u64>(arguments)
        .map_err(|e| RunError::Arguments(e.to_string()))?;
    let len = fixed::body_len(count, w, body.len()).map_err(RunError::Arguments)?;
    if len != body.len() {
        return Err(RunError::Arguments(left_over(body.len() - len)));
    }
    let mut results = ResultsWriter::new();
    results.reserve(estimate::<R>(body.len() / w));
    for (index, bytes) in body.chunks_exact(w).enumerate() {
        let a = fixed::get::<A>(bytes).map_err(RunError::Arguments)?;
        results.call(f, a, index as u64).map_err(RunError::Result)?;
    }
    results.finish().map_err(RunError::Result)
}

fn left_over(n: usize) -> String {
    format!("{n} bytes left over: the types on both sides differ")
}

/// The serde visitor that runs each argument as it is decoded.
struct RunEach<'a, A, R> {
    f: fn(A) -> R,
    results: &'a mut ResultsWriter,
    /// Set when a result could not be encoded (the visitor then stops
    /// with a decoding error, which `run` replaces by this).
    result_error: &'a mut Option<String>,
}

impl<'de, A: Deserialize<'de>, R: Serialize + 'static> Visitor<'de> for RunEach<'_, A, R> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of arguments")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        if let Some(n) = seq.size_hint() {
            self.results.reserve(estimate::<R>(n));
        }
        let mut index = 0u64;
        while let Some(a) = seq.next_element::<A>()? {
            if let Err(e) = self.results.call(self.f, a, index) {
                *self.result_error = Some(e);
                return Err(serde::de::Error::custom("a result could not be encoded"));
            }
            index += 1;
        }
        Ok(())
    }
}

/// Builds the results of a chunk, one item at a time.
struct ResultsWriter {
    ser: postcard::Serializer<VecOut>,
    values: u64,
    errors: Vec<(u64, String)>,
}

impl ResultsWriter {
    fn new() -> Self {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&0u64.to_le_bytes());
        ResultsWriter {
            ser: postcard::Serializer { output: VecOut(out) },
            values: 0,
            errors: Vec::new(),
        }
    }

    fn reserve(&mut self, bytes: usize) {
        self.ser.output.0.reserve(bytes);
    }

    /// Calls `f` on the item at `index`, catching a panic, and appends
    /// its result or its panic message.
    #[inline(always)]
    fn call<A, R: Serialize + 'static>(
        &mut self,
        f: fn(A) -> R,
        a: A,
        index: u64,
    ) -> Result<(), String> {
        match catch_unwind(AssertUnwindSafe(|| f(a))) {
            Ok(r) => self.value(&r),
            Err(p) => {
                self.error(index, panic_message(&*p));
                Ok(())
            }
        }
    }

    /// The next item returned `r`.
    #[inline(always)]
    fn value<R: Serialize + 'static>(&mut self, r: &R) -> Result<(), String> {
        if !fixed::put_all(std::slice::from_ref(r), &mut self.ser.output.0) {
            r.serialize(&mut self.ser).map_err(|e| e.to_string())?;
        }
        self.values += 1;
        Ok(())
    }

    /// The item at `index` panicked with `message`.
    fn error(&mut self, index: u64, message: String) {
        self.errors.push((index, message));
    }

    fn finish(mut self) -> Result<Vec<u8>, String> {
        self.errors.serialize(&mut self.ser).map_err(|e| e.to_string())?;
        let mut out = self.ser.output.0;
        out[..8].copy_from_slice(&self.values.to_le_bytes());
        Ok(out)
    }
}

/// The decoded results of a chunk: the values of the items that returned,
/// in order, and the index and panic message of each item that panicked,
/// indices strictly increasing.
pub type Split<R> = (Vec<R>, Vec<(usize, String)>);

/// Decodes results, handing each value to `push`; returns the errors,
/// checked (strictly increasing indices below `values + errors`).
fn decode_with<R: DeserializeOwned + 'static>(
    bytes: &[u8],
    mut push: impl FnMut(R),
) -> Result<(u64, Vec<(usize, String)>), String> {
    let Some((head, body)) = bytes.split_first_chunk::<8>() else {
        return Err(format!("{} bytes are too short for the results' header", bytes.len()));
    };
    let values = u64::from_le_bytes(*head);
    let mut de = match fixed::width::<R>() {
        Some(w) => {
            let (fixed_values, rest) = body.split_at(fixed::body_len(values, w, body.len())?);
            for v in fixed_values.chunks_exact(w) {
                push(fixed::get::<R>(v)?);
            }
            postcard::Deserializer::from_bytes(rest)
        }
        None => {
            let mut de = postcard::Deserializer::from_bytes(body);
            for _ in 0..values {
                push(R::deserialize(&mut de).map_err(|e| e.to_string())?);
            }
            de
        }
    };
    let errors: Vec<(u64, String)> =
        Deserialize::deserialize(&mut de).map_err(|e| e.to_string())?;
    let rest = de.finalize().map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(left_over(rest.len()));
    }
    let total = values
        .checked_add(errors.len() as u64)
        .ok_or_else(|| format!("{values} values and {} errors overflow", errors.len()))?;
    let mut next = 0u64;
    let mut checked = Vec::with_capacity(errors.len());
    for (index, message) in errors {
        if index < next || index >= total {
            return Err(format!(
                "error index {index} is out of order or beyond the {total} items of the chunk"
            ));
        }
        next = index + 1;
        let index = usize::try_from(index).map_err(|_| format!("error index {index} overflows"))?;
        checked.push((index, message));
    }
    Ok((values, checked))
}

/// How many values of `T` to reserve room for when a header says `count`
/// and `available` bytes back them.
fn prealloc<T>(count: u64, available: usize) -> usize {
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    count.min(available).min(MAX_PREALLOC / size_of::<T>().max(1))
}

/// Decodes results into the values and the sparse errors.
pub(super) fn decode_split<R: DeserializeOwned + 'static>(
    bytes: &[u8],
) -> Result<Split<R>, String> {
    let mut values = Vec::with_capacity(prealloc::<R>(header(bytes), bytes.len()));
    let (_, errors) = decode_with(bytes, |v| values.push(v))?;
    Ok((values, errors))
}

/// Decodes results into one entry per item.
pub(super) fn decode_all<R: DeserializeOwned + 'static>(
    bytes: &[u8],
) -> Result<Vec<Result<R, String>>, String> {
    let mut all: Vec<Result<R, String>> =
        Vec::with_capacity(prealloc::<Result<R, String>>(header(bytes), bytes.len()));
    let (_, errors) = decode_with(bytes, |v| all.push(Ok(v)))?;
    if errors.is_empty() {
        return Ok(all);
    }
    // Rare: put each error at its index.
    let mut merged = Vec::with_capacity(all.len() + errors.len());
    let mut values = all.into_iter();
    for (index, message) in errors {
        merged.extend(values.by_ref().take(index - merged.len()));
        merged.push(Err(message));
    }
    merged.extend(values);
    Ok(merged)
}

/// The values count of a results buffer (0 when it is too short; the
/// decoder then reports the error).
fn header(bytes: &[u8]) -> u64 {
    bytes.first_chunk::<8>().map_or(0, |h| u64::from_le_bytes(*h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn half(x: u32) -> u32 {
        assert!(x.is_multiple_of(2), "odd {x}");
        x / 2
    }

    /// `half` on a type postcard encodes (a tuple is not a fixed-width
    /// number).
    fn half_tuple((x,): (u32,)) -> (u32,) {
        (half(x),)
    }

    fn results(values: u64, body: &[u8]) -> Vec<u8> {
        let mut b = values.to_le_bytes().to_vec();
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let args = encode_arguments(&[(4u32,), (3,), (300,)]).unwrap();
        assert_eq!(args, [3, 4, 3, 0xac, 0x02]);
        let out = run(&args, half_tuple).unwrap_or_else(|_| panic!("runs"));
        // 2 values: 2 and 150 (varint 0x96 0x01); 1 error: index 1, "odd 3".
        let mut want = results(2, &[2, 0x96, 0x01, 1, 1, 5]);
        want.extend_from_slice(b"odd 3");
        assert_eq!(out, want);
    }

    #[test]
    fn fixed_width_numbers_are_little_endian_arrays() {
        let args = encode_arguments(&[4u32, 3, 300]).unwrap();
        assert_eq!(args, [3, 4, 0, 0, 0, 3, 0, 0, 0, 0x2c, 0x01, 0, 0]);
        let out = run(&args, half).unwrap_or_else(|_| panic!("runs"));
        // 2 values: 2 and 150 as u32 LE; 1 error: index 1, "odd 3".
        let mut want = results(2, &[2, 0, 0, 0, 150, 0, 0, 0, 1, 1, 5]);
        want.extend_from_slice(b"odd 3");
        assert_eq!(out, want);
        let all = decode_all::<u32>(&out).unwrap();
        assert_eq!(all, vec![Ok(2), Err("odd 3".to_string()), Ok(150)]);
        // Mixed: fixed arguments, postcard results, and back.
        fn text(x: f64) -> String {
            format!("{x}")
        }
        let out = run(&encode_arguments(&[0.5f64, -2.0]).unwrap(), text).ok().unwrap();
        assert_eq!(decode_all::<String>(&out).unwrap(), vec![Ok("0.5".into()), Ok("-2".into())]);
        fn length(s: String) -> usize {
            s.len()
        }
        let out = run(&encode_arguments(&["abc".to_string()]).unwrap(), length).ok().unwrap();
        assert_eq!(out, results(1, &[3, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(decode_split::<usize>(&out).unwrap(), (vec![3], vec![]));
    }

    #[test]
    fn arguments_are_postcards_slice_encoding() {
        let texts = ["a".to_string(), "bb".repeat(100), String::new()];
        assert_eq!(encode_arguments(&texts).unwrap(), postcard::to_stdvec(&texts[..]).unwrap());
        let big: Vec<Vec<u8>> = (0..300).map(|i| vec![i as u8; i]).collect();
        assert_eq!(encode_arguments(&big).unwrap(), postcard::to_stdvec(&big).unwrap());
        assert_eq!(encode_arguments::<u8>(&[]).unwrap(), [0]);
        assert_eq!(encode_arguments::<u64>(&[]).unwrap(), [0]);
    }

    #[test]
    fn encoding_into_a_used_buffer_replaces_its_bytes() {
        let mut buf = vec![0xee; 100];
        encode_arguments_into(&[(4u32,), (3,), (300,)], &mut buf).unwrap();
        assert_eq!(buf, [3, 4, 3, 0xac, 0x02]);
        encode_arguments_into(&[7u16], &mut buf).unwrap();
        assert_eq!(buf, [1, 7, 0]);
        encode_arguments_into::<u32>(&[], &mut buf).unwrap();
        assert_eq!(buf, [0]);
    }

    #[test]
    fn split_and_merged_decoding_agree() {
        let out = run(&encode_arguments(&[3u32, 4, 5, 6, 7]).unwrap(), half).ok().unwrap();
        let (values, errors) = decode_split::<u32>(&out).unwrap();
        assert_eq!(values, [2, 3]);
        assert_eq!(errors.iter().map(|e| e.0).collect::<Vec<_>>(), [0, 2, 4]);
        let all = decode_all::<u32>(&out).unwrap();
        assert_eq!(all.len(), 5);
        assert!(all[0].is_err() && all[2].is_err() && all[4].is_err());
        assert_eq!((&all[1], &all[3]), (&Ok(2), &Ok(3)));
    }

    #[test]
    fn hostile_results_are_errors_not_allocations() {
        // Claims 2^60 values with three bytes behind them.
        let e = decode_all::<(u64,)>(&results(1 << 60, &[1, 2, 3])).unwrap_err();
        assert!(e.contains("end"), "{e}");
        let e = decode_all::<u64>(&results(1 << 60, &[1, 2, 3])).unwrap_err();
        assert!(e.contains("do not fit"), "{e}");
        assert!(decode_all::<u8>(&[1, 2]).unwrap_err().contains("too short"));
        // One value, then an error at index 5 of a 2-item chunk.
        let e = decode_all::<u8>(&results(1, &[9, 1, 5, 0])).unwrap_err();
        assert!(e.contains("beyond"), "{e}");
        // Two errors out of order.
        let e = decode_all::<u8>(&results(0, &[2, 1, 0, 0, 0])).unwrap_err();
        assert!(e.contains("out of order"), "{e}");
        // Trailing bytes.
        let e = decode_all::<u8>(&results(1, &[9, 0, 7])).unwrap_err();
        assert!(e.contains("left over"), "{e}");
        let e = decode_all::<u16>(&results(1, &[9, 0, 0, 7])).unwrap_err();
        assert!(e.contains("left over"), "{e}");
    }

    #[test]
    fn arguments_that_do_not_decode_or_trail_are_errors() {
        let left = |r| matches!(r, Err(RunError::Arguments(e)) if e.contains("left over"));
        assert!(left(run(&[1, 4, 4], half_tuple)));
        assert!(left(run(&[1, 4, 0, 0, 0, 9], half)));
        assert!(matches!(run(&[0xff, 0xff, 0xff], half_tuple), Err(RunError::Arguments(_))));
        assert!(matches!(run(&[0xff, 0xff, 0xff], half), Err(RunError::Arguments(_))));
        // A count that the bytes cannot back.
        let e = run(&[0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2], half).err().unwrap();
        assert!(matches!(e, RunError::Arguments(e) if e.contains("do not fit")));
    }

    #[test]
    fn a_result_that_cannot_be_encoded_fails_the_chunk() {
        fn unknown_length(_: u8) -> Unsized {
            Unsized
        }
        struct Unsized;
        impl Serialize for Unsized {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                // postcard needs a sequence's length up front.
                use serde::ser::SerializeSeq;
                s.serialize_seq(None)?.end()
            }
        }
        let args = encode_arguments(&[1u8]).unwrap();
        assert!(matches!(run(&args, unknown_length), Err(RunError::Result(_))));
    }

    #[test]
    fn empty_chunks_round_trip() {
        let out = run(&encode_arguments::<u32>(&[]).unwrap(), half).ok().unwrap();
        assert_eq!(decode_all::<u32>(&out).unwrap(), vec![]);
        let out = run(&encode_arguments::<(u32,)>(&[]).unwrap(), half_tuple).ok().unwrap();
        assert_eq!(decode_all::<(u32,)>(&out).unwrap(), vec![]);
    }
}
