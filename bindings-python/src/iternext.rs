//! The iterator slot of [`Batch`]: a value that is ready is returned
//! without pyo3's method trampoline.
//!
//! `sum(pool.imap(f, items))` and `for x in pool.imap(...)` call the
//! type's `tp_iternext` once per result. pyo3 fills that slot with a
//! trampoline that, around our `__next__`, counts the thread's attachment
//! in a thread-local (a `__tls_get_addr` call each way, the module being
//! loaded at run time), drains pyo3's deferred reference counts and
//! catches panics: about half of the consumer's time per result in py-W6
//! (10^6 results of `x + 1`, perf).
//!
//! [`install`] puts [`next_ready`] in the slot instead, and keeps pyo3's
//! function: `next_ready` takes the next result of the chunk being read
//! when it is a plain value ([`Batch::next_ready`]: no lock but the
//! interpreter's, no Python code, nothing that panics) and hands every
//! other case (the chunk is read out, a failure, the end, a timeout, a
//! batch of `(index, ok, value)` tuples) to pyo3's function, which does
//! everything `__next__` did before. The two paths take results from the
//! same place, so mixing `next(it)`, `it.next(timeout)` and `for` loops,
//! breaking out of one and going on later, sees every result once and in
//! order, as before.
//!
//! Why patching the slot is sound:
//! - CPython calls `tp_iternext` with the interpreter lock held, on an
//!   object of the type (`Py_TYPE(obj)->tp_iternext`), so `obj` is a
//!   `Batch` and the lock is held for the whole call;
//! - `Batch` is a heap type made by pyo3 and never subclassed (`frozen`,
//!   not `subclass`); the slot is set once, at module initialisation, before
//!   any `Batch` exists, and `PyType_Modified` drops the type's caches;
//! - the explicit method `Batch.__next__` (a slot wrapper that captured
//!   pyo3's function when the type was made) still calls pyo3's function,
//!   which is correct, only slower.

use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::batch::Batch;

/// pyo3's `tp_iternext` of [`Batch`], which [`next_ready`] falls back to.
static PYO3_NEXT: OnceLock<ffi::iternextfunc> = OnceLock::new();

/// Puts [`next_ready`] in `Batch`'s iterator slot (once).
pub(crate) fn install(ty: &Bound<'_, PyType>) -> PyResult<()> {
    if PYO3_NEXT.get().is_some() {
        return Ok(()); // installed already
    }
    let t = ty.as_type_ptr();
    // SAFETY: `t` is the live type object of `Batch`; the interpreter
    // lock (held: `ty` is bound) serializes this with any reader of the
    // slot.
    unsafe {
        let Some(pyo3_next) = (*t).tp_iternext else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "shoal: the batch type has no iterator slot",
            ));
        };
        PYO3_NEXT.get_or_init(|| pyo3_next);
        (*t).tp_iternext = Some(next_ready);
        ffi::PyType_Modified(t);
    }
    Ok(())
}

/// The slot: the next ready value, else pyo3's `__next__`.
unsafe extern "C" fn next_ready(obj: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: see the module docs: CPython holds the interpreter lock
    // and `obj` is a `Batch`; neither reference escapes this call.
    let py = unsafe { Python::assume_attached() };
    let batch = unsafe { Bound::ref_from_ptr(py, &obj).cast_unchecked::<Batch>() }.get();
    if let Some(v) = batch.next_ready(py) {
        return v;
    }
    match PYO3_NEXT.get() {
        // SAFETY: pyo3's own slot function for this type and object.
        Some(pyo3_next) => unsafe { pyo3_next(obj) },
        None => std::ptr::null_mut(), // unreachable: `install` set it first
    }
}
