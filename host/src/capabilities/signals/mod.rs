//! `signals`: stop exactly the identified process, and wait for it to end.
//! Every path checks that the process behind the PID still has the
//! expected start token before it acts. One implementation per OS:
//!
//! - `linux`: through a pidfd (open it, check, then signal or poll it),
//!   so that the check and the act concern the same process.
//! - `macos`: `kill(2)` after the check; the wait on kqueue
//!   (`EVFILT_PROC`, `NOTE_EXIT`).
//! - `windows`: through a process handle (which, like a pidfd, pins the
//!   process): `TerminateProcess` for both `term` and `kill`, the wait on
//!   the handle.
//! - [`portable`]: `kill(2)` and polling with a short backoff: Linux
//!   without pidfds, and `PIDMAN_PORTABLE=1`.
//!
//! Which PIDs may never be signalled is the gate's rule (`gate.rs`),
//! applied before a request gets here.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(unix)]
pub mod portable;
#[cfg(windows)]
mod windows;

#[cfg(unix)]
use super::process_table;
use super::process_table::ProcessTable;
use crate::bindings::bengal::pid_manager::signals::Signal;
use crate::bindings::bengal::pid_manager::types::{Error, ProcessIdentity};

/// Send `signal` to exactly `target`.
pub fn send(
    processes: &mut ProcessTable,
    target: ProcessIdentity,
    signal: Signal,
) -> Result<(), Error> {
    #[cfg(target_os = "linux")]
    {
        linux::send(processes, target, signal)
    }
    #[cfg(target_os = "macos")]
    {
        portable::send(processes, target, signal)
    }
    #[cfg(windows)]
    {
        let _ = processes; // the handle tells the creation time
        windows::send(target, signal)
    }
}

/// Wait up to `timeout_ms` for `target` to end (a zombie has ended): true
/// once it has (or another process has its PID), false on the timeout.
pub fn wait_exit(
    processes: &mut ProcessTable,
    target: ProcessIdentity,
    timeout_ms: u64,
) -> Result<bool, Error> {
    #[cfg(target_os = "linux")]
    {
        linux::wait_exit(processes, target, timeout_ms)
    }
    #[cfg(target_os = "macos")]
    {
        if super::portable() {
            portable::wait_exit(processes, target, timeout_ms)
        } else {
            macos::wait_exit(processes, target, timeout_ms)
        }
    }
    #[cfg(windows)]
    {
        let _ = processes;
        windows::wait_exit(target, timeout_ms)
    }
}

/// Whether `target` has ended by the start-token check alone: its PID names
/// no process now, or another one.
#[cfg(unix)]
fn ended(processes: &mut ProcessTable, target: ProcessIdentity) -> Result<bool, Error> {
    match still_identified(processes, target) {
        Ok(()) => Ok(false),
        Err(Error::NotFound | Error::Changed) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Whether the process behind `target.pid` is still the identified one.
#[cfg(unix)]
fn still_identified(processes: &mut ProcessTable, target: ProcessIdentity) -> Result<(), Error> {
    match process_table::start_token(processes, target.pid) {
        Ok(token) if token == target.start_token => Ok(()),
        Ok(_) => Err(Error::Changed),
        Err(e) => Err(e),
    }
}

/// `signals.clock-ms`: a monotonic clock in milliseconds since this
/// process first asked (the waits above run on the same clock).
pub fn clock_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let elapsed = START.get_or_init(std::time::Instant::now).elapsed();
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}
