//! Named functions: how a task names its function so that the same call
//! site runs in-process and in another process.
//!
//! A closure cannot cross a process boundary, but a function registered
//! under a name can: the parent sends the name and the serialized argument,
//! and the worker (the same program re-executed, or a worker executable)
//! looks the name up in its [`Registry`].
//!
//! ```
//! use shoal_core::function::{Function, Registry};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//! static SQUARE: Function<u64, u64> = Function::new("square", square);
//!
//! // In-process, a `Function` is a plain call:
//! assert_eq!(SQUARE.call(7), 49);
//! // In a worker, the registry runs it on serialized chunks of arguments:
//! let registry = Registry::new().with(&SQUARE).unwrap();
//! let f = registry.get("square").unwrap();
//! let out = f.call_chunk(&shoal_core::function::encode_chunk(&[2u64, 3]).unwrap());
//! let results: Vec<Result<u64, String>> = shoal_core::function::decode_results(&out.unwrap()).unwrap();
//! assert_eq!(results, vec![Ok(4), Ok(9)]);
//! ```
//!
//! # The chunk convention
//!
//! Every named job carries a *chunk*: the argument bytes are the postcard
//! encoding of `Vec<A>`; the result bytes are a `u64` little-endian count
//! of values, that many postcard values of `R` (the items that returned,
//! in order), then the postcard encoding of `Vec<(u64, String)>`: the
//! index and panic message of each item that panicked, indices strictly
//! increasing. A single task is a chunk of one. Workers of other languages
//! follow the same layout with their own serialization of the items.
//!
//! Fixed-width numbers are the exception to postcard: when `A` (or `R`) is
//! one of `u16`–`u128`, `i16`–`i128`, `f32`, `f64`, `usize` or `isize`, its
//! items are written as little-endian bytes of the type's width (64 bits
//! for `usize` and `isize`), the arguments' count still a varint. Both
//! sides hold the same `Function<A, R>`, so the type alone decides; a
//! chunk of 100 000 `u64` is then a copy rather than 200 000 varint steps.
//! [`decode_results`] gives one `Result` per item; [`decode_results_split`]
//! the values and the sparse errors, without a `Result` per item.

mod chunk;
mod fixed;

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use chunk::Split;

/// A function with a name, callable in-process and by name in a worker.
pub struct Function<A, R> {
    name: &'static str,
    f: fn(A) -> R,
}

impl<A, R> Function<A, R> {
    /// Names `f`. Names must be unique within a [`Registry`].
    pub const fn new(name: &'static str, f: fn(A) -> R) -> Self {
        Function { name, f }
    }
    /// The function's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// Calls the function in-process.
    pub fn call(&self, a: A) -> R {
        (self.f)(a)
    }
    /// The plain function pointer.
    pub fn as_fn(&self) -> fn(A) -> R {
        self.f
    }
}

impl<A, R> fmt::Debug for Function<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Function({})", self.name)
    }
}

/// Serializes a chunk of arguments (the JOB payload of a named function).
pub fn encode_chunk<A: Serialize + 'static>(items: &[A]) -> Result<Vec<u8>, String> {
    chunk::encode_arguments(items).map_err(|e| format!("cannot serialize the arguments: {e}"))
}

/// [`encode_chunk`] into `out`, replacing its contents: reusing one buffer
/// for many chunks saves faulting in fresh pages for each.
pub fn encode_chunk_into<A: Serialize + 'static>(
    items: &[A],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    chunk::encode_arguments_into(items, out)
        .map_err(|e| format!("cannot serialize the arguments: {e}"))
}

/// Reads the results of a chunk (the DONE payload of a named function):
/// one entry per item, `Err` holding the panic message of that item.
/// Trailing bytes mean the two sides disagree on the type: an error rather
/// than a silent misreading.
pub fn decode_results<R: DeserializeOwned + 'static>(
    bytes: &[u8],
) -> Result<Vec<Result<R, String>>, String> {
    chunk::decode_all(bytes).map_err(|e| format!("cannot deserialize the results: {e}"))
}

