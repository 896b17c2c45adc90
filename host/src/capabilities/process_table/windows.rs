//! The process table on Windows: `sysinfo` for the name and command line,
//! and the process handle for the rest: its creation time (100 ns since
//! 1601: the start token), and whether it has ended. A process that ended
//! while someone still holds a handle to it keeps its PID and runs no code,
//! which is what a zombie is on Unix. Processes carry no uid here.

use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};

use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};
use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_INVALID_PARAMETER, FILETIME, GetLastError, HANDLE,
    INVALID_HANDLE_VALUE, WAIT_OBJECT_0,
};
use windows_sys::Win32::Security::{
    GetSidSubAuthority, GetSidSubAuthorityCount, GetTokenInformation, PSID, TOKEN_QUERY,
    TOKEN_USER, TokenUser,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, PROCESSENTRY32W, Process32FirstW, Process32NextW, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetProcessId, GetProcessTimes, OpenProcess, OpenProcessToken,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE, WaitForSingleObject,
};

use crate::bindings::bengal::pid_manager::process_table::{
    ProcessEntry, ProcessInfo, ProcessState,
};
use crate::bindings::bengal::pid_manager::types::{Error, Pid};

/// FILETIME ticks (100 ns) between 1601-01-01 and the UNIX epoch.
const EPOCH_TICKS: u64 = 116_444_736_000_000_000;

/// An open process handle, closed on drop. Like a pidfd, it pins the
/// process: the PID cannot be reused while it is open, so what is checked
/// through it and what is done through it concern one process.
pub struct Process(OwnedHandle);

impl Process {
    /// Open `pid` with `access` (plus the right to read its times and wait
    /// for it); the Win32 error code when it cannot be opened.
    /// `OpenProcess` ignores a PID's two low bits (PID 1237 opens process
    /// 1236): a handle whose process is not `pid` itself is refused as a
    /// PID no process has (`ERROR_INVALID_PARAMETER`, what `OpenProcess`
    /// answers for one).
    pub fn open(pid: Pid, access: u32) -> Result<Process, u32> {
        let access = access | PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE;
        // SAFETY: a plain call; a null result is the failure.
        let handle = unsafe { OpenProcess(access, 0, pid) };
        if handle.is_null() {
            // SAFETY: reads this thread's last error.
            return Err(unsafe { GetLastError() });
        }
        // SAFETY: a fresh handle that nothing else owns.
        let process = Process(unsafe { OwnedHandle::from_raw_handle(handle) });
        // SAFETY: a valid process handle.
        if unsafe { GetProcessId(process.handle()) } != pid {
            return Err(ERROR_INVALID_PARAMETER);
        }
        Ok(process)
    }

    /// The raw handle, for calls that act on it.
    pub fn handle(&self) -> HANDLE {
        self.0.as_raw_handle()
    }

    /// The creation time in FILETIME ticks (100 ns since 1601).
    pub fn created(&self) -> Result<u64, Error> {
        let mut times = [FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        }; 4];
        let [c, e, k, u] = &mut times;
        // SAFETY: four valid FILETIMEs to fill.
        if unsafe { GetProcessTimes(self.handle(), c, e, k, u) } == 0 {
            return Err(last_error("read a process's creation time"));
        }
        Ok(u64::from(times[0].dwHighDateTime) << 32 | u64::from(times[0].dwLowDateTime))
    }

    /// Whether it has ended (its handle is signalled).
    pub fn ended(&self) -> bool {
        // SAFETY: a zero-timeout wait on a handle we own.
        unsafe { WaitForSingleObject(self.handle(), 0) == WAIT_OBJECT_0 }
    }
}

/// The last Win32 error as the guest-visible error.
pub fn last_error(what: &str) -> Error {
    let e = std::io::Error::last_os_error();
    crate::capabilities::io_error(what, &e)
}

