//! The named-function checks with every argument and result serialized
//! (`serialize_all`), as a process backend would do, on threads.

use shoal_core::backend::Backend;
use shoal_core::testkit;
use shoal_threads::Threads;

fn make() -> Box<dyn Backend> {
    Box::new(Threads::new().registry(testkit::registry()).serialize_all(true))
}

shoal_core::conformance_tests!(make, functions_only);

/// Closures are refused with an error naming the way out.
#[test]
fn closures_are_refused_with_a_hint() {
    let pool = shoal_core::Pool::builder().workers(1).build_boxed(make()).unwrap();
    assert!(!pool.runs_closures());
    let e = pool.submit(|| 1).unwrap_err();
    assert_eq!(e.reason(), shoal_core::SubmitRefusal::Unsupported);
    let e = pool.map(0..3, |x: i32| x).unwrap_err();
    assert!(e.to_string().contains("map_fn"), "{e}");
}
