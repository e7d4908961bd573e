//! Lists of plain numbers travel packed, not pickled.
//!
//! A chunk's items and a chunk's results are Python lists. When every
//! element is exactly an `int` that fits 64 bits, or every element is
//! exactly a `float`, the list crosses to the other process as one tag
//! byte and the numbers' little-endian bytes, the layout of
//! `array.array('q')` or `array.array('d')`:
//!
//! | byte 0 | then |
//! |--------|------|
//! | `q` (0x71) | `n` × 8 bytes, two's complement `i64` |
//! | `d` (0x64) | `n` × 8 bytes, IEEE 754 `f64` (NaN payloads and -0.0 kept) |
//!
//! Anything else (a `bool`, an `int` subclass, a big `int`, a mix, a
//! short list) is pickled as before. A pickle of protocol 2 or later
//! starts with 0x80, so the first byte tells a packed buffer from a
//! pickled one.
//!
//! A chunk whose items pack is sent without a pickle at all:
//!
//! | bytes | |
//! |-------|---|
//! | 1 | `P` (0x50) |
//! | 1 | the call mode (`shoal._codec.CALL`, ...) |
//! | 4 | `n`, little-endian: the length of the pickled function |
//! | `n` | the pickled function (cloudpickle) |
//! | rest | the items, packed as above |
//!
//! instead of the pickle of `(function, mode, items)`. The parent writes it
//! straight into the chunk's buffer, which the pool reuses, so a chunk
//! costs no fresh memory (a 25 000-item chunk took ~0.3 ms to pack into
//! new `bytes` and pickle, most of it page faults; ~0.05 ms this way).
//!
//! Why: pickle spends 20-80 ns on each such number (a big `int` goes
//! through `_PyLong_AsByteArray`), more than the task `x * x` itself, and
//! on two cores the workers' and the caller's per-item costs add up to the
//! map's time (py-W1: worker 33 ns to unpickle an item, 77 to pickle its
//! result; caller 20 to pickle, 50 to unpickle). Packed, each is a type
//! check and an 8-byte copy, or a number object made.

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

const INTS: u8 = b'q';
const CHUNK: u8 = b'P';
const FLOATS: u8 = b'd';

/// Lists shorter than this are pickled: packing saves nothing there.
pub(crate) const MIN_ITEMS: usize = 8;

/// The packed bytes of `list`, or `None` when it must be pickled.
pub(crate) fn pack(list: &Bound<'_, PyList>) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    // SAFETY: the items of a list we hold, with the interpreter lock held;
    // `pack_into` runs no Python code, so the list cannot change.
    let items = unsafe { items_of(list, 0, list.len()) }?;
    pack_into(&[items], &mut out).then_some(out)
}

/// The items `from..to` of `list` as borrowed pointers, if it has them.
///
/// # Safety
/// The slice is valid while `list` is alive and unchanged: use it with the
/// interpreter lock held and without running Python code.
pub(crate) unsafe fn items_of<'a>(
    list: &'a Bound<'_, PyList>,
    from: usize,
    to: usize,
) -> Option<&'a [*mut ffi::PyObject]> {
    if from > to || to > list.len() {
        return None;
    }
    // SAFETY: `ob_item` holds `len` live references (see above).
    unsafe {
        let items = (*list.as_ptr().cast::<ffi::PyListObject>()).ob_item;
        Some(if to == from { &[] } else { std::slice::from_raw_parts(items.add(from), to - from) })
    }
}

/// Whether `x` packs as an int (`Some(true)`: exactly an `int`), a float
/// (`Some(false)`: exactly a `float`) or not at all.
///
/// # Safety
/// `x` is a live object; call with the interpreter lock held.
unsafe fn kind_of(x: *mut ffi::PyObject) -> Option<bool> {
    // SAFETY: the caller's promise.
    let ty = unsafe { ffi::Py_TYPE(x) };
    if ty == &raw mut ffi::PyLong_Type {
        Some(true)
    } else if ty == &raw mut ffi::PyFloat_Type {
        Some(false)
    } else {
        None
    }
}

/// The 8 bytes of `x` if it packs as its list's kind (`ints` or floats:
/// the exact type, an `int` within 64 bits).
///
/// # Safety
/// As for [`kind_of`]; an exact `int` or `float` converts without running
/// Python code.
unsafe fn value_of(x: *mut ffi::PyObject, ints: bool) -> Option<[u8; 8]> {
    // SAFETY: the caller's promise.
    unsafe {
        if kind_of(x)? != ints {
            return None;
        }
        if !ints {
            return Some(ffi::PyFloat_AsDouble(x).to_le_bytes());
        }
        let mut overflow = 0;
        let v = ffi::PyLong_AsLongLongAndOverflow(x, &mut overflow);
        (overflow == 0).then(|| v.to_le_bytes())
    }
}

