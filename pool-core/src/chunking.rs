//! Automatic chunking: how many items of a batch go into one task.
//!
//! Tiny tasks need big chunks (a dispatch costs microseconds), long tasks
//! need chunks of one (batching them ruins load balance, see W2 in
//! DESIGN.md). The [`Chunker`] measures the time per item from finished
//! chunks (their time over their items, older chunks weighing less, see
//! [`DECAY`]) and sizes the next chunk:
//! - when the number of items left is known, `left / (2 × workers)` (guided
//!   self-scheduling: chunks shrink towards the end so workers finish
//!   together);
//! - but at least long enough to pay for its dispatch: [`OVERHEAD_FACTOR`]
//!   times the smallest per-chunk overhead measured (the round trip minus
//!   the time the chunk ran, plus the shortest run of a one-item chunk;
//!   [`MIN_CHUNK_TIME`] until one is measured), at
//!   the mean item time, clamped to [`FLOOR_CHUNK_TIME`]..[`MAX_FLOOR_TIME`];
//! - and at most [`MAX_CHUNK_TIME`] ([`SETTLED_CHUNK_TIME`] once the
//!   recent chunks all measured a trustworthy time) at the *slowest*
//!   recent item time,
//!   and at most [`MAX_CHUNK_BYTES`] of serialized arguments when the
//!   chunks cross a process boundary.
//!
//! When the bounds disagree, the upper one wins: uneven items are not
//! batched. Before the first measurement, chunks hold one item, so a batch
//! of long tasks is never batched. An explicit `chunksize` overrides all of
//! this.
//!
//! A batch may also start from what an earlier batch of the same function
//! measured ([`Chunker::learned`], [`Chunker::start_from`]): its first
//! chunks are then sized from that item time instead of one-item probes,
//! which on a worker process cost a round trip each and held back the
//! first ~0.6 ms of a 3 ms P-W1 map. Any chunk it measures outweighs what
//! it learned at once. Guided sizes bound the risk of a function that
//! became much slower: the first chunks hold a quarter, a fifth, ... of
//! the items, so a wrong guess costs load balance on part of one batch.
//!
//! The floor follows the measured overhead because backends differ by two
//! orders of magnitude: a thread takes a chunk in microseconds, a worker
//! process in tens of them. A fixed floor fit for processes made W1 on
//! threads (10^6 items of a nanosecond) run as three chunks on two workers.

use core::time::Duration;

/// The shortest chunk the chunker aims for before it measured the overhead
/// of a chunk.
pub const MIN_CHUNK_TIME: Duration = Duration::from_micros(200);
/// The most a measured overhead can raise the shortest chunk to. A chunk
/// of Python items on a worker process costs a few hundred µs beyond its
/// items (pickles, the interpreter lock, the round trip); a floor capped
/// at 200 µs made the last ~15 chunks of a Python `map` mostly overhead
/// (py-W1: 29.5 -> 24.1 ms median with this cap, interleaved runs; Rust's
/// P-W1 and the threads backend measure overheads far below it).
pub const MAX_FLOOR_TIME: Duration = Duration::from_millis(2);
/// The floor of the shortest chunk, however cheap a dispatch is.
pub const FLOOR_CHUNK_TIME: Duration = Duration::from_micros(20);
/// A chunk should run this many times as long as its dispatch costs.
pub const OVERHEAD_FACTOR: u32 = 10;
/// The longest chunk the chunker aims for while the item time is still
/// uncertain: a wrong guess (W2: the first job to finish was a short one)
/// then costs at most this much of one worker's time.
pub const MAX_CHUNK_TIME: Duration = Duration::from_millis(10);
/// The longest chunk once the item time is settled: the last
/// [`SLOWEST_WINDOW`] chunks all ran long enough to be trusted
/// ([`TRUSTED_SAMPLE`]). Each chunk's hand-off wakes the dispatcher and
/// the batch's caller; with every core busy running workers (2 here),
/// each wake-up takes a core from a worker. W3 (1000 tasks of 0.5 ms on 2
/// threads) ran as ~70 chunks at 10 ms, 1.07-1.11x rayon's time, and as
/// ~25 at 50 ms, 1.02x (interleaved runs). Guided sizes still shrink
/// chunks towards the end, so workers finish together.
pub const SETTLED_CHUNK_TIME: Duration = Duration::from_millis(50);

