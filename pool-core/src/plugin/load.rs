//! Loading a plugin: open the library, find and check its root module,
//! make a backend.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use abi_stable::library::{LibHeader, LibraryError, ROOT_MODULE_LOADER_NAME_WITH_NUL, RootModule};
use abi_stable::std_types::{RErr, ROk, RStr};

use crate::backend::Backend;

use super::PLUGIN_ABI_VERSION;
use super::ffi::ShoalPluginRef;
use super::host::import_backend;

/// What went wrong loading a plugin; see [`PluginError::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PluginErrorKind {
    /// There is no file at the path.
    NotFound,
    /// The file is not a shoal plugin: not a shared library at all, or a
    /// library that exports no shoal root module.
    NotAPlugin,
    /// A shoal plugin built against an incompatible shoal-core, plugin ABI
    /// or abi_stable: the types it was compiled with differ from the host's.
    Incompatible,
    /// The dynamic loader refused the library (missing dependency, wrong
    /// architecture, no permission, ...).
    Load,
    /// The plugin loaded but could not make a backend (its constructor
    /// returned an error, for example for bad options, or panicked).
    Init,
}

/// Why [`super::load_backend`] failed. The message names the path.
#[derive(Clone, Debug)]
pub struct PluginError {
    kind: PluginErrorKind,
    path: PathBuf,
    message: String,
}

impl PluginError {
    fn new(kind: PluginErrorKind, path: &Path, message: impl Into<String>) -> Self {
        PluginError { kind, path: path.to_path_buf(), message: message.into() }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> PluginErrorKind {
        self.kind
    }

    /// The path that was loaded.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot load the shoal plugin `{}`: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for PluginError {}

/// The shoal-core version of this host.
const HOST_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A loaded plugin library; it stays loaded until the process exits.
/// Make as many backends from it as you like.
#[derive(Clone)]
pub struct Plugin {
    module: ShoalPluginRef,
    path: Arc<Path>,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .field("core_version", &self.core_version())
            .finish()
    }
}

impl Plugin {
    /// Loads the plugin library at `path` and checks that it is a shoal
    /// plugin compatible with this host. Loading the same file again is
    /// cheap (the library is opened once and never unloaded).
    pub fn load(path: &Path) -> Result<Plugin, PluginError> {
        let header = open(path)?;
        let module = check(path, header)?;
        Ok(Plugin { module, path: path.into() })
    }

    /// The path the plugin was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shoal-core version the plugin was built with.
    pub fn core_version(&self) -> &'static str {
        self.module.core_version().as_str()
    }

    /// Makes a backend with the plugin's default options.
    pub fn backend(&self) -> Result<Box<dyn Backend>, PluginError> {
        self.backend_with("")
    }

    /// Makes a backend from an options string; its format is the plugin's
    /// (the threads backend takes `key=value` pairs separated by commas).
    pub fn backend_with(&self, options: &str) -> Result<Box<dyn Backend>, PluginError> {
        match (self.module.new_backend())(RStr::from_str(options)) {
            ROk(ffi) => Ok(import_backend(ffi)),
            RErr(e) => Err(PluginError::new(PluginErrorKind::Init, &self.path, e.into_string())),
        }
    }
}

/// Reads the first bytes of the file: is it a shared library of any
/// platform (ELF, Mach-O, PE)? Distinguishes "not a library at all" from
/// "the loader refused it".
fn looks_like_a_library(path: &Path) -> std::io::Result<bool> {
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path)?;
    let mut n = 0;
    while n < magic.len() {
        match file.read(&mut magic[n..])? {
            0 => return Ok(false),
            k => n += k,
        }
    }
    Ok(matches!(
        magic,
        [0x7f, b'E', b'L', b'F']
            | [0xfe, 0xed, 0xfa, 0xce | 0xcf]
            | [0xce | 0xcf, 0xfa, 0xed, 0xfe]
            | [0xca, 0xfe, 0xba, 0xbe]
            | [b'M', b'Z', _, _]
    ))
}