fn tag(ints: bool) -> u8 {
    if ints { INTS } else { FLOATS }
}

/// Appends the packed bytes of the items of `parts` (one list's worth,
/// in pieces) to `out`; `false` when they must be pickled (`out` then
/// holds a partial packing, which the caller drops). The items are live
/// objects that stay so (see [`items_of`]).
fn pack_into(parts: &[&[*mut ffi::PyObject]], out: &mut Vec<u8>) -> bool {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    let Some(&head) = parts.iter().find_map(|p| p.first()) else { return false };
    if n < MIN_ITEMS {
        return false;
    }
    // SAFETY: each pointer is a live object (the caller's promise) and the
    // lock is held; packing runs no Python code.
    let Some(ints) = (unsafe { kind_of(head) }) else { return false };
    out.reserve(1 + 8 * n);
    out.push(tag(ints));
    for &x in parts.iter().copied().flatten() {
        // SAFETY: as above.
        let Some(v) = (unsafe { value_of(x, ints) }) else { return false };
        out.extend_from_slice(&v);
    }
    true
}

/// Appends a chunk of `function` (pickled) called in `mode` on the items
/// of `parts`, packed, to `out`; `false` (and `out` as it was) when the
/// items must be pickled. `parts` as for [`pack_into`].
pub(crate) fn pack_chunk(
    function: &[u8],
    mode: u8,
    parts: &[&[*mut ffi::PyObject]],
    out: &mut Vec<u8>,
) -> bool {
    let Ok(len) = u32::try_from(function.len()) else { return false };
    let start = out.len();
    out.push(CHUNK);
    out.push(mode);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(function);
    if !pack_into(parts, out) {
        out.truncate(start);
        return false;
    }
    true
}

/// Whether a chunk's `bytes` are a packed chunk (rather than a pickle).
pub(crate) fn is_packed_chunk(bytes: &[u8]) -> bool {
    bytes.first() == Some(&CHUNK)
}

/// A packed chunk, read in place.
pub(crate) struct PackedChunk<'a> {
    /// The pickled function.
    pub(crate) function: &'a [u8],
    pub(crate) mode: u8,
    ints: bool,
    values: &'a [u8],
}

impl<'a> PackedChunk<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> PyResult<Self> {
        let bad = |what: &str| PyValueError::new_err(format!("packed chunk: {what}"));
        let [CHUNK, mode, l0, l1, l2, l3, rest @ ..] = bytes else {
            return Err(bad("too short for its header"));
        };
        let len = u32::from_le_bytes([*l0, *l1, *l2, *l3]) as usize;
        if len > rest.len() {
            return Err(bad(&format!("a function of {len} bytes in {} bytes", rest.len())));
        }
        let (function, items) = rest.split_at(len);
        let (ints, values) = values(items)?;
        Ok(PackedChunk { function, mode: *mode, ints, values })
    }

    pub(crate) fn len(&self) -> usize {
        self.values.len() / 8
    }

    /// Item `i` (below `len`) as a new object, or null with the error set.
    /// Call with the interpreter lock held.
    pub(crate) fn object(&self, i: usize) -> *mut ffi::PyObject {
        object(self.ints, &self.values[8 * i..8 * i + 8])
    }

    /// Items `range` as a new list.
    pub(crate) fn list<'py>(
        &self,
        py: Python<'py>,
        range: std::ops::Range<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        list_from(py, self.ints, &self.values[8 * range.start..8 * range.end])
    }
}

/// Packs a chunk's results one by one, as the worker's loop makes them
/// (`crate::worker`): the first result decides ints or floats.
pub(crate) struct Packer {
    /// The tag (once the first result came), then the values.
    out: Vec<u8>,
    /// Ints or floats, once the first result came.
    ints: Option<bool>,
}

impl Packer {
    pub(crate) fn new(n: usize) -> Self {
        let mut out = Vec::with_capacity(1 + 8 * n);
        out.push(0);
        Packer { out, ints: None }
    }

    /// Appends `x` if it packs as the results before it did; false (and
    /// nothing appended) otherwise. Call with the interpreter lock held,
    /// `x` a live object.
    pub(crate) fn push(&mut self, x: *mut ffi::PyObject) -> bool {
        // SAFETY: `x` is live and the lock held (the caller's promise).
        let Some(ints) = self.ints.or_else(|| unsafe { kind_of(x) }) else { return false };
        // SAFETY: as above.
        let Some(v) = (unsafe { value_of(x, ints) }) else { return false };
        if self.ints.is_none() {
            self.out[0] = tag(ints);
            self.ints = Some(ints);
        }
        self.out.extend_from_slice(&v);
        true
    }

