//! Backends loaded from a cdylib at run time (feature `plugin`, native
//! only).
//!
//! Any backend can be built as a shared library and loaded by a program
//! that never linked it:
//!
//! ```no_run
//! use shoal_core::{Pool, plugin};
//!
//! let backend = plugin::load_backend("target/debug/libshoal_threads.so".as_ref())?;
//! let pool = Pool::builder().workers(2).build_boxed(backend)?;
//! assert_eq!(pool.map(0..4u64, |x| x * x)?, vec![0, 1, 4, 9]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Writing a plugin
//!
//! A backend crate builds as a `cdylib` too and exports a constructor with
//! [`export_plugin!`](crate::export_plugin); it needs only shoal-core with
//! this feature (not abi_stable itself):
//!
//! ```no_run
//! shoal_core::export_plugin!(|_options: &str| {
//!     Ok(Box::new(shoal_threads::Threads::new()) as Box<dyn shoal_core::backend::Backend>)
//! });
//! ```
//!
//! # The FFI form
//!
//! A Rust trait object cannot cross a library boundary: host and plugin
//! are compiled separately, and nothing guarantees that they agree on
//! vtable layouts or on the layout of `String`. So the plugin layer
//! mirrors [`crate::backend`] in [`ffi`] with types whose layout
//! abi_stable can check:
//!
//! * `#[sabi_trait]` objects for everything with behaviour: [`FfiBackend`]
//!   and [`ffi::FfiWorker`] (implemented by the plugin),
//!   [`ffi::FfiReportSink`], [`ffi::FfiWorkerHooks`] and, per job,
//!   [`ffi::FfiTask`] (implemented by the host: the job's closure and the
//!   task's sink, in one allocation);
//! * `#[repr(C)]`/`#[repr(u8)]` data for the rest (`RString`, `RVec`,
//!   `ROption`, `RResult`): reports, messages, task errors;
//! * a root module, [`ffi::ShoalPlugin`]: the plugin ABI version, the
//!   shoal-core version, and the constructor `new_backend(options)`.
//!
//! [`export_backend`] wraps a plugin's `Box<dyn Backend>` into an
//! [`FfiBackendBox`]; the loader wraps that back into a `Box<dyn Backend>`
//! on the host side, so the pool never knows the difference. A call
//! through a sabi trait object costs about 2 ns; a job costs one host
//! allocation (its [`ffi::FfiTask`]) on top of the static path, plus the
//! two the plugin's side needs to rebuild a [`crate::backend::Job`].
//!
//! # Loading
//!
//! [`load_backend`] (or [`Plugin::load`] to make several backends):
//! 1. the file must exist ([`PluginErrorKind::NotFound`]) and start like
//!    a shared library (ELF, Mach-O or PE; else
//!    [`PluginErrorKind::NotAPlugin`]);
//! 2. it is opened with libloading and **never closed**
//!    ([`PluginErrorKind::Load`] if the dynamic loader refuses it);
//! 3. it must export abi_stable's root-module symbol, for the root module
//!    named `shoal_plugin` ([`PluginErrorKind::NotAPlugin`]);
//! 4. `abi_stable::library::lib_header_from_path` checks the abi_stable
//!    version, then `init_root_module` checks the shoal-core version
//!    (same major, and for 0.x the same minor) and the layout of every
//!    type reachable from the root module; then [`PLUGIN_ABI_VERSION`]
//!    must match exactly ([`PluginErrorKind::Incompatible`], with both
//!    versions in the message);
//! 5. `new_backend(options)` makes the backend
//!    ([`PluginErrorKind::Init`] if it fails or panics).
//!
//! `RootModule::load_from*` is not used: it caches one library per root
//! module type, so a second plugin would silently get the first one.
//!
//! # Caveats
//!
//! * **Never unloaded.** A loaded plugin stays in memory until the process
//!   exits: unloading a Rust cdylib whose threads registered thread-local
//!   destructors crashes, and its objects would dangle.
//! * **Two copies of shoal-core.** The plugin links its own shoal-core,
//!   with its own thread-locals. Host closures running on the plugin's
//!   threads use the *host's* in-task API ([`crate::task::progress`],
//!   [`crate::task::worker_id`], [`crate::task::with_state`]), so the
//!   host sets up its own thread-locals around each closure and around
//!   `worker_init`/`worker_exit` ([`ffi::FfiWorkerHooks`]); the plugin's
//!   copy only sees opaque jobs. Statics of any other crate are likewise
//!   duplicated, std included: on a plugin's thread the host's
//!   `std::thread::current().name()` is `None` (the plugin's std named the
//!   thread; the OS knows the name), and each side's panic hook prints its
//!   own panics.
//! * **Named functions** ([`crate::function`]) cross as
//!   [`crate::backend::Work::Named`] and are looked up in the *plugin's*
//!   registry, so they must be compiled into the plugin. A backend that
//!   runs closures (the threads plugin) never gets any: the pool runs
//!   `submit_fn`/`map_fn` as host closures there.
//! * **rayon copies.** A plugin that uses rayon has its own copy and its
//!   own global pool; never pass a `rayon::ThreadPool` across the
//!   boundary (it trips an assertion), and a library never calls
//!   `build_global`.
//! * **Panics never cross `extern "C"`** (since Rust 1.81 that aborts): a
//!   host closure's panic is caught on the host side and returned as a
//!   message, which the plugin re-raises with `resume_unwind` for its
//!   worker runtime to report; the plugin's methods catch their own panics
//!   and return errors, and the host reports such a worker as vanished.
//! * Host and plugin must be built with the same shoal-core (and the same
//!   [`PLUGIN_ABI_VERSION`]); any change of an FFI type fails the layout
//!   check at load time rather than misbehaving later.

