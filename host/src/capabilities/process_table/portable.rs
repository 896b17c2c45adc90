//! The process table from `sysinfo` alone, refreshing only the PID asked
//! for: where `/proc` is missing, and under `PIDMAN_PORTABLE=1`. macOS and
//! Windows start from it too, for the name and the command line, and then
//! put the OS's exact start time in.

use sysinfo::{ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};

#[cfg(not(windows))]
use crate::bindings::bengal::pid_manager::process_table::ProcessEntry;
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
        state: state_of(process),
        parent: process.parent().map_or(0, |p| p.as_u32()),
        group: group_of(pid),
        session: session_of(pid),
    })
}

/// The session of `pid` (`getsid`); 0 when it cannot be read.
#[cfg(unix)]
pub fn session_of(pid: Pid) -> Pid {
    nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid as i32)))
        .map_or(0, |s| s.as_raw() as Pid)
}

/// Windows sessions are not Unix sessions: none is reported.
#[cfg(windows)]
pub fn session_of(_pid: Pid) -> Pid {
    0
}

fn state_of(process: &sysinfo::Process) -> ProcessState {
    match process.status() {
        ProcessStatus::Zombie | ProcessStatus::Dead => ProcessState::Zombie,
        _ => ProcessState::Running,
    }
}

/// `process-table.snapshot` from one `sysinfo` refresh of every process
/// (start tokens as [`inspect`] reports them: whole seconds). Windows pins
/// its entries through handles instead (`windows::snapshot`).
#[cfg(not(windows))]
pub fn snapshot(system: &mut System) -> Vec<ProcessEntry> {
    system.refresh_processes_specifics(ProcessesToUpdate::All, true, ProcessRefreshKind::nothing());
    system
        .processes()
        .iter()
        .filter(|(_, p)| p.thread_kind().is_none())
        .map(|(pid, p)| ProcessEntry {
            pid: pid.as_u32(),
            parent: p.parent().map_or(0, |p| p.as_u32()),
            group: group_of(pid.as_u32()),
            start_token: p.start_time(),
            state: state_of(p),
        })
        .collect()
}

/// The process group of `pid` (`getpgid`); 0 when it cannot be read.
#[cfg(unix)]
pub fn group_of(pid: Pid) -> Pid {
    nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid as i32)))
        .map_or(0, |g| g.as_raw() as Pid)
}

/// Windows has no process groups.
#[cfg(windows)]
pub fn group_of(_pid: Pid) -> Pid {
    0
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