/// The most serialized argument bytes a chunk aims for (see
/// [`Chunker::observe_bytes`]). Batching pays for a dispatch of tens of
/// µs; an item this large costs more than that just to copy, so bigger
/// chunks save nothing and cost cache: a chunk's bytes are copied three
/// times on the way to a worker process (encoded, written to shared
/// memory, decoded), which stays in the cores' caches at 1 MiB and goes
/// to memory at tens (P-W5, 200 items of 1 MiB: ~50 ms in chunks of one
/// or two items, ~90 ms in the 5 to 25 items that time alone chose).
pub const MAX_CHUNK_BYTES: usize = 1 << 20;

/// The shortest chunk whose time per item bounds the chunk size (see
/// [`Chunker::observe`]). Shorter chunks measure mostly the clock, cold
/// caches or, for workers in other processes, the round trip: they set the
/// mean but must not cap every later chunk. Items this short are not long
/// tasks; batching them does not hurt balance.
pub const TRUSTED_SAMPLE: Duration = Duration::from_millis(1);

/// How many recent trusted chunks bound the chunk size.
pub const SLOWEST_WINDOW: usize = 8;

/// The time per item is the sum of the chunks' times over the sum of
/// their items, each older chunk weighing this much less. Weighing by
/// items, not by chunk: a probe of one item on a worker process takes a
/// whole round trip (tens of µs) whatever the item costs, and a per-chunk
/// average let that probe hold the next chunks small for several round
/// trips (P-W1 ran as ~24 chunks, ~1 ms of its 3.5 ms in that ramp).
pub const DECAY: f64 = 0.5;

/// What a batch's chunker measured, for the next batch of the same
/// function ([`Chunker::start_from`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Learned {
    /// Nanoseconds per item.
    per_item_ns: f64,
    overhead: Option<Duration>,
    shortest: Option<Duration>,
    bytes_per_item: Option<f64>,
}

/// Sizes chunks; sans-IO (durations come from the caller).
#[derive(Clone, Debug)]
pub struct Chunker {
    fixed: Option<usize>,
    workers: usize,
    cap: usize,
    /// Decayed sums of the measured chunks' nanoseconds and items (see
    /// [`DECAY`]); the time per item is their ratio.
    sums: Option<(f64, f64)>,
    /// Nanoseconds per item of the last [`SLOWEST_WINDOW`] chunks (0 for
    /// untrusted ones); their maximum bounds the chunk size. A window, not an all-time
    /// maximum: a cold start (a worker process's first job takes
    /// milliseconds) must not cap the rest of the batch.
    recent: std::collections::VecDeque<f64>,
    /// The smallest overhead of one chunk seen (round trip minus run time).
    overhead: Option<Duration>,
    /// The shortest run time of a one-item chunk seen: at most the fixed
    /// cost that a run time includes (see [`Chunker::observe_round_trip`]).
    shortest: Option<Duration>,
    /// Serialized argument bytes per item of the last chunk encoded.
    bytes_per_item: Option<f64>,
}

impl Chunker {
    /// Automatic chunking for a pool of `workers`.
    pub fn automatic(workers: usize) -> Self {
        Chunker {
            fixed: None,
            workers: workers.max(1),
            cap: usize::MAX,
            sums: None,
            recent: std::collections::VecDeque::new(),
            overhead: None,
            shortest: None,
            bytes_per_item: None,
        }
    }

    /// Always `chunksize` items (must be at least 1).
    pub fn fixed(chunksize: usize) -> Self {
        Chunker { fixed: Some(chunksize.max(1)), ..Chunker::automatic(1) }
    }

