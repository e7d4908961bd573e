//! Task functions in a shared library, for the standalone worker
//! executable `shoal-worker --library PATH`.
//!
//! The library exports each function under a C symbol with
//! [`export_functions!`](crate::export_functions):
//!
//! ```no_run
//! use shoal_core::function::Function;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//! fn text_len(s: String) -> usize {
//!     s.len()
//! }
//! static SQUARE: Function<u64, u64> = Function::new("square", square);
//! static TEXT_LEN: Function<String, usize> = Function::new("text_len", text_len);
//!
//! shoal_process::export_functions!(square = SQUARE, text_len = TEXT_LEN);
//! ```
//!
//! makes `shoal_fn_square` and `shoal_fn_text_len`. A function's symbol is
//! `shoal_fn_` followed by its registered name with every character other
//! than `A-Z a-z 0-9` replaced by `_` (`"stats.mean"` → `shoal_fn_stats_mean`);
//! the macro checks that the name it is given matches. The worker looks a
//! symbol up the first time a job names its function.
//!
//! # The C signature
//!
//! ```c
//! typedef struct {
//!     uint64_t worker_id;
//!     uint64_t task_id;
//!     /* kind 0: progress (fraction), 1: log (UTF-8 bytes), 2: data (bytes) */
//!     void (*message)(uint8_t kind, float fraction, const uint8_t *bytes, size_t len);
//! } shoal_task_context;
//!
//! int32_t shoal_fn_NAME(const shoal_task_context *ctx,
//!                       const uint8_t *arg, size_t arg_len,
//!                       uint8_t **out, size_t *out_len);
//! ```
//!
//! takes a serialized chunk (see `shoal_core::function`) and writes a buffer
//! allocated with C `malloc` to `*out`, which the caller frees with C
//! `free`: the serialized results when it returns 0, a UTF-8 error message
//! when it returns 1. The context carries the worker and task ids and a
//! callback for the task's messages, because the library has its own copy
//! of `shoal_core` (and of its thread-locals): inside the function,
//! `shoal_core::task::{worker_id, progress, log, data}` work as usual
//! (`with_state` does not: worker state lives in the worker program).
//! Panics never cross the boundary.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex};

use shoal_core::backend::{TaskMessage, TaskSink};
use shoal_core::error::TaskError;
use shoal_core::function::{NamedFunction, Registry};
use shoal_core::worker::panic_message;
use shoal_core::{TaskId, WorkerId};

/// The callback for a task's messages (kind 0 progress, 1 log, 2 data).
pub type MessageFn = extern "C" fn(kind: u8, fraction: f32, bytes: *const u8, len: usize);

/// What an exported function learns about the task it runs.
#[repr(C)]
pub struct TaskContext {
    /// The worker's id.
    pub worker_id: u64,
    /// The task's id.
    pub task_id: u64,
    /// Forwards the task's messages to the worker program.
    pub message: MessageFn,
}

/// The C signature of an exported function.
pub type ExportedFn = unsafe extern "C" fn(
    ctx: *const TaskContext,
    arg: *const u8,
    arg_len: usize,
    out: *mut *mut u8,
    out_len: *mut usize,
) -> i32;

/// The worker program's end of [`MessageFn`]: hands the message to the
/// task running on this thread.
extern "C" fn forward_message(kind: u8, fraction: f32, bytes: *const u8, len: usize) {
    let _ = catch_unwind(|| {
        let bytes = if len == 0 || bytes.is_null() {
            Vec::new()
        } else {
            // SAFETY: the library passes `len` readable bytes.
            unsafe { std::slice::from_raw_parts(bytes, len) }.to_vec()
        };
        match kind {
            0 => shoal_core::task::progress(fraction),
            1 => shoal_core::task::log(String::from_utf8_lossy(&bytes).into_owned()),
            _ => shoal_core::task::data(bytes),
        }
    });
}

/// The library's end: a task sink that calls back into the worker program.
struct CallbackSink(MessageFn);

impl TaskSink for CallbackSink {
    fn message(&self, message: TaskMessage) {
        match message {
            TaskMessage::Progress(f) => (self.0)(0, f, std::ptr::null(), 0),
            TaskMessage::Log(text) => (self.0)(1, 0.0, text.as_ptr(), text.len()),
            TaskMessage::Data(d) => (self.0)(2, 0.0, d.as_ptr(), d.len()),
        }
    }
    fn result_bytes(&self, _bytes: Vec<u8>) -> Result<(), TaskError> {
        Err(TaskError::serialization("exported functions return their result directly"))
    }
}

/// The symbol a function named `name` is exported under.
pub fn symbol_of(name: &str) -> String {
    let clean: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("shoal_fn_{clean}")
}

/// Exports named functions from a `cdylib` for `shoal-worker --library`:
/// `export_functions!(square = SQUARE, ...)` where `SQUARE` is a
/// `static Function<A, R>` registered as `"square"`.
#[macro_export]
macro_rules! export_functions {
    ($($symbol:ident = $function:path),* $(,)?) => {
        $(
            const _: () = {
                /// A shoal task function, exported for `shoal-worker`.
                ///
                /// # Safety
                /// `arg` points to `arg_len` readable bytes; `out` and
                /// `out_len` are writable.
                #[unsafe(export_name = concat!("shoal_fn_", stringify!($symbol)))]
                pub unsafe extern "C" fn exported(
                    ctx: *const $crate::library::TaskContext,
                    arg: *const u8,
                    arg_len: usize,
                    out: *mut *mut u8,
                    out_len: *mut usize,
                ) -> i32 {
                    // SAFETY: forwarded from our own caller's contract.
                    unsafe {
                        $crate::library::call_exported(
                            ctx,
                            &$function,
                            stringify!($symbol),
                            arg,
                            arg_len,
                            out,
                            out_len,
                        )
                    }
                }
            };
        )*
    };
}