/// Opens the library (never to close it) and finds its abi_stable header.
fn open(path: &Path) -> Result<&'static LibHeader, PluginError> {
    use PluginErrorKind::*;
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => PluginError::new(NotFound, path, "no such file"),
        _ => PluginError::new(Load, path, e.to_string()),
    })?;
    if meta.is_dir() {
        return Err(PluginError::new(
            NotAPlugin,
            path,
            "this is a directory, not a shared library",
        ));
    }
    match looks_like_a_library(path) {
        Ok(true) => {}
        Ok(false) => {
            return Err(PluginError::new(NotAPlugin, path, "this file is not a shared library"));
        }
        Err(e) => return Err(PluginError::new(Load, path, e.to_string())),
    }
    // A bare file name would make the dynamic loader search its paths.
    let dotted;
    let open_path = if path.parent().is_some_and(|p| p.as_os_str().is_empty()) {
        dotted = Path::new(".").join(path);
        &dotted
    } else {
        path
    };
    // SAFETY: opening a library runs its initializers; loading a plugin
    // means trusting its code, which is the caller's decision.
    let lib = unsafe { libloading::Library::new(open_path) }
        .map_err(|e| PluginError::new(Load, path, e.to_string()))?;
    // SAFETY: only the symbol's address is read, never dereferenced.
    let has_root =
        unsafe { lib.get::<*const u8>(ROOT_MODULE_LOADER_NAME_WITH_NUL.as_bytes()) }.is_ok();
    // Never unload: a Rust library's thread-local destructors and the
    // objects it handed out would dangle. This handle keeps it loaded.
    std::mem::forget(lib);
    if !has_root {
        return Err(PluginError::new(
            NotAPlugin,
            path,
            "the library exports no abi_stable root module, so it is not a shoal plugin",
        ));
    }
    abi_stable::library::lib_header_from_path(open_path).map_err(|e| library_error(path, e, None))
}

/// Checks the root module: interface name, versions, layouts.
fn check(path: &Path, header: &'static LibHeader) -> Result<ShoalPluginRef, PluginError> {
    let consts = header.root_mod_consts();
    let name = consts.name().as_str();
    if name != ShoalPluginRef::NAME {
        return Err(PluginError::new(
            PluginErrorKind::NotAPlugin,
            path,
            format!("the library is an abi_stable plugin of `{name}`, not a shoal plugin"),
        ));
    }
    let plugin_version = header.version_strings().version.as_str();
    let module = header
        .init_root_module::<ShoalPluginRef>()
        .map_err(|e| library_error(path, e, Some(plugin_version)))?;
    let abi = module.abi_version();
    if abi != PLUGIN_ABI_VERSION {
        return Err(PluginError::new(
            PluginErrorKind::Incompatible,
            path,
            format!(
                "the plugin speaks shoal plugin ABI {abi} (shoal-core {plugin_version}), this \
                 host speaks ABI {PLUGIN_ABI_VERSION} (shoal-core {HOST_VERSION}); rebuild the \
                 plugin against this shoal-core"
            ),
        ));
    }
    Ok(module)
}

pub(super) fn library_error(
    path: &Path,
    e: LibraryError,
    plugin_version: Option<&str>,
) -> PluginError {
    use PluginErrorKind::*;
    let versions = || match plugin_version {
        Some(v) => format!(
            "the plugin was built with shoal-core {v}, this host is shoal-core {HOST_VERSION}"
        ),
        None => format!("this host is shoal-core {HOST_VERSION}"),
    };
    let trim = |s: String| s.trim().to_string();
    match e {
        LibraryError::OpenError { err, .. } => PluginError::new(Load, path, err.to_string()),
        LibraryError::GetSymbolError { .. } => PluginError::new(
            NotAPlugin,
            path,
            "the library exports no abi_stable root module, so it is not a shoal plugin",
        ),
        LibraryError::IncompatibleVersionNumber { expected_version, actual_version, .. } => {
            PluginError::new(
                Incompatible,
                path,
                format!(
                    "the plugin was built with shoal-core {actual_version}, which is not \
                     compatible with this host's shoal-core {expected_version}"
                ),
            )
        }
        LibraryError::InvalidAbiHeader(h) => PluginError::new(
            Incompatible,
            path,
            format!(
                "the plugin was built with abi_stable ABI {}.{}, this host uses {}.{}",
                h.abi_major,
                h.abi_minor,
                abi_stable::library::AbiHeader::VALUE.abi_major,
                abi_stable::library::AbiHeader::VALUE.abi_minor,
            ),
        ),
        LibraryError::RootModule { err, .. } => PluginError::new(
            Init,
            path,
            format!("the plugin's root module failed: {}", trim(err.to_string())),
        ),
        e @ (LibraryError::AbiInstability(_)
        | LibraryError::InvalidCAbi { .. }
        | LibraryError::ParseVersionError(_)) => PluginError::new(
            Incompatible,
            path,
            format!("{}; the types differ:\n{}", versions(), trim(e.to_string())),
        ),
        e => PluginError::new(Load, path, trim(e.to_string())),
    }
}
