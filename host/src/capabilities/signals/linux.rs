//! Signals on Linux, through a pidfd: open it, check the start token, then
//! signal or poll that pidfd, so that the check and the act concern the
//! same process even if the PID is reused in between. Kernels without
//! `pidfd_open` (before 5.3), and `PIDMAN_PORTABLE=1`, take the portable
//! path.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::{ProcessTable, ended, portable, still_identified};
use crate::bindings::bengal::pid_manager::signals::Signal;
use crate::bindings::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};
use crate::capabilities::errno_error;

/// A pidfd for `pid`; none where the kernel has no `pidfd_open`.
fn pidfd_open(pid: Pid) -> Result<Option<OwnedFd>, Errno> {
    if crate::capabilities::portable() {
        return Ok(None);
    }
    // SAFETY: a raw syscall with plain integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return match Errno::last() {
            Errno::ENOSYS => Ok(None),
            e => Err(e),
        };
    }
    // SAFETY: the kernel returned a fresh descriptor we now own.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

/// `pidfd_send_signal(2)`.
fn pidfd_send_signal(fd: &OwnedFd, signo: libc::c_int) -> Result<(), Errno> {
    // SAFETY: a raw syscall on a pidfd we own, with no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signo,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == 0 { Ok(()) } else { Err(Errno::last()) }
}

fn not_a_process(pid: Pid) -> Error {
    Error::Invalid(format!("{pid} is a thread id, not a process"))
}

/// Send `signal` to exactly `target`.
pub fn send(
    processes: &mut ProcessTable,
    target: ProcessIdentity,
    signal: Signal,
) -> Result<(), Error> {
    let pid = target.pid;
    let pidfd = match pidfd_open(pid) {
        Ok(Some(fd)) => fd,
        Ok(None) => return portable::send(processes, target, signal),
        Err(Errno::ESRCH) => return Err(Error::NotFound),
        // `pidfd_open` refuses a thread that does not lead its process.
        Err(Errno::EINVAL) => return Err(not_a_process(pid)),
        Err(e) => return Err(errno_error(&format!("signal PID {pid}"), e)),
    };
    still_identified(processes, target)?;
    pidfd_send_signal(&pidfd, portable::signal_number(signal) as libc::c_int)
        .map_err(|e| portable::send_error(target, e))
}

/// Wait up to `timeout_ms` for `target` to end: poll its pidfd.
pub fn wait_exit(
    processes: &mut ProcessTable,
    target: ProcessIdentity,
    timeout_ms: u64,
) -> Result<bool, Error> {
    let fd = match pidfd_open(target.pid) {
        Ok(Some(fd)) => fd,
        Ok(None) => return portable::wait_exit(processes, target, timeout_ms),
        Err(Errno::ESRCH) => return Ok(true),
        Err(Errno::EINVAL) => return Err(not_a_process(target.pid)),
        Err(e) => return Err(errno_error(&format!("watch PID {}", target.pid), e)),
    };
    if ended(processes, target)? {
        return Ok(true);
    }
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, wait) {
            Ok(0) if left.is_zero() => return Ok(false),
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(errno_error("poll a pidfd", e)),
        }
    }
}
