//! The process backend's reader and writer threads ask the kernel for a
//! short time slice.
//!
//! They run in bursts of microseconds (read a frame, copy a payload, hand
//! it on) while the workers keep every core busy. Linux's EEVDF scheduler
//! lets a waking thread preempt a running one only when the waker's
//! deadline comes first, which with the default slice (~3 ms) it often
//! does not: a chunk's DONE frame then waited milliseconds for its reader
//! to get a core (py-W1 traces on 2 cores: up to 3 ms between a worker's
//! write and the parent's read). A thread may request a shorter slice
//! (`sched_setattr` with `sched_runtime`, Linux 6.12 and later); its
//! wake-ups then preempt the workers at once, and it gets no more CPU
//! time than before (the slice changes when a thread runs, not how much).
//! Elsewhere, or on older kernels, the request fails and nothing changes.
//!
//! Not for the core's dispatcher: with a short slice there, the threads
//! backend's round trip of one empty task went from ~5 µs to ~20 µs
//! (measured, cause not traced; the dispatcher spins with `yield_now`
//! before it blocks).

/// The slice the plumbing threads ask for.
const SLICE_NS: u64 = 100_000;

/// Asks for a short slice for the calling thread (best effort; for
/// threads that wake often and run briefly).
pub(crate) fn short_slice() {
    #[cfg(target_os = "linux")]
    {
        /// `struct sched_attr` of `sched_setattr(2)`, first version (48 bytes).
        #[repr(C)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
        }
        // SAFETY: getpriority only reads this thread's nice value (-1 is
        // also a valid nice, so errno is not checked: a wrong nice here
        // would only be the value we set back).
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let attr = SchedAttr {
            size: size_of::<SchedAttr>() as u32,
            policy: libc::SCHED_OTHER as u32,
            flags: 0,
            nice,
            priority: 0,
            runtime: SLICE_NS,
            deadline: 0,
            period: 0,
        };
        // SAFETY: the attribute struct is valid for the size it states;
        // pid 0 is the calling thread.
        unsafe {
            libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0);
        }
    }
}
