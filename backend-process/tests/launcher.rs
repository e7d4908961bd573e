//! Workers started by a `Launcher` instead of the default command: the
//! launcher here forks and execs the testkit worker itself, so the test
//! checks the `Launch` contract (fds at their numbers, the environment)
//! and the supervision of a launched child by pid (results, a killed
//! worker's signal, reaping).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use shoal_core::testkit::SQUARE;
use shoal_core::{ExitCause, Message, Pool, TaskErrorKind};
use shoal_process::testkit::PID_THEN_SLEEP;
use shoal_process::{Launch, Launcher, Process};

const WORKER: &str = env!("CARGO_BIN_EXE_shoal-testkit-worker");

/// fork + exec of the testkit worker, with the fds and environment of the
/// launch; everything the child needs is prepared before the fork.
struct ExecLauncher;

impl Launcher for ExecLauncher {
    fn launch(&self, launch: &Launch) -> std::io::Result<u32> {
        let program = CString::new(WORKER).unwrap();
        let argv = [program.as_ptr(), std::ptr::null()];
        let env: Vec<CString> = std::env::vars_os()
            .chain(launch.env.iter().cloned())
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).unwrap()
            })
            .collect();
        let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        let fds = launch.fds.clone();
        // SAFETY: the child calls only async-signal-safe functions (fcntl,
        // dup2, execve, _exit) on memory prepared before the fork.
        match unsafe { libc::fork() } {
            -1 => Err(std::io::Error::last_os_error()),
            0 => unsafe {
                let mut moved = [-1; 3];
                for (i, &(from, _)) in fds.iter().enumerate() {
                    moved[i] = libc::fcntl(from, libc::F_DUPFD_CLOEXEC, 10);
                }
                for (i, &(_, to)) in fds.iter().enumerate() {
                    libc::dup2(moved[i], to);
                }
                libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
                libc::_exit(127)
            },
            pid => Ok(pid as u32),
        }
    }
}

fn pool(workers: usize) -> Pool {
    let backend = Process::new().program(WORKER).launcher(Arc::new(ExecLauncher));
    Pool::builder().workers(workers).build(backend).unwrap()
}

#[test]
fn launched_workers_run_tasks() {
    let pool = pool(2);
    assert_eq!(pool.map_fn(&SQUARE, 0..1000u64).unwrap()[999], 999 * 999);
    assert_eq!(pool.submit_fn(&SQUARE, 7).unwrap().wait().unwrap(), 49);
}

#[test]
fn a_killed_launched_worker_is_lost_with_its_signal_and_replaced() {
    let pool = pool(1);
    let task = pool.submit_fn(&PID_THEN_SLEEP, 60_000).unwrap();
    // The task logs its worker's pid before it sleeps.
    let pid: u32 = loop {
        match task.next_message(Some(std::time::Duration::from_secs(30))) {
            Some(Message::Log(line)) if line.starts_with("pid ") => {
                break line[4..].parse().unwrap();
            }
            Some(Message::Done(_)) | Some(Message::Failed(_)) | None => {
                panic!("the task ended before logging its pid")
            }
            Some(_) => {}
        }
    };
    // SAFETY: kill(2) on the worker's pid.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let error = task.wait().unwrap_err();
    match error.kind() {
        TaskErrorKind::WorkerLost { cause: ExitCause::Signal(9), .. } => {}
        other => panic!("expected the worker lost to SIGKILL, got {other:?}"),
    }
    assert_eq!(pool.submit_fn(&SQUARE, 3).unwrap().wait().unwrap(), 9);
}

#[test]
fn a_launcher_refuses_output_capture() {
    let backend = Process::new()
        .program(WORKER)
        .launcher(Arc::new(ExecLauncher))
        .output(shoal_process::Output::Capture);
    let pool = Pool::builder().workers(1).max_start_failures(1).build(backend).unwrap();
    let e = pool.submit_fn(&SQUARE, 3).unwrap().wait().unwrap_err();
    assert!(e.is_broken() && e.to_string().contains("launcher"), "{e}");
}