    /// Never more than `cap` items per chunk (lazy batches bound their
    /// memory with it).
    pub fn with_cap(mut self, cap: usize) -> Self {
        self.cap = cap.max(1);
        self
    }

    /// What this chunker measured, if it is automatic and measured a chunk.
    pub fn learned(&self) -> Option<Learned> {
        if self.fixed.is_some() {
            return None;
        }
        let per_item_ns = self.per_item_ns()?;
        Some(Learned {
            per_item_ns,
            overhead: self.overhead,
            shortest: self.shortest,
            bytes_per_item: self.bytes_per_item,
        })
    }

    /// Starts from what an earlier chunker measured instead of probing
    /// with one-item chunks; the first chunk this one measures outweighs
    /// it (it enters the mean as a single item, and never the window of
    /// slowest items).
    pub fn start_from(mut self, learned: Learned) -> Self {
        if self.fixed.is_none() && self.sums.is_none() {
            self.sums = Some((learned.per_item_ns, 1.0));
            self.overhead = self.overhead.or(learned.overhead);
            self.shortest = self.shortest.or(learned.shortest);
            self.bytes_per_item = self.bytes_per_item.or(learned.bytes_per_item);
        }
        self
    }

    /// The measured time per item, if any.
    pub fn per_item(&self) -> Option<Duration> {
        self.per_item_ns().map(|ns| Duration::from_nanos(ns as u64))
    }

    fn per_item_ns(&self) -> Option<f64> {
        self.sums.map(|(ns, items)| ns / items)
    }

    /// A chunk of `items` took `elapsed` on a worker.
    pub fn observe(&mut self, items: usize, elapsed: Duration) {
        if items == 0 {
            return;
        }
        let sample = elapsed.as_nanos() as f64 / items as f64;
        // A chunk that ran for microseconds measured mostly overhead: it
        // may set the mean, not the slowest item time (it enters the window
        // as 0, so it still pushes old samples out).
        if self.recent.len() == SLOWEST_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(if elapsed >= TRUSTED_SAMPLE { sample } else { 0.0 });
        let (ns, n) = self.sums.unwrap_or((0.0, 0.0));
        self.sums = Some((ns * DECAY + elapsed.as_nanos() as f64, n * DECAY + items as f64));
    }

    /// A chunk of `items` came back `round_trip` after it was submitted
    /// and ran for `elapsed` of it. The smallest difference seen is the
    /// overhead of a chunk outside its run (larger ones waited in a queue).
    /// The run time may hold a fixed cost too: a chunk on a worker process
    /// is timed from its dispatch to its result, so the pipe, the wake-ups
    /// and the decoding are in it, tens of µs even for one item. The
    /// shortest run of a one-item chunk (the probes an automatic batch
    /// starts with) bounds that part; both add up to the overhead.
    pub fn observe_round_trip(&mut self, items: usize, round_trip: Duration, elapsed: Duration) {
        let overhead = round_trip.saturating_sub(elapsed);
        self.overhead = Some(self.overhead.map_or(overhead, |o| o.min(overhead)));
        if items == 1 {
            self.shortest = Some(self.shortest.map_or(elapsed, |s| s.min(elapsed)));
        }
    }

    /// A chunk of `items` serialized to `bytes` of arguments: the next
    /// automatic chunks hold at most [`MAX_CHUNK_BYTES`] at that size per
    /// item.
    pub fn observe_bytes(&mut self, items: usize, bytes: usize) {
        if items > 0 {
            self.bytes_per_item = Some(bytes as f64 / items as f64);
        }
    }

    /// The shortest chunk worth dispatching, in time.
    fn min_chunk_time(&self) -> Duration {
        match self.overhead {
            None => MIN_CHUNK_TIME,
            Some(o) => ((o + self.shortest.unwrap_or_default()) * OVERHEAD_FACTOR)
                .clamp(FLOOR_CHUNK_TIME, MAX_FLOOR_TIME),
        }
    }

