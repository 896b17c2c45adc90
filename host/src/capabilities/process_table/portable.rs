//! The process table from `sysinfo` alone, refreshing only the PID asked
//! for: where `/proc` is missing, and under `PIDMAN_PORTABLE=1`. macOS and
//! Windows start from it too, for the name and the command line, and then
//! put the OS's exact start time in.

use sysinfo::{ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};

use crate::bindings::bengal::pid_manager::process_table::{ProcessInfo, ProcessState};
use crate::bindings::bengal::pid_manager::types::{Error, Pid};

/// `pid` as `sysinfo` shows it. Its start time has whole seconds: it is
/// read as the last millisecond of that second, so that a process that
/// started after its PID file (a reused PID) never looks earlier than it
/// was; a server, which starts before it writes its file, still never looks
/// later than the file plus the guest's one-second slack.
pub fn inspect(system: &mut System, pid: Pid) -> Result<ProcessInfo, Error> {
    let spid = sysinfo::Pid::from_u32(pid);
    let kind = ProcessRefreshKind::nothing()
        .with_cmd(UpdateKind::Always)
        .with_user(UpdateKind::Always);
    system.refresh_processes_specifics(ProcessesToUpdate::Some(&[spid]), true, kind);
    let Some(process) = system.process(spid) else {
        // Not in the table: gone, or another user's that it cannot show.
        return Err(match super::probe(pid)? {
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
        start_time_ms: process.start_time() * 1_000 + 999,
        start_token: process.start_time(),
        uid: uid(process),
        state,
    })
}

#[cfg(unix)]
fn uid(process: &sysinfo::Process) -> Option<u32> {
    process.user_id().map(|uid| **uid)
}

/// Windows has SIDs, not uids: none is reported.
#[cfg(windows)]
fn uid(_process: &sysinfo::Process) -> Option<u32> {
    None
}
