//! `process-table`: facts about processes. On Linux straight from `/proc`
//! ([`crate::procfs`]: the start time in clock ticks is the exact start
//! token and gives 10 ms precision); elsewhere from `sysinfo`, refreshing
//! only the PID asked for (start times in whole seconds).

use sysinfo::{ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};

use crate::plugin::bindings::bengal::pid_manager::process_table::{ProcessInfo, ProcessState};
use crate::plugin::bindings::bengal::pid_manager::types::{Error, Pid};
use crate::procfs;

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
        if procfs::available() {
            let p = procfs::read(pid).map_err(|e| super::io_error(&format!("PID {pid}"), &e))?;
            return Ok(ProcessInfo {
                pid,
                name: p.name,
                argv: p.argv,
                start_time_ms: p.start_time_ms,
                start_token: p.start_ticks,
                uid: Some(p.uid),
                state: if p.zombie {
                    ProcessState::Zombie
                } else {
                    ProcessState::Running
                },
            });
        }
        let spid = sysinfo::Pid::from_u32(pid);
        let kind = ProcessRefreshKind::nothing()
            .with_cmd(UpdateKind::Always)
            .with_user(UpdateKind::Always);
        let system = self.system()?;
        system.refresh_processes_specifics(ProcessesToUpdate::Some(&[spid]), true, kind);
        let process = system.process(spid).ok_or(Error::NotFound)?;
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
            start_time_ms: process.start_time() * 1_000,
            start_token: process.start_time(),
            uid: process.user_id().map(|uid| **uid),
            state,
        })
    }
}

/// Running, zombie or gone, by `kill(pid, 0)` (EPERM means it exists) and,
/// on Linux, the state letter in `/proc/<pid>/stat`.
pub fn state(pid: Pid) -> Result<ProcessState, Error> {
    if pid == 0 || pid > i32::MAX as u32 {
        return Ok(ProcessState::Gone);
    }
    if procfs::available() {
        match procfs::stat(pid) {
            Ok(stat) if stat.zombie => return Ok(ProcessState::Zombie),
            Ok(_) => return Ok(ProcessState::Running),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ProcessState::Gone),
            Err(_) => {} // unreadable: ask kill(2) below
        }
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => Ok(ProcessState::Running),
        Err(nix::errno::Errno::ESRCH) => Ok(ProcessState::Gone),
        Err(e) => Err(super::errno_error(&format!("PID {pid}"), e)),
    }
}

/// The exact start token of `pid` now, if it runs and the platform has one.
pub fn start_token(table: &mut ProcessTable, pid: Pid) -> Result<u64, Error> {
    if procfs::available() {
        return procfs::stat(pid)
            .map(|stat| stat.start_ticks)
            .map_err(|e| super::io_error(&format!("PID {pid}"), &e));
    }
    table.inspect(pid).map(|info| info.start_token)
}