/// `OpenProcess`'s failure for `pid` as the guest-visible answer: a PID
/// that names no process is refused as an invalid parameter (not found);
/// access denied means it runs; anything else is an error, never "gone"
/// (a PID file must not be removed as stale on a transient failure).
pub fn open_error(pid: Pid, code: u32) -> Error {
    match code {
        ERROR_INVALID_PARAMETER => Error::NotFound,
        ERROR_ACCESS_DENIED => {
            Error::PermissionDenied(format!("PID {pid} runs, but this user may not open it"))
        }
        _ => Error::Io(format!(
            "PID {pid}: OpenProcess failed: {}",
            std::io::Error::from_raw_os_error(code as i32)
        )),
    }
}

/// `process-table.inspect`: `sysinfo`'s name and command line, the handle's
/// creation time and state (read after, so a PID reused in between shows
/// its new start).
pub fn inspect(system: &mut System, pid: Pid) -> Result<ProcessInfo, Error> {
    let mut info = super::portable::inspect(system, pid)?;
    let process = Process::open(pid, 0).map_err(|code| open_error(pid, code))?;
    let created = process.created()?;
    info.start_token = created;
    info.start_time_ms = created.saturating_sub(EPOCH_TICKS) / 10_000;
    if process.ended() {
        info.state = ProcessState::Zombie;
    }
    Ok(info)
}

/// `process-table.snapshot`: every process `sysinfo` lists with its parent
/// PID, pinned by the creation time read through a handle (a process no
/// handle opens for is left out: it could not be pinned). Parent PIDs are
/// never updated on Windows; the plugin ties a child only to an older
/// parent.
pub fn snapshot(system: &mut System) -> Vec<ProcessEntry> {
    system.refresh_processes_specifics(ProcessesToUpdate::All, true, ProcessRefreshKind::nothing());
    system
        .processes()
        .iter()
        .filter_map(|(pid, p)| {
            let pid = pid.as_u32();
            let process = Process::open(pid, 0).ok()?;
            Some(ProcessEntry {
                pid,
                parent: p.parent().map_or(0, |p| p.as_u32()),
                group: 0,
                start_token: process.created().ok()?,
                state: if process.ended() {
                    ProcessState::Zombie
                } else {
                    ProcessState::Running
                },
            })
        })
        .collect()
}

/// `process-table.state`: whether a handle opens, and whether it has ended.
pub fn state(pid: Pid) -> Result<ProcessState, Error> {
    match Process::open(pid, 0) {
        Ok(process) if process.ended() => Ok(ProcessState::Zombie),
        Ok(_) => Ok(ProcessState::Running),
        Err(ERROR_ACCESS_DENIED) => Ok(ProcessState::Running),
        Err(ERROR_INVALID_PARAMETER) => Ok(ProcessState::Gone),
        Err(code) => Err(open_error(pid, code)),
    }
}

/// The host process's parent: the process that started it, from a
/// Toolhelp snapshot, while that process still runs. Windows never updates
/// a parent PID: once the parent has ended, its PID may name a younger,
/// unrelated process, which is no parent (0: none). A table that cannot be
/// read is an error, never "no parent".
pub fn parent_pid() -> Result<Pid, Error> {
    let own = std::process::id();
    let parent = parent_in_snapshot(own)?;
    let parent_process = match Process::open(parent, 0) {
        Ok(process) => process,
        Err(ERROR_INVALID_PARAMETER) => return Ok(0),
        // A process runs with that PID, of a user whose processes this one
        // may not open: its age cannot be read. Taken for the parent, the
        // safer guess (the parent is never signalled, nor its file
        // removed).
        Err(ERROR_ACCESS_DENIED) => return Ok(parent),
        Err(code) => return Err(open_error(parent, code)),
    };
    if parent_process.ended() {
        return Ok(0);
    }
    let own_process = Process::open(own, 0).map_err(|code| open_error(own, code))?;
    Ok(if parent_process.created()? <= own_process.created()? {
        parent
    } else {
        0
    })
}

