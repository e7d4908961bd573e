//! Worker processes keep the memory they free.
//!
//! A worker allocates the same buffers for every chunk: the arguments it
//! reads, the results it writes. glibc hands freed memory above 128 KiB
//! back to the kernel (trimming the heap's top, unmapping big blocks), and
//! the next chunk page-faults every page in again: on `P-W1` (100 000
//! `u64` squared on 2 workers) that was half of the map's time (1.4 ms →
//! 0.7 ms with the thresholds raised; DESIGN.md has the same for numpy's
//! temporaries). A worker is a long-lived process that runs one job after
//! another, so it raises both thresholds to [`KEEP_FREED_BYTES`]: freed
//! memory up to that much stays in the heap for the next chunk. The
//! caller's process is left alone; its allocator is the user's choice.

/// Freed memory up to this many bytes stays in a worker's heap, and
/// blocks below it come from the heap rather than their own mapping.
pub const KEEP_FREED_BYTES: i32 = 128 << 20;

/// Raises glibc's trim and mmap thresholds to [`KEEP_FREED_BYTES`] in
/// this process (a no-op elsewhere). Call it once, in a worker, before its
/// first task.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; both are documented
    // options and the value is in their range.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP_FREED_BYTES);
        libc::mallopt(libc::M_MMAP_THRESHOLD, KEEP_FREED_BYTES);
    }
}
