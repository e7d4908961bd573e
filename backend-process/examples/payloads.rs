//! A quick look at payload throughput (W5: 200 tasks of 1 MB, the worker
//! returns the length) through the socket and through shared memory.
//! `cargo xtask bench` is the real suite.

use std::time::Instant;

use shoal_core::Pool;
use shoal_core::function::{Function, Registry};
use shoal_process::Process;

fn length(bytes: serde_bytes::ByteBuf) -> usize {
    bytes.len()
}
// `ByteBuf` serializes as one block of bytes; a plain `Vec<u8>` goes through
// serde byte by byte.
static LENGTH: Function<serde_bytes::ByteBuf, usize> = Function::new("length", length);

fn main() {
    shoal_process::worker_main(&Registry::new().with(&LENGTH).unwrap());
    let payload = serde_bytes::ByteBuf::from(vec![7u8; 1 << 20]);
    for (name, threshold) in [("socket", usize::MAX), ("shm", 256 * 1024)] {
        let pool =
            Pool::builder().workers(2).build(Process::new().shm_threshold(threshold)).unwrap();
        for _ in 0..3 {
            let t = Instant::now();
            let hs: Vec<_> =
                (0..200).map(|_| pool.submit_fn(&LENGTH, payload.clone()).unwrap()).collect();
            let total: usize = hs.into_iter().map(|h| h.wait().unwrap()).sum();
            let s = t.elapsed().as_secs_f64();
            println!("{name}: {:.0} MB/s ({total} bytes)", total as f64 / 1e6 / s);
        }
    }
}