/// The parent PID Toolhelp records for `pid`.
fn parent_in_snapshot(pid: Pid) -> Result<Pid, Error> {
    // SAFETY: a plain call; INVALID_HANDLE_VALUE is the failure.
    let raw = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    if raw == INVALID_HANDLE_VALUE {
        return Err(last_error("list the processes (CreateToolhelp32Snapshot)"));
    }
    // SAFETY: a fresh handle that nothing else owns; closed on drop.
    let snapshot = unsafe { OwnedHandle::from_raw_handle(raw) };
    // SAFETY: PROCESSENTRY32W is plain data; all zeroes is a valid value.
    let mut entry: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
    entry.dwSize = std::mem::size_of::<PROCESSENTRY32W>() as u32;
    // SAFETY: a snapshot handle and an entry whose size is set.
    let mut more = unsafe { Process32FirstW(snapshot.as_raw_handle(), &mut entry) } != 0;
    while more {
        if entry.th32ProcessID == pid {
            return Ok(entry.th32ParentProcessID);
        }
        // SAFETY: as above.
        more = unsafe { Process32NextW(snapshot.as_raw_handle(), &mut entry) } != 0;
    }
    Err(Error::Io(format!(
        "PID {pid} is not in the process table's snapshot"
    )))
}

/// The last sub-authority (the relative id) of `sid`.
///
/// # Safety
/// `sid` must point to a valid SID.
pub unsafe fn rid(sid: PSID) -> u32 {
    // SAFETY: the caller's valid SID; its count is at least 1 for an account.
    unsafe {
        let count = u32::from(*GetSidSubAuthorityCount(sid));
        *GetSidSubAuthority(sid, count.saturating_sub(1))
    }
}

/// Call `f` with the SID of the account this process runs as.
pub fn with_own_sid<T>(f: impl FnOnce(PSID) -> T) -> Option<T> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: our own process's pseudo-handle; `token` receives a handle.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return None;
    }
    // SAFETY: a fresh handle that nothing else owns; closed on drop.
    let token = unsafe { OwnedHandle::from_raw_handle(token) };
    let mut buf = vec![0u64; 64]; // 512 bytes, 8-aligned: a TOKEN_USER and its SID
    let mut len = 0u32;
    // SAFETY: the buffer is valid for its length.
    let ok = unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            TokenUser,
            buf.as_mut_ptr().cast(),
            (buf.len() * 8) as u32,
            &mut len,
        )
    };
    if ok == 0 {
        return None;
    }
    // SAFETY: filled with a TOKEN_USER by the successful call.
    let user = unsafe { &*(buf.as_ptr() as *const TOKEN_USER) };
    Some(f(user.User.Sid))
}

/// This account's relative id: pidman's "uid" on Windows.
pub fn own_uid() -> u32 {
    // SAFETY: the token's SID is valid inside the closure.
    with_own_sid(|sid| unsafe { rid(sid) }).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use windows_sys::Win32::Foundation::{ERROR_NO_SYSTEM_RESOURCES, ERROR_NOT_ENOUGH_MEMORY};

    use super::*;

    #[test]
    fn only_no_such_process_reads_as_gone() {
        assert!(matches!(
            open_error(7, ERROR_INVALID_PARAMETER),
            Error::NotFound
        ));
        assert!(matches!(
            open_error(7, ERROR_ACCESS_DENIED),
            Error::PermissionDenied(_)
        ));
        // A transient failure is an error, never "gone": a live server's
        // PID file must not be removed for it.
        for code in [ERROR_NOT_ENOUGH_MEMORY, ERROR_NO_SYSTEM_RESOURCES] {
            assert!(matches!(open_error(7, code), Error::Io(_)), "{code}");
        }
    }

    #[test]
    fn the_parent_is_the_process_that_started_this_one() {
        // The test runner under Wine or Windows: its parent is cargo (or
        // Wine's start), which runs and is older, or none (0) when started
        // from Linux with no Windows parent. Never an error.
        let parent = parent_pid().expect("the parent can be read");
        assert_ne!(parent, std::process::id());
        if parent != 0 {
            let ours = Process::open(std::process::id(), 0)
                .unwrap()
                .created()
                .unwrap();
            let theirs = Process::open(parent, 0).unwrap().created().unwrap();
            assert!(theirs <= ours);
        }
    }
}
