//! `process-table`: facts about processes, one implementation per OS
//! behind the same functions:
//!
//! - [`linux`]: `/proc`; the start time in clock ticks is the exact start
//!   token (10 ms).
//! - `macos`: libproc's `proc_pidinfo` (start time in microseconds, state,
//!   real uid), the command line from `sysinfo` (`KERN_PROCARGS2`); where
//!   libproc cannot describe a process (some zombies, other users'),
//!   `sysinfo` alone.
//! - `windows`: the process's creation time (100 ns) from its handle, the
//!   command line from `sysinfo`; no uid (accounts are SIDs there).
//! - [`portable`]: `sysinfo` alone (start times in whole seconds): where
//!   `/proc` is missing, and on Linux under `PIDMAN_PORTABLE=1`, so that
//!   the code other systems share runs in the test suite here.

#[cfg(target_os = "linux")]
pub mod linux;
#[cfg(target_os = "macos")]
mod macos;
pub mod portable;
#[cfg(windows)]
pub(crate) mod windows;

use sysinfo::System;

use crate::bindings::bengal::pid_manager::process_table::{
    ProcessEntry, ProcessInfo, ProcessState,
};
use crate::bindings::bengal::pid_manager::types::{Error, Pid};

/// The host side of the process table: one `sysinfo::System`, made on
/// first use and reused (only the portable, macOS and Windows paths use it).
#[derive(Default)]
pub struct ProcessTable {
    system: Option<System>,
}

impl ProcessTable {
    fn system(&mut self) -> Result<&mut System, Error> {
        if self.system.is_none() {
            let system = System::new()
                .map_err(|e| Error::Unsupported(format!("no process table here: {e}")))?;
            self.system = Some(system);
        }
        Ok(self.system.as_mut().expect("just made"))
    }

    /// Everything known about `pid`, freshly read.
    pub fn inspect(&mut self, pid: Pid) -> Result<ProcessInfo, Error> {
        if !plausible(pid) {
            return Err(Error::NotFound);
        }
        #[cfg(target_os = "linux")]
        if linux::available() {
            return linux::inspect(pid);
        }
        #[cfg(target_os = "macos")]
        if !super::portable() {
            return macos::inspect(self.system()?, pid);
        }
        #[cfg(windows)]
        {
            windows::inspect(self.system()?, pid)
        }
        #[cfg(not(windows))]
        {
            portable::inspect(self.system()?, pid)
        }
    }
}

/// `process-table.snapshot`: every process, one pass.
pub fn snapshot(table: &mut ProcessTable) -> Result<Vec<ProcessEntry>, Error> {
    #[cfg(target_os = "linux")]
    if linux::available() {
        return linux::snapshot();
    }
    #[cfg(target_os = "macos")]
    if !super::portable() {
        return macos::snapshot();
    }
    #[cfg(windows)]
    {
        Ok(windows::snapshot(table.system()?))
    }
    #[cfg(not(windows))]
    {
        Ok(portable::snapshot(table.system()?))
    }
}

/// A PID the OS could have: 1 to `i32::MAX` (`pid_t`).
fn plausible(pid: Pid) -> bool {
    pid != 0 && pid <= i32::MAX as u32
}

/// Running, zombie (ended, not yet reaped) or gone.
pub fn state(table: &mut ProcessTable, pid: Pid) -> Result<ProcessState, Error> {
    if !plausible(pid) {
        return Ok(ProcessState::Gone);
    }
    #[cfg(target_os = "linux")]
    if linux::available() {
        return linux::state(pid);
    }
    #[cfg(target_os = "macos")]
    if !super::portable()
        && let Some(state) = macos::state(pid)
    {
        return Ok(state);
    }
    // The table sees zombies, where `kill(pid, 0)` cannot; a process it
    // cannot show is confirmed by the probe. (Windows: the handle tells.)
    match table.inspect(pid) {
        Ok(info) => Ok(info.state),
        Err(_) => probe(pid),
    }
}

/// The exact start token of `pid` now, if it runs. (Windows reads it
/// from the process handle it acts through.)
#[cfg(unix)]
pub fn start_token(table: &mut ProcessTable, pid: Pid) -> Result<u64, Error> {
    #[cfg(target_os = "linux")]
    if linux::available() {
        return linux::start_token(pid);
    }
    #[cfg(target_os = "macos")]
    if !super::portable()
        && let Some(token) = macos::start_token(pid)
    {
        return Ok(token);
    }
    table.inspect(pid).map(|info| info.start_token)
}

/// Whether `pid` exists, asked of the kernel without reading about it:
/// `kill(pid, 0)`, for which EPERM means alive.
#[cfg(unix)]
pub fn probe(pid: Pid) -> Result<ProcessState, Error> {
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None) {
        Ok(()) | Err(Errno::EPERM) => Ok(ProcessState::Running),
        Err(Errno::ESRCH) => Ok(ProcessState::Gone),
        Err(e) => Err(super::errno_error(&format!("PID {pid}"), e)),
    }
}

/// Whether `pid` exists: whether a handle to it opens.
#[cfg(windows)]
pub fn probe(pid: Pid) -> Result<ProcessState, Error> {
    windows::state(pid)
}

/// The host process's parent (an orphan's is the process that adopted
/// it).
#[cfg(unix)]
pub fn parent_pid() -> Result<Pid, Error> {
    Ok(nix::unistd::getppid().as_raw() as Pid)
}

/// The host process's parent, 0 once it has ended (see
/// [`windows::parent_pid`]).
#[cfg(windows)]
pub fn parent_pid() -> Result<Pid, Error> {
    windows::parent_pid()
}

/// The user the host runs as: the effective uid.
#[cfg(unix)]
pub fn own_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The user the host runs as: the relative id (RID) of its account's SID
/// (see `files::windows` for how file owners map to it).
#[cfg(windows)]
pub fn own_uid() -> u32 {
    windows::own_uid()
}
