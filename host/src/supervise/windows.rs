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

use std::ffi::OsString;
use std::io;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};

use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, CTRL_C_EVENT, SetConsoleCtrlHandler};
use windows_sys::core::BOOL;

use super::Interrupt;

/// The first console event received, plus one (0: none yet).
static RECEIVED: AtomicU32 = AtomicU32::new(0);

/// `STATUS_CONTROL_C_EXIT`: how a console program that Ctrl-C ended exits.
const STATUS_CONTROL_C_EXIT: u32 = 0xC000_013A;

unsafe extern "system" fn on_console_event(event: u32) -> BOOL {
    match event {
        CTRL_C_EVENT | CTRL_BREAK_EVENT => {
            let _ = RECEIVED.compare_exchange(0, event + 1, Ordering::SeqCst, Ordering::SeqCst);
            1 // handled: the wrapper stays to see the server out
        }
        _ => 0, // closing the console or logging off: the default (exit)
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
pub fn pending() -> Option<Interrupt> {
    match RECEIVED.load(Ordering::SeqCst).checked_sub(1)? {
        CTRL_C_EVENT => Some(Interrupt {
            name: "CTRL_C_EVENT",
            number: 2,
        }),
        _ => Some(Interrupt {
            name: "CTRL_BREAK_EVENT",
            number: 21,
        }),
    }
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

/// Start `command` as the server, in this console.
pub fn spawn(command: &[OsString], _foreground: bool) -> io::Result<Child> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command"))?;
    Command::new(program).args(args).spawn()
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
