//! The conformance suite's named-function checks on worker processes.

use shoal_core::backend::Backend;
use shoal_process::Process;

fn make() -> Box<dyn Backend> {
    Box::new(Process::new().program(env!("CARGO_BIN_EXE_shoal-testkit-worker")))
}

shoal_core::conformance_tests!(make, functions_only);