pub mod ffi;
mod guest;
mod host;
mod load;
#[cfg(test)]
mod tests;

pub use ffi::{FfiBackend, FfiBackendBox};
pub use guest::export_backend;
pub use load::{Plugin, PluginError, PluginErrorKind};

use std::path::Path;

use crate::backend::Backend;

/// The version of the plugin ABI: the FFI types of [`ffi`] and what their
/// methods mean. Bumped on every change; host and plugin must agree.
pub const PLUGIN_ABI_VERSION: u32 = 2;

/// Loads the plugin at `path` and makes a backend with its default
/// options. See the [module docs](self) for the steps and the errors.
pub fn load_backend(path: &Path) -> Result<Box<dyn Backend>, PluginError> {
    Plugin::load(path)?.backend()
}

/// Like [`load_backend`], with an options string for the plugin's
/// constructor (the threads backend takes `key=value` pairs separated by
/// commas: `thread_name=render,pin_cores=true,stack_size=1048576`).
pub fn load_backend_with(path: &Path, options: &str) -> Result<Box<dyn Backend>, PluginError> {
    Plugin::load(path)?.backend_with(options)
}

/// Exports a backend constructor as this cdylib's shoal plugin.
///
/// Takes a function or closure `Fn(&str) -> Result<Box<dyn Backend>, String>`
/// that makes a backend from the options string the host passed to
/// [`load_backend_with`] (empty for [`load_backend`]). Use it once per
/// cdylib, at module level. Its panics are caught and reported to the host
/// as [`PluginErrorKind::Init`].
///
/// The export is a symbol with a fixed name: put it behind a feature
/// (backend-threads uses `plugin-export`) that only the cdylib build turns
/// on, or two exporting crates linked into one program collide.
///
/// ```no_run
/// shoal_core::export_plugin!(|_options: &str| {
///     Ok(Box::new(shoal_threads::Threads::new()) as Box<dyn shoal_core::backend::Backend>)
/// });
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($make:expr $(,)?) => {
        const _: () = {
            use $crate::plugin::__private as __shoal;

            extern "C" fn __shoal_new_backend(
                options: __shoal::RStr<'_>,
            ) -> __shoal::RResult<__shoal::FfiBackendBox, __shoal::RString> {
                __shoal::new_backend(options, $make)
            }

            fn __shoal_root_module() -> __shoal::ShoalPluginRef {
                __shoal::root_module(__shoal_new_backend)
            }

            extern "C" fn __shoal_load_root_module() -> __shoal::RootModuleResult {
                __shoal::call_root_module_loader(__shoal_root_module)
            }

            // The symbol abi_stable's loader looks up
            // (`abi_stable::library::ROOT_MODULE_LOADER_NAME`; shoal-core
            // checks at compile time that the two agree).
            #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
            static __SHOAL_PLUGIN_HEADER: __shoal::LibHeader =
                // SAFETY: the constructor returns the root module made by
                // `root_module`, a `ShoalPluginRef`, through abi_stable's
                // own loader wrapper.
                unsafe { __shoal::lib_header(__shoal_load_root_module) };
        };
    };
}

/// What [`export_plugin!`](crate::export_plugin) expands to; not a public
/// API.
#[doc(hidden)]
pub mod __private {
    pub use abi_stable::library::{LibHeader, RootModuleResult};
    pub use abi_stable::std_types::{RResult, RStr, RString};

    pub use super::ffi::{FfiBackendBox, ShoalPluginRef};
    pub use super::guest::new_backend;

    use abi_stable::library::{CheckTypeLayout, ROOT_MODULE_LOADER_NAME};
    use abi_stable::prefix_type::PrefixTypeTrait;

    use super::PLUGIN_ABI_VERSION;
    use super::ffi::{NewBackendFn, ShoalPlugin};

    /// The symbol name hard-coded in `export_plugin!`.
    const EXPORTED_NAME: &str = "_1as_0lib_1header_0root_bmodule_bloader";

    const fn same(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    const _: () = assert!(
        same(EXPORTED_NAME, ROOT_MODULE_LOADER_NAME),
        "abi_stable changed the name of its root module symbol: update export_plugin!"
    );

    /// The plugin's root module (made once per library).
    pub fn root_module(new_backend: NewBackendFn) -> ShoalPluginRef {
        ShoalPlugin {
            abi_version: PLUGIN_ABI_VERSION,
            core_version: RStr::from_str(env!("CARGO_PKG_VERSION")),
            new_backend,
        }
        .leak_into_prefix()
    }

    /// Runs the root module constructor, catching its panic.
    pub fn call_root_module_loader(make: fn() -> ShoalPluginRef) -> RootModuleResult {
        abi_stable::library::__call_root_module_loader(make)
    }

    /// The header abi_stable's loader finds under the exported symbol.
    ///
    /// # Safety
    ///
    /// `constructor` must return the result of [`call_root_module_loader`]
    /// (a `ShoalPluginRef`, erased).
    pub const unsafe fn lib_header(constructor: extern "C" fn() -> RootModuleResult) -> LibHeader {
        // SAFETY: the caller guarantees that `constructor` erases a
        // `ShoalPluginRef`, the module type given here.
        unsafe { LibHeader::from_constructor::<ShoalPluginRef>(constructor, CheckTypeLayout::Yes) }
    }
}
