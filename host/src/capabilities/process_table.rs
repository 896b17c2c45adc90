//! `process-table`: facts about processes. On Linux straight from `/proc`
//! ([`super::procfs`]: the start time in clock ticks is the exact start
//! token and gives 10 ms precision); elsewhere from `sysinfo`, refreshing
//! only the PID asked for (start times in whole seconds).

use sysinfo::{ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};

#[cfg(target_os = "linux")]
use super::procfs;
use crate::bindings::bengal::pid_manager::process_table::{ProcessInfo, ProcessState};
use crate::bindings::bengal::pid_manager::types::{Error, Pid};

/// The host side of the process table: one `sysinfo::System`, made on
/// first use and reused.
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

    /// Everything known about `pid`, freshly read: from `/proc` on Linux,
    /// else from `sysinfo` (refreshing only this PID).
    pub fn inspect(&mut self, pid: Pid) -> Result<ProcessInfo, Error> {
        if pid == 0 || pid > i32::MAX as u32 {
            return Err(Error::NotFound);
        }
        #[cfg(target_os = "linux")]
        if procfs::available() {
            let p = match procfs::read(pid) {
                Ok(p) => p,
                Err(e) => return Err(confirm_unreadable(pid, &e)),
            };
            if p.tgid != pid {
                return Err(thread_of(pid, p.tgid));
            }
            return Ok(crate::process_info!(ProcessInfo, ProcessState, pid, p));
        }
        let spid = sysinfo::Pid::from_u32(pid);
        let kind = ProcessRefreshKind::nothing()
            .with_cmd(UpdateKind::Always)
            .with_user(UpdateKind::Always);
        let system = self.system()?;
        system.refresh_processes_specifics(ProcessesToUpdate::Some(&[spid]), true, kind);
        let Some(process) = system.process(spid) else {
            // Not in the table: gone, or another user's that it cannot show.
            return Err(match state_by_kill(pid)? {
                ProcessState::Gone => Error::NotFound,
                _ => Error::PermissionDenied(format!(
                    "PID {pid} runs, but the process table cannot show it to this user"
                )),
            });
        };
        let state = match process.status() {
            ProcessStatus::Zombie | ProcessStatus::Dead => ProcessState::Zombie,
            _ => ProcessState::Running,
        };
        Ok(ProcessInfo {
            pid,
            name: process.name().to_string_lossy().into_owned(),
            argv: process
                .cmd()
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            // Whole seconds: the last millisecond of that second, so that a
            // process that started after its PID file (a reused PID) never
            // looks earlier than it was; a server, which starts before it
            // writes its file, still never looks later than the file plus
            // the guest's one-second slack.
            start_time_ms: process.start_time() * 1_000 + 999,
            start_token: process.start_time(),
            uid: process.user_id().map(|uid| **uid),
            state,
        })
    }
}

/// The error for a thread id that does not lead its process.
#[cfg(target_os = "linux")]
fn thread_of(tid: Pid, tgid: u32) -> Error {
    Error::Invalid(format!(
        "{tid} is a thread of process {tgid}, not a process"
    ))
}

/// `/proc` could not tell about `pid`: a missing entry may still be a live
/// process that `/proc` hides from us (`hidepid`), so ask `kill(pid, 0)`,
/// for which EPERM means alive.
#[cfg(target_os = "linux")]
fn confirm_unreadable(pid: Pid, e: &std::io::Error) -> Error {
    let what = format!("PID {pid}");
    match super::io_error(&what, e) {
        Error::NotFound => match state_by_kill(pid) {
            Ok(ProcessState::Gone) => Error::NotFound,
            Ok(_) => {
                Error::PermissionDenied(format!("{what} runs, but /proc hides it from this user"))
            }
            Err(e) => e,
        },
        other => other,
    }
}

/// Running, zombie or gone: on Linux the state in `/proc/<pid>/status`
/// (which also tells a thread id from a PID); elsewhere the process table's
/// (`sysinfo`, which sees zombies, where `kill(pid, 0)` cannot). A process
/// neither shows is confirmed by `kill(pid, 0)`: EPERM means it exists.
pub fn state(table: &mut ProcessTable, pid: Pid) -> Result<ProcessState, Error> {
    if pid == 0 || pid > i32::MAX as u32 {
        return Ok(ProcessState::Gone);
    }
    #[cfg(target_os = "linux")]
    if procfs::available() {
        match procfs::status(pid) {
            Ok(status) if status.tgid != pid => return Err(thread_of(pid, status.tgid)),
            Ok(status) if status.zombie => return Ok(ProcessState::Zombie),
            Ok(_) => return Ok(ProcessState::Running),
            Err(_) => return state_by_kill(pid), // missing or hidden
        }
    }
    match table.inspect(pid) {
        Ok(info) => Ok(info.state),
        Err(_) => state_by_kill(pid),
    }
}

fn state_by_kill(pid: Pid) -> Result<ProcessState, Error> {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => Ok(ProcessState::Running),
        Err(nix::errno::Errno::ESRCH) => Ok(ProcessState::Gone),
        Err(e) => Err(super::errno_error(&format!("PID {pid}"), e)),
    }
}

/// The exact start token of `pid` now, if it runs and the platform has one.
pub fn start_token(table: &mut ProcessTable, pid: Pid) -> Result<u64, Error> {
    #[cfg(target_os = "linux")]
    if procfs::available() {
        return procfs::stat(pid)
            .map(|stat| stat.start_ticks)
            .map_err(|e| super::io_error(&format!("PID {pid}"), &e));
    }
    table.inspect(pid).map(|info| info.start_token)
}
