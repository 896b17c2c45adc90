//! The process table on macOS: libproc's `proc_pidinfo(PROC_PIDTBSDINFO)`
//! for the start time (microseconds: the start token), the state and the
//! real uid; the name and command line from `sysinfo` (`KERN_PROCARGS2`).

use sysinfo::System;

use crate::bindings::bengal::pid_manager::process_table::{
    ProcessEntry, ProcessInfo, ProcessState,
};
use crate::bindings::bengal::pid_manager::types::{Error, Pid};

/// `SZOMB` in `sys/proc.h`: exited, not yet reaped.
const SZOMB: u32 = 5;

/// `struct proc_bsdinfo` for `pid`, if libproc describes it (not for a
/// process that is gone, and not always for a zombie, which has no task
/// left, or for another user's).
fn bsd_info(pid: Pid) -> Option<libc::proc_bsdinfo> {
    // SAFETY: all-zero is a valid proc_bsdinfo (integers and byte arrays).
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: the buffer is a proc_bsdinfo of `size` bytes.
    let got = unsafe {
        libc::proc_pidinfo(
            pid as libc::c_int,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    (got == size).then_some(info)
}

fn start_us(info: &libc::proc_bsdinfo) -> u64 {
    info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec
}

fn state_of(info: &libc::proc_bsdinfo) -> ProcessState {
    if info.pbi_status == SZOMB {
        ProcessState::Zombie
    } else {
        ProcessState::Running
    }
}

/// `process-table.inspect`: `sysinfo`'s name, command line and state, and
/// libproc's facts where it has them (read after, so a PID reused in
/// between shows its new start). Where libproc has none, `sysinfo`'s
/// whole-second start time stands, as [`start_token`] then answers too.
pub fn inspect(system: &mut System, pid: Pid) -> Result<ProcessInfo, Error> {
    let mut process = super::portable::inspect(system, pid)?;
    if let Some(info) = bsd_info(pid) {
        process.start_time_ms = start_us(&info) / 1_000;
        process.start_token = start_us(&info);
        process.uid = Some(info.pbi_ruid);
        process.state = state_of(&info);
        process.parent = info.pbi_ppid;
        process.group = info.pbi_pgid;
    }
    Ok(process)
}

/// `process-table.snapshot`: `proc_listallpids`, then libproc's facts for
/// each (a process it cannot describe, another user's zombie, say, is
/// left out: it could not be pinned).
pub fn snapshot() -> Result<Vec<ProcessEntry>, Error> {
    let mut pids: Vec<libc::c_int> = vec![0; 4096];
    loop {
        let bytes = (pids.len() * std::mem::size_of::<libc::c_int>()) as libc::c_int;
        // SAFETY: the buffer holds `bytes` bytes of c_int.
        let n = unsafe { libc::proc_listallpids(pids.as_mut_ptr().cast(), bytes) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return Err(crate::capabilities::io_error("the process list", &e));
        }
        let n = n as usize;
        if n < pids.len() {
            pids.truncate(n);
            break;
        }
        pids.resize(pids.len() * 2, 0); // it may have been cut: ask again
    }
    Ok(pids
        .into_iter()
        .filter(|&pid| pid > 0)
        .filter_map(|pid| {
            let info = bsd_info(pid as Pid)?;
            Some(ProcessEntry {
                pid: pid as Pid,
                parent: info.pbi_ppid,
                group: info.pbi_pgid,
                start_token: start_us(&info),
                state: state_of(&info),
            })
        })
        .collect())
}

/// `process-table.state`, if libproc can tell it.
pub fn state(pid: Pid) -> Option<ProcessState> {
    bsd_info(pid).map(|info| state_of(&info))
}

/// The start token (the start time in microseconds), if libproc has it.
pub fn start_token(pid: Pid) -> Option<u64> {
    bsd_info(pid).map(|info| start_us(&info))
}
