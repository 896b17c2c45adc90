//! `signals`: SIGTERM / SIGKILL to exactly the identified process, and
//! waiting for it to end. On Linux both go through a pidfd: open it, check
//! that the process behind the PID still has the expected start token, then
//! signal or poll the pidfd, so the check and the act are about the same
//! process. Where pidfds are missing: `kill(2)` after the same check, and
//! `/proc` polling with a short backoff.
//!
//! Which PIDs may never be signalled is the gate's rule (`gate.rs`),
//! applied before a request gets here.

use std::os::fd::{AsFd, OwnedFd};
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::process_table::{self, ProcessTable};
use crate::bindings::bengal::pid_manager::process_table::ProcessState;
use crate::bindings::bengal::pid_manager::signals::Signal;
use crate::bindings::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};

/// A pidfd for `pid`; none where the kernel has no `pidfd_open` (Linux < 5.3).
#[cfg(target_os = "linux")]
fn pidfd_open(pid: Pid) -> Result<Option<OwnedFd>, Errno> {
    if super::portable() {
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

/// `pidfd_open` refuses a thread that does not lead its process.
/// No pidfds off Linux: signals and waits take the `kill(2)` and polling
/// path, after the same start-token check.
#[cfg(not(target_os = "linux"))]
fn pidfd_open(_pid: Pid) -> Result<Option<OwnedFd>, Errno> {
    Ok(None)
}

/// `pidfd_send_signal(2)`.
#[cfg(target_os = "linux")]
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

#[cfg(not(target_os = "linux"))]
fn pidfd_send_signal(_fd: &OwnedFd, _signo: libc::c_int) -> Result<(), Errno> {
    unreachable!("no pidfd is ever opened off Linux")
}

fn not_a_process(pid: Pid) -> Error {
    Error::Invalid(format!("{pid} is a thread id, not a process"))
}

fn signal_number(signal: Signal) -> nix::sys::signal::Signal {
    match signal {
        Signal::Term => nix::sys::signal::Signal::SIGTERM,
        Signal::Kill => nix::sys::signal::Signal::SIGKILL,
        Signal::Cont => nix::sys::signal::Signal::SIGCONT,
    }
}

/// Whether the process behind `target.pid` is still the identified one.
fn still_identified(processes: &mut ProcessTable, target: ProcessIdentity) -> Result<(), Error> {
    match process_table::start_token(processes, target.pid) {
        Ok(token) if token == target.start_token => Ok(()),
        Ok(_) => Err(Error::Changed),
        Err(e) => Err(e),
    }
}

/// Send `signal` to exactly `target`.
pub fn send(
    processes: &mut ProcessTable,
    target: ProcessIdentity,
    signal: Signal,
) -> Result<(), Error> {
    let pid = target.pid;
    let what = format!("signal PID {pid}");
    let pidfd = match pidfd_open(pid) {
        Ok(fd) => fd,
        Err(Errno::ESRCH) => return Err(Error::NotFound),
        Err(Errno::EINVAL) => return Err(not_a_process(pid)),
        Err(e) => return Err(super::errno_error(&what, e)),
    };
    still_identified(processes, target)?;
    let signo = signal_number(signal) as libc::c_int;
    let sent = match &pidfd {
        Some(fd) => pidfd_send_signal(fd, signo),
        None => nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            signal_number(signal),
        ),
    };
    match sent {
        Ok(()) => Ok(()),
        Err(Errno::ESRCH) => Err(Error::NotFound),
        Err(Errno::EPERM) => Err(Error::PermissionDenied(format!(
            "{what}: operation not permitted"
        ))),
        Err(e) => Err(super::errno_error(&what, e)),
    }
}

/// Wait up to `timeout_ms` for `target` to end (a zombie has ended).
pub fn wait_exit(
    processes: &mut ProcessTable,
    target: ProcessIdentity,
    timeout_ms: u64,
) -> Result<bool, Error> {
    let pidfd = match pidfd_open(target.pid) {
        Ok(fd) => fd,
        Err(Errno::ESRCH) => return Ok(true),
        Err(Errno::EINVAL) => return Err(not_a_process(target.pid)),
        Err(e) => return Err(super::errno_error(&format!("watch PID {}", target.pid), e)),
    };
    match still_identified(processes, target) {
        Ok(()) => {}
        Err(Error::NotFound | Error::Changed) => return Ok(true),
        Err(e) => return Err(e),
    }
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    match pidfd {
        Some(fd) => loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32)
                .unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, wait) {
                Ok(0) if left.is_zero() => return Ok(false),
                Ok(0) => continue,
                Ok(_) => return Ok(true),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(super::errno_error("poll a pidfd", e)),
            }
        },
        None => {
            let mut pause = Duration::from_millis(1);
            loop {
                if process_table::state(processes, target.pid)? != ProcessState::Running
                    || still_identified(processes, target).is_err()
                {
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
    }
}
