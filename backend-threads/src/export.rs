//! The threads backend as a shoal plugin (feature `plugin-export`): the
//! cdylib exports a constructor that [`shoal_core::plugin::load_backend`]
//! finds.
//!
//! Options (for `load_backend_with`) are `key=value` pairs separated by
//! commas; the empty string means the defaults:
//!
//! | key | value | meaning |
//! |---|---|---|
//! | `thread_name` | text | [`Threads::thread_name`] |
//! | `pin_cores` | `true`/`false` | [`Threads::pin_cores`] |
//! | `stack_size` | bytes | [`Threads::stack_size`] |

use shoal_core::backend::Backend;

use crate::Threads;

/// Makes the backend from the host's options string.
fn from_options(options: &str) -> Result<Box<dyn Backend>, String> {
    let mut threads = Threads::new();
    for pair in options.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| format!("threads plugin: expected `key=value`, got `{pair}`"))?;
        threads = match key {
            "thread_name" => threads.thread_name(value),
            "pin_cores" => threads.pin_cores(value.parse().map_err(|_| {
                format!("threads plugin: `pin_cores` must be `true` or `false`, got `{value}`")
            })?),
            "stack_size" => threads.stack_size(value.parse().map_err(|_| {
                format!("threads plugin: `stack_size` must be a number of bytes, got `{value}`")
            })?),
            _ => {
                return Err(format!(
                    "threads plugin: unknown option `{key}` (known: thread_name, pin_cores, \
                     stack_size)"
                ));
            }
        };
    }
    Ok(Box::new(threads))
}

shoal_core::export_plugin!(from_options);

#[cfg(test)]
mod tests {
    use super::from_options;

    #[test]
    fn options_parse() {
        assert!(from_options("").is_ok());
        assert!(from_options("thread_name=render, pin_cores=false,stack_size=1048576").is_ok());
        let e = from_options("colour=blue").err().unwrap();
        assert!(e.contains("unknown option `colour`"), "{e}");
        let e = from_options("pin_cores=maybe").err().unwrap();
        assert!(e.contains("pin_cores"), "{e}");
        let e = from_options("stack_size").err().unwrap();
        assert!(e.contains("key=value"), "{e}");
    }
}
