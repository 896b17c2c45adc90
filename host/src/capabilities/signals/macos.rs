//! The wait on macOS: kqueue's `EVFILT_PROC` with `NOTE_EXIT`. The filter
//! is registered before the start token is checked, so an exit between the
//! two is still reported; a PID reused after the check cannot be confused
//! with the target, because the kernel fires the filter for the process it
//! was registered on.

use std::time::{Duration, Instant};

use super::{ProcessTable, ended};
use crate::bindings::bengal::pid_manager::types::{Error, ProcessIdentity};

/// A kqueue, closed on drop.
struct Kqueue(libc::c_int);

impl Drop for Kqueue {
    fn drop(&mut self) {
        // SAFETY: a descriptor we own.
        unsafe { libc::close(self.0) };
    }
}

fn last_error(what: &str) -> Error {
    crate::capabilities::io_error(what, &std::io::Error::last_os_error())
}

/// Wait up to `timeout_ms` for `target` to end.
pub fn wait_exit(
    processes: &mut ProcessTable,
    target: ProcessIdentity,
    timeout_ms: u64,
) -> Result<bool, Error> {
    // SAFETY: plain kqueue(2).
    let kq = unsafe { libc::kqueue() };
    if kq < 0 {
        return Err(last_error("kqueue"));
    }
    let kq = Kqueue(kq);
    // SAFETY: all-zero is a valid kevent (integers and a null pointer).
    let mut change: libc::kevent = unsafe { std::mem::zeroed() };
    change.ident = target.pid as libc::uintptr_t;
    change.filter = libc::EVFILT_PROC;
    change.flags = libc::EV_ADD | libc::EV_ONESHOT;
    change.fflags = libc::NOTE_EXIT;
    // SAFETY: one valid change, no events asked for.
    let rc = unsafe { libc::kevent(kq.0, &change, 1, std::ptr::null_mut(), 0, std::ptr::null()) };
    if rc < 0 {
        return match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ESRCH) => Ok(true), // already gone
            _ => Err(last_error(&format!("watch PID {}", target.pid))),
        };
    }
    if ended(processes, target)? {
        return Ok(true);
    }
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = libc::timespec {
            tv_sec: left.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(left.subsec_nanos() as i32),
        };
        // SAFETY: all-zero is a valid kevent to be filled.
        let mut event: libc::kevent = unsafe { std::mem::zeroed() };
        // SAFETY: no changes; room for one event; a valid timeout.
        let n = unsafe { libc::kevent(kq.0, std::ptr::null(), 0, &mut event, 1, &timeout) };
        match n {
            1.. => return Ok(true),
            0 if left.is_zero() => return Ok(false),
            0 => continue,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {
                continue;
            }
            _ => return Err(last_error("kevent")),
        }
    }
}
