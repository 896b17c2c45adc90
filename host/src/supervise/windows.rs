//! `pidman run` on Windows.
//!
//! There are no signals to block or forward: a console delivers Ctrl-C and
//! Ctrl-Break to every process attached to it, so the server, which shares
//! the wrapper's console, gets each one itself, once. The wrapper installs
//! a handler that records the event and keeps the wrapper alive (a handler
//! routine, unlike the "ignore Ctrl-C" flag, is not inherited by the
//! server); an event that arrives before the server starts stops the
//! wrapper instead, and the server never starts. There is no job control:
//! the server runs in the wrapper's console as it is.
//!
//! The server is created suspended, then put in a Job Object that ends
//! with the wrapper (`KILL_ON_JOB_CLOSE`), then let run: whatever it starts
//! (`npm.cmd`'s node, a reloader's child) is in the job before it can
//! start anything, and when the wrapper ends, however it ends (its server
//! exited, `taskkill /F`, the console closed), every process left in the
//! job ends too: none is left holding the port. (A browser the server
//! opened, when none was running, is in the job too, unless it asks to
//! break away, which the job allows.) A console event reaches only the
//! processes on the console's list, which a new process joins as it
//! starts: one that came after run's last look and before the server
//! joined ends the server (before it ran, when it came before its
//! creation).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, IntoRawHandle, OwnedHandle};
use std::os::windows::process::CommandExt;
use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
use windows_sys::Win32::System::Console::{
    CTRL_BREAK_EVENT, CTRL_C_EVENT, CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT,
    GetConsoleProcessList, SetConsoleCtrlHandler,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, TH32CS_SNAPTHREAD, THREADENTRY32, Thread32First, Thread32Next,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_BREAKAWAY_OK,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JobObjectExtendedLimitInformation, SetInformationJobObject,
};
use windows_sys::Win32::System::Threading::{
    CREATE_SUSPENDED, OpenThread, ResumeThread, THREAD_SUSPEND_RESUME,
};
use windows_sys::core::BOOL;

use super::Interrupt;

/// The first console event received, plus one (0: none yet).
static RECEIVED: AtomicU32 = AtomicU32::new(0);

/// `STATUS_CONTROL_C_EXIT`: how a console program that Ctrl-C ended exits.
const STATUS_CONTROL_C_EXIT: u32 = 0xC000_013A;

/// How long the wrapper may take to see its server out once the console
/// closes: Windows ends a process this long (5 s) after the event.
const CLOSE_GRACE: Duration = Duration::from_millis(4_500);

unsafe extern "system" fn on_console_event(event: u32) -> BOOL {
    let _ = RECEIVED.compare_exchange(0, event + 1, Ordering::SeqCst, Ordering::SeqCst);
    match event {
        CTRL_C_EVENT | CTRL_BREAK_EVENT => 1, // the wrapper stays to see the server out
        CTRL_CLOSE_EVENT | CTRL_LOGOFF_EVENT | CTRL_SHUTDOWN_EVENT => {
            // Windows ends the wrapper as soon as this returns: it waits
            // here instead, while the main thread sees the server (which had
            // the same event) out, releases the claim, removes the file and
            // exits the process.
            std::thread::sleep(CLOSE_GRACE);
            0
        }
        _ => 0,
    }
}

