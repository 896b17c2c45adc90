//! Signals without pidfds (the Unix systems' shared path): `kill(2)` right
//! after the start-token check, and a wait that polls the process table
//! with a backoff from 1 to 20 ms.

use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::{ProcessTable, still_identified};
use crate::bindings::bengal::pid_manager::process_table::ProcessState;
use crate::bindings::bengal::pid_manager::signals::Signal;
use crate::bindings::bengal::pid_manager::types::{Error, ProcessIdentity};
use crate::capabilities::process_table;

/// The POSIX signal for a WIT one.
pub fn signal_number(signal: Signal) -> nix::sys::signal::Signal {
    match signal {
        Signal::Term => nix::sys::signal::Signal::SIGTERM,
        Signal::Kill => nix::sys::signal::Signal::SIGKILL,
        Signal::Cont => nix::sys::signal::Signal::SIGCONT,
    }
}

/// The answer to a failed `kill` (or `pidfd_send_signal`).
pub fn send_error(target: ProcessIdentity, e: Errno) -> Error {
    let what = format!("signal PID {}", target.pid);
    match e {
        Errno::ESRCH => Error::NotFound,
        Errno::EPERM => Error::PermissionDenied(format!("{what}: operation not permitted")),
        e => crate::capabilities::errno_error(&what, e),
    }
}

/// Check, then `kill(2)`.
pub fn send(
    processes: &mut ProcessTable,
    target: ProcessIdentity,
    signal: Signal,
) -> Result<(), Error> {
    still_identified(processes, target)?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(target.pid as i32),
        signal_number(signal),
    )
    .map_err(|e| send_error(target, e))
}

/// Poll until `target` has ended or `timeout_ms` has passed.
pub fn wait_exit(
    processes: &mut ProcessTable,
    target: ProcessIdentity,
    timeout_ms: u64,
) -> Result<bool, Error> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let mut pause = Duration::from_millis(1);
    loop {
        if ended(processes, target)? {
            return Ok(true);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Whether `target` has ended: gone, a zombie, or its PID now another's.
fn ended(processes: &mut ProcessTable, target: ProcessIdentity) -> Result<bool, Error> {
    Ok(
        process_table::state(processes, target.pid)? != ProcessState::Running
            || super::ended(processes, target)?,
    )
}