/// The body of every exported function; see [`export_functions!`].
///
/// # Safety
/// `ctx` is null or valid; `arg` points to `arg_len` readable bytes; `out`
/// and `out_len` are writable.
#[doc(hidden)]
pub unsafe fn call_exported(
    ctx: *const TaskContext,
    f: &dyn NamedFunction,
    symbol: &str,
    arg: *const u8,
    arg_len: usize,
    out: *mut *mut u8,
    out_len: *mut usize,
) -> i32 {
    // The library has its own copy of std and so its own panic hook: keep
    // task panics quiet here too (they travel to the parent as errors).
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(crate::child::quiet_task_panics);
    let result = catch_unwind(AssertUnwindSafe(|| {
        if symbol_of(f.name()) != format!("shoal_fn_{symbol}") {
            return Err(format!(
                "`{}` is exported as `{symbol}`; its symbol must be `{}`",
                f.name(),
                symbol_of(f.name())
            ));
        }
        let args = if arg_len == 0 {
            &[][..]
        } else {
            // SAFETY: the caller passes `arg_len` readable bytes at `arg`.
            unsafe { std::slice::from_raw_parts(arg, arg_len) }
        };
        // SAFETY: the caller passes a valid context or null.
        match unsafe { ctx.as_ref() } {
            Some(ctx) => shoal_core::task::run_as(
                WorkerId(ctx.worker_id),
                TaskId(ctx.task_id),
                Arc::new(CallbackSink(ctx.message)),
                || f.call_chunk(args),
            ),
            None => f.call_chunk(args),
        }
    }))
    .unwrap_or_else(|p| Err(format!("panic in an exported function: {}", panic_message(&*p))));
    let (code, bytes) = match result {
        Ok(b) => (0, b),
        Err(e) => (1, e.into_bytes()),
    };
    // SAFETY: malloc of at least one byte; the copy stays inside both
    // buffers; the caller frees the buffer with free(3).
    unsafe {
        let buf = libc::malloc(bytes.len().max(1)).cast::<u8>();
        if buf.is_null() {
            *out = std::ptr::null_mut();
            *out_len = 0;
            return 2;
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, bytes.len());
        *out = buf;
        *out_len = bytes.len();
    }
    code
}

/// A function found in a library.
struct LibraryFunction {
    name: &'static str,
    call: ExportedFn,
}

impl NamedFunction for LibraryFunction {
    fn name(&self) -> &'static str {
        self.name
    }

    fn call_chunk(&self, arguments: &[u8]) -> Result<Vec<u8>, String> {
        let mut out: *mut u8 = std::ptr::null_mut();
        let mut out_len = 0usize;
        // SAFETY: the symbol has the documented signature (the library was
        // built with `export_functions!`); the argument buffer is valid for
        // its length; the output pointers are ours.
        let ctx = TaskContext {
            worker_id: shoal_core::task::worker_id().map_or(u64::MAX, |w| w.0),
            task_id: shoal_core::task::task_id().map_or(u64::MAX, |t| t.0),
            message: forward_message,
        };
        let code = unsafe {
            (self.call)(&ctx, arguments.as_ptr(), arguments.len(), &mut out, &mut out_len)
        };
        if out.is_null() {
            return Err(format!("`{}` returned no buffer (code {code})", self.name));
        }
        // SAFETY: the library malloc'ed `out_len` bytes at `out` for us.
        let bytes = unsafe { std::slice::from_raw_parts(out, out_len) }.to_vec();
        // SAFETY: the buffer came from malloc and is freed once.
        unsafe { libc::free(out.cast()) };
        match code {
            0 => Ok(bytes),
            _ => Err(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }
}

/// A registry that finds functions in the shared library at `path`. The
/// library stays loaded for the life of the process (Rust libraries must
/// never be unloaded).
pub fn library_registry(path: &Path) -> Result<Registry, String> {
    if !path.exists() {
        return Err(format!("no library at {}", path.display()));
    }
    // SAFETY: loading runs the library's initialisers; the library is the
    // one the user named for this worker.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    let cache: Mutex<HashMap<String, &'static dyn NamedFunction>> = Mutex::new(HashMap::new());
    let resolver = Arc::new(move |name: &str| {
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = cache.get(name) {
            return Some(*f);
        }
        let symbol = symbol_of(name);
        // SAFETY: symbols named `shoal_fn_*` are made by `export_functions!`
        // with the `ExportedFn` signature.
        let call = unsafe { lib.get::<ExportedFn>(symbol.as_bytes()) }.ok().map(|s| *s)?;
        let name: &'static str = Box::leak(name.to_string().into_boxed_str());
        let f: &'static dyn NamedFunction = Box::leak(Box::new(LibraryFunction { name, call }));
        cache.insert(name.to_string(), f);
        Some(f)
    });
    Ok(Registry::new().with_resolver(resolver))
}