/// Take Ctrl-C and Ctrl-Break over, from now on.
pub fn block_forwarded() -> io::Result<()> {
    // SAFETY: a handler routine with the right signature, for the process's
    // whole life.
    if unsafe { SetConsoleCtrlHandler(Some(on_console_event), 1) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// No job control on Windows: the server never needs the terminal handed
/// over.
pub fn in_terminal_foreground() -> bool {
    false
}

/// Nothing to take back (see [`in_terminal_foreground`]).
pub fn reclaim_terminal() {}

/// A console event that arrived since [`block_forwarded`], if any: Ctrl-C
/// counts as SIGINT (2), Ctrl-Break as the C runtime's SIGBREAK (21).
/// The console closing, a logoff and a shutdown count as SIGHUP (1).
pub fn pending() -> Option<Interrupt> {
    let (name, number) = match RECEIVED.load(Ordering::SeqCst).checked_sub(1)? {
        CTRL_C_EVENT => ("CTRL_C_EVENT", 2),
        CTRL_BREAK_EVENT => ("CTRL_BREAK_EVENT", 21),
        CTRL_CLOSE_EVENT => ("CTRL_CLOSE_EVENT", 1),
        CTRL_LOGOFF_EVENT => ("CTRL_LOGOFF_EVENT", 1),
        _ => ("CTRL_SHUTDOWN_EVENT", 1),
    };
    Some(Interrupt { name, number })
}

/// Read one line from standard input; a console Ctrl-C that came while
/// it waited (recorded by the handler) makes it an interruption.
pub fn read_answer() -> super::Answer {
    use std::io::BufRead;
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if let Some(interrupt) = pending() {
        return super::Answer::Interrupted(interrupt);
    }
    match read {
        Ok(0) | Err(_) => super::Answer::End,
        Ok(_) => super::Answer::Line(line.trim_end_matches(['\n', '\r']).to_owned()),
    }
}

/// Start `command` as the server, in this console and in a job that ends
/// with the wrapper (see the module's docs). `Interrupted` when a console
/// event came before the server was on the console's list: the server is
/// gone (ended before it ran, or as it started).
pub fn spawn(command: &[OsString], _foreground: bool) -> io::Result<Child> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command"))?;
    let mut child = Command::new(resolve(program))
        .args(args)
        .creation_flags(CREATE_SUSPENDED)
        .spawn()?;
    let interrupted = |child: &mut Child| {
        end_server(child);
        io::Error::new(
            io::ErrorKind::Interrupted,
            "a console event came before the server was attached to the console",
        )
    };
    // An event that came after run's last look: the server never runs.
    if pending().is_some() {
        return Err(interrupted(&mut child));
    }
    if let Err(e) = hold_tree(&child) {
        eprintln!(
            "pidman: warning: the server is not in a job of its own ({e}): \
             what it starts may outlive run"
        );
    }
    // The instant a console event must not be lost in (test builds only).
    #[cfg(feature = "test-pause")]
    crate::capabilities::log::pause_here("resuming the server");
    if let Err(e) = resume(child.id()) {
        end_server(&mut child);
        return Err(io::Error::new(
            e.kind(),
            format!("cannot let the server run: {e}"),
        ));
    }
    // The console gives an event only to the processes on its list, and a
    // new process joins it as it starts: one that came before that reached
    // run alone. Looked for once the server is on the list (or, for one
    // that never joins, such as a program with no console, a moment later).
    wait_until_attached(child.id(), ATTACH_WAIT);
    if pending().is_some() {
        return Err(interrupted(&mut child));
    }
    Ok(child)
}

/// How long to wait for the server to join the console's list of
/// processes.
const ATTACH_WAIT: Duration = Duration::from_secs(2);

/// Wait (at most `limit`) until `pid` is on this console's list of
/// processes. Without a console there is no list: no wait.
fn wait_until_attached(pid: u32, limit: Duration) {
    let until = std::time::Instant::now() + limit;
    let mut listed = vec![0u32; 64];
    loop {
        // SAFETY: a buffer of the length given.
        let count = unsafe { GetConsoleProcessList(listed.as_mut_ptr(), listed.len() as u32) };
        if count == 0 {
            return; // no console
        }
        if count as usize > listed.len() {
            listed.resize(count as usize + 16, 0);
            continue;
        }
        if listed[..count as usize].contains(&pid) || std::time::Instant::now() >= until {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// End a server that was just created (and wait for it).
fn end_server(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// `program` as a console's shell finds it. A bare name is looked up in
/// `PATH` with each of `PATHEXT`'s extensions that `CreateProcess` can
/// run (`.COM`, `.EXE`, `.BAT`, `.CMD`; not `.JS` or `.VBS`) unless it
/// already ends with one, so `npm` runs `npm.cmd` (std's `Command` looks
/// for `npm.exe` only). A path, or a name found nowhere, is left as given
/// (and a missing program to `Command`'s own error). Unlike `cmd.exe`, the
/// current directory is never searched (nor is an empty or relative `PATH`
/// entry): a file in the project never shadows the user's tools. A `.cmd`
/// runs under `cmd.exe`, which asks "Terminate batch job (Y/N)?" after a
/// Ctrl-C, as it does in any console.
pub fn resolve(program: &OsStr) -> OsString {
    resolve_in(
        program,
        std::env::var_os("PATH"),
        std::env::var("PATHEXT").ok(),
    )
}

/// [`resolve`], in the directories `path` lists with `pathext`'s
/// extensions (Windows' default list when it is not set).
fn resolve_in(program: &OsStr, path: Option<OsString>, pathext: Option<String>) -> OsString {
    let name = Path::new(program);
    if name.components().count() != 1 {
        return program.into();
    }
    let pathext = pathext.unwrap_or_else(|| ".COM;.EXE;.BAT;.CMD".into());
    let runnable = [".COM", ".EXE", ".BAT", ".CMD"];
    let extensions: Vec<&str> = pathext
        .split(';')
        .filter(|e| runnable.iter().any(|r| r.eq_ignore_ascii_case(e)))
        .collect();
    let has_one = name.extension().is_some_and(|ext| {
        let ext = format!(".{}", ext.to_string_lossy());
        extensions.iter().any(|e| e.eq_ignore_ascii_case(&ext))
    });
    if has_one {
        return program.into();
    }
    let Some(path) = path else {
        return program.into();
    };
    for dir in std::env::split_paths(&path).filter(|dir| dir.is_absolute()) {
        for ext in &extensions {
            let mut file = program.to_owned();
            file.push(ext);
            let candidate = dir.join(file);
            if candidate.is_file() {
                return candidate.into_os_string();
            }
        }
    }
    program.into()
}

/// Put the (suspended) server in a new job that ends every process in it
/// when its last handle closes, and keep that handle for the wrapper's
/// life: the operating system closes it when the wrapper ends.
fn hold_tree(child: &Child) -> io::Result<()> {
    // SAFETY: an unnamed job with default security; null is the failure.
    let raw = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
    if raw.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh handle that nothing else owns.
    let job = unsafe { OwnedHandle::from_raw_handle(raw) };
    // SAFETY: plain data; all zeroes is "no limits".
    let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
    // A program that asks to leave the job (`CREATE_BREAKAWAY_FROM_JOB`, as
    // some browsers do) may: everything else stays in it.
    limits.BasicLimitInformation.LimitFlags =
        JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_BREAKAWAY_OK;
    // SAFETY: the job's handle and a limits record of the size given.
    let set = unsafe {
        SetInformationJobObject(
            job.as_raw_handle(),
            JobObjectExtendedLimitInformation,
            (&raw const limits).cast(),
            std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
        )
    };
    if set == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the job's handle and the child's process handle.
    if unsafe { AssignProcessToJobObject(job.as_raw_handle(), child.as_raw_handle()) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // Never closed by pidman: the job lasts exactly as long as the wrapper.
    let _ = job.into_raw_handle();
    Ok(())
}

/// Resume every thread of the suspended process `pid` (it has one: the
/// main thread `CREATE_SUSPENDED` left waiting).
fn resume(pid: u32) -> io::Result<()> {
    // SAFETY: a plain call; INVALID_HANDLE_VALUE is the failure.
    let raw = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
    if raw == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh handle that nothing else owns; closed on drop.
    let snapshot = unsafe { OwnedHandle::from_raw_handle(raw) };
    // SAFETY: THREADENTRY32 is plain data; all zeroes is a valid value.
    let mut entry: THREADENTRY32 = unsafe { std::mem::zeroed() };
    entry.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
    let mut resumed = 0;
    // SAFETY: a snapshot handle and an entry whose size is set.
    let mut more = unsafe { Thread32First(snapshot.as_raw_handle(), &mut entry) } != 0;
    while more {
        if entry.th32OwnerProcessID == pid {
            // SAFETY: a plain call; null is the failure.
            let thread = unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, entry.th32ThreadID) };
            if thread.is_null() {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a fresh handle that nothing else owns; closed on drop.
            let thread = unsafe { OwnedHandle::from_raw_handle(thread) };
            // SAFETY: a thread handle with THREAD_SUSPEND_RESUME.
            if unsafe { ResumeThread(thread.as_raw_handle()) } == u32::MAX {
                return Err(io::Error::last_os_error());
            }
            resumed += 1;
        }
        // SAFETY: as above.
        more = unsafe { Thread32Next(snapshot.as_raw_handle(), &mut entry) } != 0;
    }
    if resumed == 0 {
        return Err(io::Error::other("the server has no thread to resume"));
    }
    Ok(())
}

/// Whether the wrapper was told to stop: a console event arrived.
pub fn told_to_stop() -> bool {
    RECEIVED.load(Ordering::SeqCst) != 0
}

/// Wait for the server (the console gives it its events itself).
pub fn forward_until_exit(mut child: Child, _foreground: bool) -> io::Result<ExitStatus> {
    child.wait()
}

/// The wrapper's exit status for the server's: its code when it fits, 130
/// for a server that Ctrl-C ended, else 1 (never 0 for a failure).
pub fn exit_code(status: ExitStatus) -> u8 {
    match status.code().map(|c| c as u32) {
        Some(code @ 0..=255) => code as u8,
        Some(STATUS_CONTROL_C_EXIT) => 130,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use std::os::windows::process::ExitStatusExt;

    use super::*;

    #[test]
    fn a_bare_name_is_found_as_a_shell_finds_it() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        std::fs::write(first.path().join("npm.cmd"), "@echo npm").unwrap();
        std::fs::write(second.path().join("npm.exe"), "").unwrap();
        std::fs::write(second.path().join("vite.exe"), "").unwrap();
        std::fs::write(second.path().join("vite.cmd"), "").unwrap();
        let path = std::env::join_paths([first.path(), second.path()]).unwrap();
        // Windows names files case-insensitively (`npm.CMD` is npm.cmd).
        let find = |program: &str| {
            let found = resolve_in(OsStr::new(program), Some(path.clone()), None);
            PathBuf::from(found.to_string_lossy().to_lowercase())
        };
        let lower = |path: PathBuf| PathBuf::from(path.to_string_lossy().to_lowercase());
        // The first directory that has one, whichever extension.
        assert_eq!(find("npm"), lower(first.path().join("npm.cmd")));
        // In one directory, PATHEXT's order: .EXE before .CMD.
        assert_eq!(find("vite"), lower(second.path().join("vite.exe")));
        // Already with an extension of PATHEXT (in any case), a path, or
        // found nowhere: as given.
        for given in ["npm.cmd", "bengal.exe", r"tools\npm", "./npm", "nothing"] {
            assert_eq!(find(given), PathBuf::from(given), "{given}");
        }
        assert_eq!(
            resolve_in(OsStr::new("npm.CMD"), Some(path.clone()), None),
            OsString::from("npm.CMD")
        );
        // A name whose dot is no extension of PATHEXT is still looked up.
        std::fs::write(first.path().join("python3.13.exe"), "").unwrap();
        assert_eq!(
            find("python3.13"),
            lower(first.path().join("python3.13.exe"))
        );
        // Only what CreateProcess runs: a script PATHEXT names is not it.
        std::fs::write(first.path().join("tool.js"), "").unwrap();
        let with_js = Some(".JS;.EXE".to_owned());
        let tool = resolve_in(OsStr::new("tool"), Some(path.clone()), with_js);
        assert_eq!(tool, OsString::from("tool"));
        // PATHEXT as set, not the default.
        let only_bat = resolve_in(OsStr::new("npm"), Some(path.clone()), Some(".BAT".into()));
        assert_eq!(only_bat, OsString::from("npm"));
    }

    #[test]
    fn a_closing_console_is_recorded_and_run_is_given_time() {
        // The console's own event can't be staged here (Wine's consoles have
        // no window to close): the handler, called as Windows calls it, on
        // a thread of its own.
        let started = std::time::Instant::now();
        // SAFETY: the handler is a plain function of the event.
        let handler = std::thread::spawn(|| unsafe { on_console_event(CTRL_CLOSE_EVENT) });
        while pending().is_none() && started.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let seen = pending().map(|i| (i.name, i.number));
        assert_eq!(seen, Some(("CTRL_CLOSE_EVENT", 1)));
        assert!(told_to_stop());
        // Windows ends the process once the handler returns: it must hold
        // on while the main thread sees the server out.
        assert!(!handler.is_finished(), "the handler returned at once");
        assert_eq!(handler.join().unwrap(), 0);
        assert!(started.elapsed() >= CLOSE_GRACE);
    }

    #[test]
    fn a_server_ctrl_c_ended_exits_130() {
        assert_eq!(exit_code(ExitStatus::from_raw(STATUS_CONTROL_C_EXIT)), 130);
        assert_eq!(exit_code(ExitStatus::from_raw(3)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(256)), 1);
    }
}
