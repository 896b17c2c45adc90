//! The process table on macOS: libproc's `proc_pidinfo(PROC_PIDTBSDINFO)`
//! for the start time (microseconds: the start token), the state and the
//! real uid; the name and command line from `sysinfo` (`KERN_PROCARGS2`).

use sysinfo::System;

use crate::bindings::bengal::pid_manager::process_table::{ProcessInfo, ProcessState};
use crate::bindings::bengal::pid_manager::types::{Error, Pid};

/// `SZOMB` in `sys/proc.h`: exited, not yet reaped.
const SZOMB: u32 = 5;

/// `struct proc_bsdinfo` for `pid`.
fn bsd_info(pid: Pid) -> Result<libc::proc_bsdinfo, Error> {
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
    if got == size {
        return Ok(info);
    }
    // proc_pidinfo answers 0 with errno ESRCH for a gone process, EPERM for
    // one this user may not read.
    match super::probe(pid)? {
        ProcessState::Gone => Err(Error::NotFound),
        _ => Err(Error::PermissionDenied(format!(
            "PID {pid} runs, but libproc does not describe it to this user"
        ))),
    }
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

/// `process-table.inspect`: `sysinfo`'s name and command line, libproc's
/// facts (read after, so a PID reused in between shows its new start).
pub fn inspect(system: &mut System, pid: Pid) -> Result<ProcessInfo, Error> {
    let mut process = super::portable::inspect(system, pid)?;
    let info = bsd_info(pid)?;
    process.start_time_ms = start_us(&info) / 1_000;
    process.start_token = start_us(&info);
    process.uid = Some(info.pbi_ruid);
    process.state = state_of(&info);
    Ok(process)
}

/// `process-table.state`.
pub fn state(pid: Pid) -> Result<ProcessState, Error> {
    match bsd_info(pid) {
        Ok(info) => Ok(state_of(&info)),
        Err(Error::NotFound) => Ok(ProcessState::Gone),
        Err(Error::PermissionDenied(_)) => Ok(ProcessState::Running),
        Err(e) => Err(e),
    }
}

/// The start token: the start time in microseconds.
pub fn start_token(pid: Pid) -> Result<u64, Error> {
    bsd_info(pid).map(|info| start_us(&info))
}
