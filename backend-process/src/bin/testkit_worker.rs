//! A worker program that knows the conformance suite's functions
//! and the crashing ones (`shoal_process::testkit::registry`). Tests start it with
//! `Process::new().program(env!("CARGO_BIN_EXE_shoal-testkit-worker"))`.

fn main() {
    shoal_process::worker_main(&shoal_process::testkit::registry());
    eprintln!("shoal-testkit-worker: this program runs only as a worker started by a shoal pool");
    std::process::exit(2);
}