/// Reads the results of a chunk as the values of the items that returned,
/// in order, and `(index in the chunk, panic message)` of those that
/// panicked, indices strictly increasing. Cheaper than [`decode_results`]
/// when the caller keeps values and errors apart anyway.
pub fn decode_results_split<R: DeserializeOwned + 'static>(
    bytes: &[u8],
) -> Result<Split<R>, String> {
    chunk::decode_split(bytes).map_err(|e| format!("cannot deserialize the results: {e}"))
}

/// Reads the serialized results of a chunk (see [`decode_results`]).
pub type DecodeResults<R> = fn(&[u8]) -> Result<Vec<Result<R, String>>, String>;

/// A function as a worker runs it: bytes in, bytes out.
pub trait NamedFunction: Send + Sync {
    /// The registered name.
    fn name(&self) -> &'static str;
    /// Runs the function on every argument of a serialized chunk, catching a
    /// panic per item; returns the serialized results. `Err` when the
    /// arguments cannot be decoded or a result cannot be encoded.
    fn call_chunk(&self, arguments: &[u8]) -> Result<Vec<u8>, String>;
}

impl<A, R> NamedFunction for Function<A, R>
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn call_chunk(&self, arguments: &[u8]) -> Result<Vec<u8>, String> {
        chunk::run(arguments, self.f).map_err(|e| match e {
            chunk::RunError::Arguments(e) => {
                format!("cannot deserialize the arguments of `{}`: {e}", self.name)
            }
            chunk::RunError::Result(e) => {
                format!("cannot serialize the result of `{}`: {e}", self.name)
            }
        })
    }
}

/// Finds functions the registry does not list (for example symbols of a
/// shared library, looked up on first use).
pub type Resolver =
    std::sync::Arc<dyn Fn(&str) -> Option<&'static dyn NamedFunction> + Send + Sync>;

/// The functions a worker can run, by name.
#[derive(Default, Clone)]
pub struct Registry {
    functions: HashMap<&'static str, &'static dyn NamedFunction>,
    resolver: Option<Resolver>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.functions.keys().collect();
        names.sort();
        f.debug_struct("Registry").field("functions", &names).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a function; a second function of the same name is an error.
    pub fn with(mut self, f: &'static dyn NamedFunction) -> Result<Self, String> {
        if self.functions.insert(f.name(), f).is_some() {
            return Err(format!("two functions are registered as `{}`", f.name()));
        }
        Ok(self)
    }

    /// Asks `resolver` for names the registry does not list.
    pub fn with_resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// The function registered as `name`, or found by the resolver.
    pub fn get(&self, name: &str) -> Option<&'static dyn NamedFunction> {
        self.functions.get(name).copied().or_else(|| self.resolver.as_ref().and_then(|r| r(name)))
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.functions.keys().copied().collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn half(x: u32) -> u32 {
        assert!(x.is_multiple_of(2), "odd {x}");
        x / 2
    }
    static HALF: Function<u32, u32> = Function::new("half", half);

    #[test]
    fn chunk_round_trip_with_a_panicking_item() {
        let r = Registry::new().with(&HALF).unwrap();
        let out = r.get("half").unwrap().call_chunk(&encode_chunk(&[4u32, 3, 8]).unwrap()).unwrap();
        let res: Vec<Result<u32, String>> = decode_results(&out).unwrap();
        assert_eq!(res[0], Ok(2));
        assert!(res[1].as_ref().unwrap_err().contains("odd 3"));
        assert_eq!(res[2], Ok(4));
    }

    #[test]
    fn bad_arguments_and_duplicates_are_errors() {
        let r = Registry::new().with(&HALF).unwrap();
        let e = r.get("half").unwrap().call_chunk(&[0xff, 0xff, 0xff]).unwrap_err();
        assert!(e.contains("cannot deserialize the arguments of `half`"), "{e}");
        assert!(r.clone().with(&HALF).unwrap_err().contains("`half`"));
        assert_eq!(r.names(), vec!["half"]);
        assert!(r.get("nope").is_none());
    }
}