    /// The packed results (from [`pack`]'s layout); `None` before the
    /// first result.
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        self.ints.is_some().then_some(&self.out[..])
    }

    /// The results so far as a new list.
    pub(crate) fn list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        match self.bytes() {
            Some(bytes) => unpack(py, bytes),
            None => Ok(PyList::empty(py)),
        }
    }
}

/// The pickled function, the mode and the items of a packed chunk.
pub(crate) fn unpack_chunk<'py>(
    py: Python<'py>,
    bytes: &[u8],
) -> PyResult<(Bound<'py, PyBytes>, u8, Bound<'py, PyList>)> {
    let chunk = PackedChunk::parse(bytes)?;
    let items = chunk.list(py, 0..chunk.len())?;
    Ok((PyBytes::new(py, chunk.function), chunk.mode, items))
}

/// Whether `bytes` are packed (rather than a pickle).
pub(crate) fn is_packed(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(&INTS | &FLOATS))
}

/// Whether packed `bytes` (from [`pack`]) hold ints (else floats), and
/// their values.
fn values(bytes: &[u8]) -> PyResult<(bool, &[u8])> {
    let Some((&tag, body)) = bytes.split_first() else {
        return Err(PyValueError::new_err("packed numbers: empty buffer"));
    };
    if tag != INTS && tag != FLOATS {
        return Err(PyValueError::new_err(format!("packed numbers: unknown tag {tag:#04x}")));
    }
    if !body.len().is_multiple_of(8) {
        return Err(PyValueError::new_err(format!(
            "packed numbers: {} bytes are not a whole number of 8-byte values",
            body.len()
        )));
    }
    Ok((tag == INTS, body))
}

/// The 8 bytes of a value as a new `int` or `float`, or null with the
/// error set. Call with the interpreter lock held.
fn object(ints: bool, v: &[u8]) -> *mut ffi::PyObject {
    let v: [u8; 8] = v.try_into().expect("8 bytes");
    // SAFETY: plain constructors, with the lock held (the caller's).
    unsafe {
        if ints {
            ffi::PyLong_FromLongLong(i64::from_le_bytes(v))
        } else {
            ffi::PyFloat_FromDouble(f64::from_le_bytes(v))
        }
    }
}

/// The list that `bytes` (from [`pack`]) hold.
pub(crate) fn unpack<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyList>> {
    let (ints, body) = values(bytes)?;
    list_from(py, ints, body)
}

/// A new list of the 8-byte `values`, ints or floats.
fn list_from<'py>(py: Python<'py>, ints: bool, body: &[u8]) -> PyResult<Bound<'py, PyList>> {
    let n = body.len() / 8;
    // SAFETY: a new list of `n` slots, each set once with a new reference;
    // a failed allocation leaves later slots NULL, which freeing the list
    // skips.
    unsafe {
        let list = Bound::from_owned_ptr_or_err(py, ffi::PyList_New(n as ffi::Py_ssize_t))?;
        for (i, v) in body.chunks_exact(8).enumerate() {
            let x = object(ints, v);
            if x.is_null() {
                return Err(PyErr::fetch(py));
            }
            ffi::PyList_SET_ITEM(list.as_ptr(), i as ffi::Py_ssize_t, x);
        }
        Ok(list.cast_into_unchecked())
    }
}

/// Packed numbers, checked, kept as bytes until each is made into an
/// object (`crate::store::Values`): the thread that read them needs no
/// interpreter lock, and the consumer makes each object just before it
/// takes it.
pub(crate) struct Numbers {
    ints: bool,
    /// The tag, then the values.
    bytes: Vec<u8>,
}

impl Numbers {
    /// The numbers packed in `bytes` (from [`pack`]).
    pub(crate) fn parse(bytes: Vec<u8>) -> PyResult<Self> {
        let ints = values(&bytes)?.0;
        Ok(Numbers { ints, bytes })
    }

    pub(crate) fn len(&self) -> usize {
        (self.bytes.len() - 1) / 8
    }

    /// Number `i` (below `len`) as a new object, or null with the error
    /// set. Call with the interpreter lock held.
    pub(crate) fn object(&self, i: usize) -> *mut ffi::PyObject {
        object(self.ints, &self.bytes[1 + 8 * i..9 + 8 * i])
    }
}

/// `_shoal.pack(list)`: the packed bytes of a list of plain numbers, or
/// `None` when it must be pickled (for the worker's results).
#[pyfunction(name = "pack")]
pub(crate) fn py_pack<'py>(list: &Bound<'py, PyList>) -> Option<Bound<'py, PyBytes>> {
    pack(list).map(|b| PyBytes::new(list.py(), &b))
}

/// `_shoal.unpack(data)`: the list that packed `bytes` hold (for the
/// worker's arguments).
#[pyfunction(name = "unpack")]
pub(crate) fn py_unpack<'py>(data: &Bound<'py, PyBytes>) -> PyResult<Bound<'py, PyList>> {
    unpack(data.py(), data.as_bytes())
}
