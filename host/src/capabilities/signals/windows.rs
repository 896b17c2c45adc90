//! Signals on Windows, through a process handle: opened first, then the
//! creation time is checked on that handle, then it is acted on, so the
//! check and the act concern one process (an open handle keeps its PID
//! from reuse). There is no graceful stop for an arbitrary process (no
//! SIGTERM; console control events reach only the caller's own console
//! group), so `term` is `TerminateProcess` with exit code 15, as Python's
//! `os.kill(pid, signal.SIGTERM)` (what Bengal calls) does, and `kill`
//! with 9. `cont` has nothing to wake: no process is stopped that way.

use windows_sys::Win32::Foundation::{WAIT_OBJECT_0, WAIT_TIMEOUT};
use windows_sys::Win32::System::Threading::{
    INFINITE, PROCESS_TERMINATE, TerminateProcess, WaitForSingleObject,
};

use crate::bindings::bengal::pid_manager::signals::Signal;
use crate::bindings::bengal::pid_manager::types::{Error, ProcessIdentity};
use crate::capabilities::process_table::windows::{Process, last_error, open_error};

/// The handle of exactly `target`, with `access`: `Changed` if its PID is
/// now another process's.
fn open_identified(target: ProcessIdentity, access: u32) -> Result<Process, Error> {
    let process = Process::open(target.pid, access).map_err(|c| open_error(target.pid, c))?;
    if process.created()? != target.start_token {
        return Err(Error::Changed);
    }
    Ok(process)
}

/// Stop exactly `target`.
pub fn send(target: ProcessIdentity, signal: Signal) -> Result<(), Error> {
    let code = match signal {
        Signal::Term => 15,
        Signal::Kill => 9,
        Signal::Cont => return open_identified(target, 0).map(drop),
    };
    let process = open_identified(target, PROCESS_TERMINATE)?;
    if process.ended() {
        return Err(Error::NotFound);
    }
    // SAFETY: a handle we own, opened with PROCESS_TERMINATE.
    if unsafe { TerminateProcess(process.handle(), code) } == 0 {
        return Err(last_error(&format!("terminate PID {}", target.pid)));
    }
    Ok(())
}

/// Wait up to `timeout_ms` for `target` to end: wait on its handle.
pub fn wait_exit(target: ProcessIdentity, timeout_ms: u64) -> Result<bool, Error> {
    let process = match open_identified(target, 0) {
        Ok(process) => process,
        Err(Error::NotFound | Error::Changed) => return Ok(true),
        Err(e) => return Err(e),
    };
    let wait = u32::try_from(timeout_ms)
        .unwrap_or(INFINITE - 1)
        .min(INFINITE - 1);
    // SAFETY: a handle we own, opened with SYNCHRONIZE.
    match unsafe { WaitForSingleObject(process.handle(), wait) } {
        WAIT_OBJECT_0 => Ok(true),
        WAIT_TIMEOUT => Ok(false),
        _ => Err(last_error(&format!("wait for PID {}", target.pid))),
    }
}
