//! The chaos run: many small named tasks while a random worker process is
//! SIGKILLed every so many results. It reports how long the run took, how
//! many workers were killed and how many tasks were lost with them; every
//! other task must return its correct result.
//!
//! The approach of `backend-process/tests/crash.rs`
//! (`chaos_kill_a_worker_every_100_tasks`), scaled up: every task is
//! submitted at once with `submit_fn`, results are awaited in order, and
//! after every `every`-th result a live worker of this pool gets SIGKILL,
//! picked at random among the pids its results named that `/proc` still
//! shows as live children of this process (so no other pool's worker, and
//! no recycled pid, is ever hit).

use std::collections::HashSet;
use std::fmt;
use std::time::Instant;

use shoal_core::Pool;

use crate::named::SQUARE_PID;

/// What one chaos run saw.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Tasks submitted.
    pub tasks: u64,
    /// A worker was killed after every this many results.
    pub every: u64,
    /// Workers SIGKILLed (kill(2) succeeded).
    pub kills: u64,
    /// Tasks that failed with `WorkerLost` (they were on a killed worker).
    pub lost: u64,
    /// Tasks that failed otherwise, or could not be submitted.
    pub other_errors: u64,
    /// Tasks that returned a wrong value.
    pub wrong: u64,
    /// Distinct worker processes that ran at least one task.
    pub worker_pids: usize,
    /// Wall time from the first submit to the last result, seconds.
    pub seconds: f64,
    /// The first error that was not `WorkerLost`, if any.
    pub first_other_error: Option<String>,
}

impl Outcome {
    /// The outcome as one JSON line (what the `chaos` binary prints).
    pub fn json(&self) -> String {
        let first = self
            .first_other_error
            .as_deref()
            .map_or_else(|| "null".to_owned(), |e| serde_json::Value::from(e).to_string());
        format!(
            "{{\"tasks\": {}, \"every\": {}, \"kills\": {}, \"lost\": {}, \"other_errors\": {}, \"wrong\": {}, \"worker_pids\": {}, \"seconds\": {:.6}, \"first_other_error\": {first}}}",
            self.tasks,
            self.every,
            self.kills,
            self.lost,
            self.other_errors,
            self.wrong,
            self.worker_pids,
            self.seconds
        )
    }

    /// Whether the run kept its promises: no wrong result, no error other
    /// than `WorkerLost`, at most one lost task per kill.
    pub fn check(&self) -> Result<(), String> {
        if self.wrong > 0 {
            return Err(format!("{} tasks returned a wrong result", self.wrong));
        }
        if self.other_errors > 0 {
            return Err(format!(
                "{} tasks failed with something else than WorkerLost, first: {}",
                self.other_errors,
                self.first_other_error.as_deref().unwrap_or("?")
            ));
        }
        if self.lost > self.kills {
            return Err(format!("{} tasks lost for {} kills", self.lost, self.kills));
        }
        Ok(())
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tasks in {:.2} s, {} kills (one every {} results), {} lost, {} other errors, {} wrong",
            self.tasks,
            self.seconds,
            self.kills,
            self.every,
            self.lost,
            self.other_errors,
            self.wrong
        )
    }
}

/// Runs `tasks` tasks of [`SQUARE_PID`] on `pool` (a process pool), killing
/// a random live worker after every `every` results (`every = 0`: never).
pub fn run(pool: &Pool, tasks: u64, every: u64) -> Outcome {
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks).map(|i| pool.submit_fn(&SQUARE_PID, i)).collect();
    let mut outcome = Outcome {
        tasks,
        every,
        kills: 0,
        lost: 0,
        other_errors: 0,
        wrong: 0,
        worker_pids: 0,
        seconds: 0.0,
        first_other_error: None,
    };
    let mut pids = HashSet::new();
    // Workers of this pool that may still be alive, as results name them.
    let mut ours: Vec<u32> = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for (i, handle) in (0u64..).zip(handles) {
        let result = match handle {
            Ok(handle) => handle.wait().map_err(|e| (e.is_worker_lost(), e.to_string())),
            Err(e) => Err((false, format!("submit refused: {e}"))),
        };
        match result {
            Ok((value, pid)) => {
                if pids.insert(pid) {
                    ours.push(pid);
                }
                if value != i * i {
                    outcome.wrong += 1;
                }
                if every > 0 && i % every == every - 1 {
                    // Kill one of our live workers, picked at random.
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    ours.retain(|&p| is_live_child(p));
                    if !ours.is_empty() {
                        let victim = ours[(seed % ours.len() as u64) as usize];
                        // SAFETY: kill(2) on a live child of this process
                        // that ran a task of this pool: one of its workers.
                        if unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) } == 0 {
                            outcome.kills += 1;
                        }
                    }
                }
            }
            Err((true, _)) => outcome.lost += 1,
            Err((false, e)) => {
                outcome.other_errors += 1;
                outcome.first_other_error.get_or_insert(e);
            }
        }
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    outcome.worker_pids = pids.len();
    outcome
}

/// Whether `pid` is a live (not zombie) child of this process, per `/proc`.
pub fn is_live_child(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let mut fields = rest.split_whitespace();
    let (state, ppid) = (fields.next(), fields.next());
    state.is_some_and(|s| s != "Z") && ppid == Some(std::process::id().to_string().as_str())
}
