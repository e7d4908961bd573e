//! The pool's conformance suite on the statically linked threads backend.

use shoal_core::backend::Backend;
use shoal_core::testkit;
use shoal_threads::Threads;

fn make() -> Box<dyn Backend> {
    Box::new(Threads::new().registry(testkit::registry()))
}

shoal_core::conformance_tests!(make);
