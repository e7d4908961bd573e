//! The `threads-plugin` implementation: shoal's threads backend loaded at run
//! time from its cdylib (`shoal_core::plugin`).
//!
//! The library is looked for at `$SHOAL_THREADS_PLUGIN` if set, else in the
//! cargo profile directory of the running executable
//! (`target/<profile>/libshoal_threads.so`; an executable in
//! `target/<profile>/deps/`, like a criterion bench, looks one level up, not
//! at the copy in `deps/` that cargo builds without `plugin-export`). Build
//! it with:
//!
//! ```text
//! cargo build -p shoal-threads --release --features plugin-export
//! ```

use std::path::PathBuf;
use std::sync::OnceLock;

use shoal_core::backend::Backend;
use shoal_core::plugin::Plugin;

use crate::Unavailable;

/// Overrides where the plugin library is looked for.
pub const PATH_VARIABLE: &str = "SHOAL_THREADS_PLUGIN";

/// The command that builds the plugin library.
pub const BUILD_COMMAND: &str = "cargo build -p shoal-threads --release --features plugin-export";

/// Where the threads plugin library should be (it may not exist).
pub fn library_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(PATH_VARIABLE) {
        return Some(PathBuf::from(path));
    }
    let file =
        format!("{}shoal_threads{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?;
    if matches!(dir.file_name().and_then(|n| n.to_str()), Some("deps" | "examples")) {
        dir = dir.parent()?;
    }
    Some(dir.join(file))
}

/// Makes a threads backend from the plugin library. The library is loaded
/// and checked once per process ([`Plugin::load`], the first step of
/// `shoal_core::plugin::load_backend`); each call makes a fresh backend
/// from it, as every pool needs its own. A missing library or a failed
/// load is [`Unavailable`] with a one-line reason.
pub fn load() -> Result<Box<dyn Backend>, Unavailable> {
    load_with("")
}

/// [`load`] with the threads backend's options (`pin_cores=true`, ...).
pub fn load_with(options: &str) -> Result<Box<dyn Backend>, Unavailable> {
    static PLUGIN: OnceLock<Result<Plugin, Unavailable>> = OnceLock::new();
    let plugin = PLUGIN.get_or_init(|| {
        let Some(path) = library_path() else {
            return Err(Unavailable("threads-plugin: cannot locate the target directory".into()));
        };
        if !path.is_file() {
            return Err(Unavailable(format!(
                "threads-plugin: {} not found (build it with `{BUILD_COMMAND}`, or set {PATH_VARIABLE})",
                path.display()
            )));
        }
        Plugin::load(&path).map_err(|e| Unavailable(format!("threads-plugin: {e}")))
    });
    let plugin = plugin.as_ref().map_err(Clone::clone)?;
    plugin.backend_with(options).map_err(|e| Unavailable(format!("threads-plugin: {e}")))
}
