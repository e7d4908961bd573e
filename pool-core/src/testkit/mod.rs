//! The backend conformance suite (feature `testkit`).
//!
//! A backend is done when it passes every check here. Run them all with
//! one line in a test file of the backend crate:
//!
//! ```text
//! fn make() -> Box<dyn shoal_core::backend::Backend> { Box::new(MyBackend::new()) }
//! shoal_core::conformance_tests!(make);
//! ```
//!
//! which makes one `#[test]` per check (module `conformance`), or call
//! [`run_all`]. Checks synchronise on events and channels, never on sleeps;
//! the few time limits (task timeouts, idle shrink) only bound how long a
//! broken backend can make a check wait.
//!
//! The checks cover the Pool's behaviour (DESIGN.md) and the rows of
//! RELIABILITY.md that every backend can meet: 1-2 (bad submissions), 6
//! (panics), 11 and 19 (start failures), 16 (timeouts), 18 (cancel), 21-24
//! (terminate, close/join, submit after close, lifespan), 26-30 (batches
//! with failures, empty input and bad options, released payloads, lost
//! wake-ups). Crash rows (3-5, 7-15, 17) need a backend whose workers can
//! die; the process backend adds those.

mod checks;
mod functions;
#[cfg(feature = "plugin")]
mod plugin_build;

pub use checks::*;
pub use functions::*;
#[cfg(feature = "plugin")]
pub use plugin_build::test_plugin;

use crate::backend::Backend;

/// Makes a fresh backend for one pool.
pub type MakeBackend = fn() -> Box<dyn Backend>;

/// Runs every check against backends made by `make`; panics on the first
/// failure with the check's name.
pub fn run_all(make: MakeBackend) {
    for (name, check) in CHECKS.iter().chain(FUNCTION_CHECKS) {
        let r = std::panic::catch_unwind(|| check(make));
        if let Err(p) = r {
            panic!("conformance check `{name}` failed: {}", crate::worker::panic_message(&*p));
        }
    }
}

/// The checks with named functions (every backend passes these; backends
/// without closures pass only these).
pub const FUNCTION_CHECKS: &[Check] = &[
    ("named_functions_run", named_functions_run),
    ("named_function_panics", named_function_panics),
    ("named_serialization_errors", named_serialization_errors),
    ("named_worker_id_and_lifespan", named_worker_id_and_lifespan),
    ("named_timeout_and_retries", named_timeout_and_retries),
    ("named_open_batch", named_open_batch),
    ("named_batch_messages", named_batch_messages),
];

/// One `#[test]` per conformance check, in a module `conformance`, for the
/// backends made by the function `$make: fn() -> Box<dyn Backend>` (a function
/// of the calling module).
#[macro_export]
macro_rules! conformance_tests {
    ($make:ident, functions_only) => {
        #[cfg(test)]
        mod conformance {
            fn make() -> Box<dyn $crate::backend::Backend> {
                super::$make()
            }
            $crate::__conformance_functions!();
        }
    };
    ($make:ident) => {
        #[cfg(test)]
        mod conformance {
            fn make() -> Box<dyn $crate::backend::Backend> {
                super::$make()
            }
            $crate::__conformance_functions!();
            $crate::__conformance_each!(
                submit_returns_result,
                message_stream_in_order,
                wait_timeout_hands_handle_back,
                poll_never_blocks,
                panic_is_an_error_and_pool_survives,
                bad_burst_then_good,
                map_is_ordered,
                map_slice_is_ordered,
                map_slice_runs_on_every_worker,
                map_slice_drops_what_it_wrote,
                map_with_chunksize,
                map_of_nothing,
                map_unordered_yields_every_index,
                imap_is_lazy_and_bounded,
                map_item_panic_names_the_item,
                imap_error_at_its_position,
                worker_id_is_visible,
                worker_state_init_and_exit,
                worker_init_failure_breaks_pool,
                lifespan_replaces_workers,
                task_timeout,
                batch_task_timeout,
                retries,
                cancel_queued,
                cancel_running,
                suspend_and_resume,
                submit_after_close_returns_the_task,
                close_join_drains,
                terminate_cancels_pending,
                grows_to_max_and_shrinks_to_min,
                pool_events,
                insights,
                scope_borrows,
                nested_pool,
                payloads_are_released,
                many_tasks_one_terminal_each,
                concurrent_submitters,
                build_options_are_checked,
                drop_waits_for_submitted_tasks,
                change_function_between_batches
            );
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_functions {
    () => {
        $crate::__conformance_list!(
            FUNCTION_CHECKS,
            every_function_check_is_listed,
            named_functions_run,
            named_function_panics,
            named_serialization_errors,
            named_worker_id_and_lifespan,
            named_timeout_and_retries,
            named_open_batch,
            named_batch_messages
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_each {
    ($($check:ident),* $(,)?) => {
        $crate::__conformance_list!(CHECKS, every_check_is_listed, $($check),*);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_list {
    ($list:ident, $listed:ident, $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                $crate::testkit::$check(make)
            }
        )*
        /// Fails when the suite has checks this macro does not list.
        #[test]
        fn $listed() {
            let listed = [$(stringify!($check)),*];
            for (name, _) in $crate::testkit::$list {
                assert!(listed.contains(name), "conformance check `{name}` is not run");
            }
        }
    };
}
