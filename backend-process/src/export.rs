//! The process backend as a shoal plugin (feature `plugin-export`): the
//! cdylib exports a constructor that `shoal_core::plugin::load_backend`
//! finds.
//!
//! Options (for `load_backend_with`) are `key=value` pairs separated by
//! commas; the empty string means the defaults:
//!
//! | key | value | meaning |
//! |---|---|---|
//! | `program` | path | [`Process::program`] (default: the host program) |
//! | `arg` | text, repeatable | [`Process::arg`] |
//! | `output` | `inherit`/`null`/`capture` | [`Process::output`] |
//! | `pin_cores` | `true`/`false` | [`Process::pin_cores`] |
//! | `grace_ms` | milliseconds | [`Process::grace_period`] |
//! | `shm_threshold` | bytes | [`Process::shm_threshold`] |
//! | `segment_size` | bytes | [`Process::segment_size`] |

use std::time::Duration;

use shoal_core::backend::Backend;

use crate::{Output, Process};

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("process plugin: `{key}` must be a number, got `{value}`"))
}

/// Makes the backend from the host's options string.
fn from_options(options: &str) -> Result<Box<dyn Backend>, String> {
    let mut p = Process::new();
    for pair in options.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| format!("process plugin: expected `key=value`, got `{pair}`"))?;
        p = match key {
            "program" => p.program(value),
            "arg" => p.arg(value),
            "output" => p.output(match value {
                "inherit" => Output::Inherit,
                "null" => Output::Null,
                "capture" => Output::Capture,
                _ => {
                    return Err(format!(
                        "process plugin: `output` must be inherit, null or capture, got `{value}`"
                    ));
                }
            }),
            "pin_cores" => p.pin_cores(value.parse().map_err(|_| {
                format!("process plugin: `pin_cores` must be `true` or `false`, got `{value}`")
            })?),
            "grace_ms" => p.grace_period(Duration::from_millis(number(key, value)?)),
            "shm_threshold" => p.shm_threshold(number(key, value)?),
            "segment_size" => p.segment_size(number(key, value)?),
            _ => {
                return Err(format!(
                    "process plugin: unknown option `{key}` (known: program, arg, output, \
                     pin_cores, grace_ms, shm_threshold, segment_size)"
                ));
            }
        };
    }
    Ok(Box::new(p))
}

shoal_core::export_plugin!(from_options);

#[cfg(test)]
mod tests {
    use super::from_options;

    #[test]
    fn options_are_checked_by_name() {
        assert!(from_options("").is_ok());
        assert!(from_options("program=/bin/true, grace_ms=10, output=capture").is_ok());
        assert!(from_options("segment_size=0").is_ok());
        let e = from_options("grace_ms=soon").err().unwrap();
        assert!(e.contains("`grace_ms`"), "{e}");
        let e = from_options("colour=blue").err().unwrap();
        assert!(e.contains("`colour`"), "{e}");
        let e = from_options("output=loud").err().unwrap();
        assert!(e.contains("`output`"), "{e}");
    }
}