    /// The longest chunk worth aiming for, in time.
    fn max_chunk_time(&self) -> Duration {
        let settled = self.recent.len() == SLOWEST_WINDOW && self.recent.iter().all(|&ns| ns > 0.0);
        if settled { SETTLED_CHUNK_TIME } else { MAX_CHUNK_TIME }
    }

    /// How many items the next chunk should hold; `left` is the number of
    /// items not yet handed out, when known.
    pub fn next_size(&self, left: Option<usize>) -> usize {
        let size = match (self.fixed, self.per_item_ns()) {
            (Some(n), _) => n,
            (None, None) => 1,
            (None, Some(ns)) => {
                let ns = ns.max(0.5);
                let slowest = self.recent.iter().copied().fold(ns, f64::max);
                let by_bytes = MAX_CHUNK_BYTES as f64 / self.bytes_per_item.unwrap_or(0.0);
                let hi = (self.max_chunk_time().as_nanos() as f64 / slowest).min(by_bytes).max(1.0)
                    as usize;
                let lo = ((self.min_chunk_time().as_nanos() as f64 / ns).max(1.0) as usize).min(hi);
                match left {
                    Some(left) => (left / (2 * self.workers)).clamp(lo, hi),
                    None => hi,
                }
            }
        };
        let size = size.min(self.cap).max(1);
        match left {
            Some(left) => size.min(left.max(1)),
            None => size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_with_single_items() {
        let c = Chunker::automatic(4);
        assert_eq!(c.next_size(Some(1000)), 1);
        assert_eq!(c.next_size(None), 1);
    }

    #[test]
    fn long_tasks_stay_unbatched() {
        let mut c = Chunker::automatic(8);
        c.observe(1, Duration::from_millis(250));
        assert_eq!(c.next_size(Some(18)), 1);
        assert_eq!(c.next_size(None), 1);
    }

    #[test]
    fn tiny_tasks_get_big_guided_chunks() {
        let mut c = Chunker::automatic(2);
        c.observe(10_000, Duration::from_micros(10)); // 1 ns per item
        // Guided: a quarter of what is left, as it is within the time bounds.
        assert_eq!(c.next_size(Some(1_000_000)), 250_000);
        // Never below MIN_CHUNK_TIME's worth of items near the end ...
        assert_eq!(c.next_size(Some(300_000)), 200_000);
        // ... but never more than what is left.
        assert_eq!(c.next_size(Some(5)), 5);
        // Unknown length: MAX_CHUNK_TIME's worth, bounded by the cap.
        assert_eq!(c.next_size(None), 10_000_000);
        assert_eq!(c.clone().with_cap(4096).next_size(None), 4096);
    }

    #[test]
    fn cheap_dispatch_lowers_the_floor() {
        // W1 on threads: 0.6 ns per item, a chunk costs 4 µs to dispatch.
        let mut c = Chunker::automatic(2);
        c.observe(100_000, Duration::from_micros(60));
        c.observe_round_trip(100_000, Duration::from_micros(70), Duration::from_micros(60));
        c.observe_round_trip(100_000, Duration::from_micros(200), Duration::from_micros(196));
        // The floor is 10 x 4 us = 40 us of items, so guided sizes win
        // until the end: two workers get several chunks each.
        assert_eq!(c.next_size(Some(1_000_000)), 250_000);
        assert_eq!(c.next_size(Some(300_000)), 75_000);
        assert_eq!(c.next_size(Some(100_000)), 66_666);
        // Free dispatch still keeps FLOOR_CHUNK_TIME's worth.
        c.observe_round_trip(100_000, Duration::from_micros(60), Duration::from_micros(60));
        assert_eq!(c.next_size(Some(100_000)), 33_333);
    }

    #[test]
    fn a_remote_probes_fixed_cost_raises_the_floor() {
        // P-W1: a one-item probe on a worker process runs 50 µs (the pipe
        // and the wake-ups are inside its run time), then items prove to
        // cost ~15 ns. The floor is 10 x (the 3 µs the dispatcher adds
        // outside the run + the probe's 50 µs inside it) = 530 µs of items,
        // not 10 x 3 µs.
        let mut c = Chunker::automatic(2);
        c.observe(1, Duration::from_micros(50));
        c.observe_round_trip(1, Duration::from_micros(53), Duration::from_micros(50));
        c.observe(25_000, Duration::from_micros(375));
        c.observe_round_trip(25_000, Duration::from_micros(378), Duration::from_micros(375));
        c.observe(25_000, Duration::from_micros(375));
        assert_eq!(c.next_size(Some(100_000)), 34_565);
        assert_eq!(c.next_size(Some(20_000)), 20_000, "never more than is left");
    }

    #[test]
    fn a_costly_dispatch_raises_the_floor_up_to_its_cap() {
        // Python items on a worker process: 1 µs each, and a chunk costs
        // 400 µs beyond its items. The floor is MAX_FLOOR_TIME's worth, not
        // 10 x 400 µs, and not MIN_CHUNK_TIME's: the tail of a map is a few
        // chunks of 2 ms instead of many that are mostly overhead.
        let mut c = Chunker::automatic(2);
        c.observe(10_000, Duration::from_millis(10));
        c.observe_round_trip(10_000, Duration::from_micros(10_400), Duration::from_millis(10));
        assert_eq!(c.next_size(Some(4_000)), 2_000);
        assert_eq!(c.next_size(Some(1_500)), 1_500);
    }

    #[test]
    fn uneven_items_are_not_batched() {
        // W2: a short job finishes first, then long ones; the slowest item
        // time bounds the chunk, so long jobs never share a chunk.
        let mut c = Chunker::automatic(8);
        c.observe(1, Duration::from_micros(3700));
        assert_eq!(c.next_size(None), 2, "only a short job seen so far");
        c.observe(1, Duration::from_millis(40));
        c.observe(1, Duration::from_micros(100));
        assert_eq!(c.next_size(None), 1, "the slowest item bounds the chunk");
    }

    #[test]
    fn a_settled_item_time_allows_longer_chunks() {
        // W3: tasks of 0.5 ms. Chunks of 10 ms until the window holds
        // trusted chunks only, then of 50 ms.
        let mut c = Chunker::automatic(2);
        for _ in 0..SLOWEST_WINDOW - 1 {
            c.observe(20, Duration::from_millis(10));
        }
        assert_eq!(c.next_size(Some(800)), 20, "not settled yet");
        c.observe(20, Duration::from_millis(10));
        assert_eq!(c.next_size(Some(800)), 100, "settled: SETTLED_CHUNK_TIME's worth");
        // A short (untrusted) chunk unsettles it again.
        c.observe(1, Duration::from_micros(500));
        assert_eq!(c.next_size(Some(800)), 20);
    }

    #[test]
    fn short_probes_do_not_cap_big_chunks() {
        // W1: a one-item probe measures the clock (300 ns), the real item
        // time is under a nanosecond.
        let mut c = Chunker::automatic(2);
        c.observe(1, Duration::from_nanos(300));
        c.observe(100_000, Duration::from_micros(80));
        assert!(c.next_size(Some(1_000_000)) >= 200_000, "{}", c.next_size(Some(1_000_000)));
    }

    #[test]
    fn round_trips_of_remote_probes_do_not_cap_chunks() {
        // A one-item chunk on a worker process: 50 µs of round trip.
        let mut c = Chunker::automatic(2);
        c.observe(1, Duration::from_micros(50));
        c.observe(200, Duration::from_micros(60));
        c.observe(2000, Duration::from_micros(100));
        assert!(c.next_size(Some(100_000)) >= 4000, "{}", c.next_size(Some(100_000)));
    }

    #[test]
    fn a_probes_round_trip_does_not_hold_back_the_next_chunks() {
        // P-W1: a one-item probe on a worker process takes a 50 µs round
        // trip; the next chunk (200 items: the 10 ms bound at 50 µs per
        // item) shows items cost ~20 ns. One round trip later, the chunks
        // are the guided size, not a few hundred items.
        let mut c = Chunker::automatic(2);
        c.observe(1, Duration::from_micros(50));
        assert_eq!(c.next_size(Some(100_000)), 200);
        c.observe(200, Duration::from_micros(54));
        assert_eq!(c.next_size(Some(100_000)), 25_000);
    }

    #[test]
    fn a_cold_start_does_not_cap_the_whole_batch() {
        let mut c = Chunker::automatic(2);
        // A fresh worker process: the first job takes 4 ms.
        c.observe(1, Duration::from_millis(4));
        assert_eq!(c.next_size(Some(1_000_000)), 2);
        // Then warm jobs: a 40 µs round trip plus 10 ns per item. Chunks
        // grow back as the cold sample leaves the window and the mean.
        for _ in 0..30 {
            let n = c.next_size(Some(1_000_000));
            c.observe(n, Duration::from_micros(40) + Duration::from_nanos(10 * n as u64));
        }
        assert!(c.next_size(Some(1_000_000)) > 10_000, "{}", c.next_size(Some(1_000_000)));
    }

    #[test]
    fn large_arguments_bound_the_chunk() {
        // P-W5: items of 1 MiB that take 100 µs each; time alone makes
        // guided chunks of a quarter of what is left.
        let mut c = Chunker::automatic(2);
        c.observe(1, Duration::from_micros(100));
        assert_eq!(c.next_size(Some(199)), 49);
        c.observe_bytes(1, (1 << 20) + 4);
        assert_eq!(c.next_size(Some(199)), 1, "never split an item");
        c.observe_bytes(4, 4 * (256 << 10));
        assert_eq!(c.next_size(Some(199)), 4);
        // Small items are bound by time, as before.
        c.observe_bytes(1000, 8000);
        assert_eq!(c.next_size(Some(199)), 49);
        let mut f = Chunker::fixed(7);
        f.observe_bytes(1, 1 << 30);
        assert_eq!(f.next_size(Some(100)), 7, "an explicit chunksize wins");
    }

    #[test]
    fn a_learned_item_time_skips_the_probes_and_yields_to_measurements() {
        // P-W1 again on the same pool: 20 ns per item, 15 µs of overhead.
        let mut first = Chunker::automatic(2);
        first.observe(1, Duration::from_micros(15));
        first.observe_round_trip(1, Duration::from_micros(20), Duration::from_micros(15));
        first.observe(25_000, Duration::from_micros(500));
        first.observe(25_000, Duration::from_micros(500));
        let learned = first.learned().unwrap();
        let mut next = Chunker::automatic(2).start_from(learned);
        assert_eq!(next.next_size(Some(100_000)), 25_000, "guided at once, no probe");
        // The function became slow (2 ms per item): one chunk says so.
        next.observe(25_000, Duration::from_secs(50));
        assert_eq!(next.next_size(Some(50_000)), 5, "10 ms of 2 ms items");
        assert!(Chunker::fixed(4).learned().is_none());
        assert!(Chunker::automatic(2).learned().is_none(), "nothing measured");
        let fixed = Chunker::fixed(4).start_from(learned);
        assert_eq!(fixed.next_size(Some(100)), 4, "an explicit chunksize wins");
        // P-W5 again: the size of the items is learned too, so the first
        // chunk is not a quarter of 200 items of 1 MiB.
        let mut big = Chunker::automatic(2);
        big.observe(1, Duration::from_micros(100));
        big.observe_bytes(1, 1 << 20);
        let next = Chunker::automatic(2).start_from(big.learned().unwrap());
        assert_eq!(next.next_size(Some(200)), 1);
    }

    #[test]
    fn fixed_overrides() {
        let mut c = Chunker::fixed(7);
        c.observe(7, Duration::from_secs(7));
        assert_eq!(c.next_size(Some(100)), 7);
        assert_eq!(c.next_size(Some(3)), 3);
    }
}
