//! `pidman run` on the Unix systems (Linux and macOS).
//!
//! The wrapper blocks SIGINT, SIGTERM and SIGHUP in every thread before it
//! does anything else, so that none is lost while it checks and claims; a
//! signal that arrives before the server starts stops the wrapper instead
//! (the server never starts). The server starts with an empty signal mask
//! and default dispositions (never the wrapper's), in a process group of
//! its own, and inherits no descriptor of the claim. When the wrapper runs
//! in the foreground of a terminal, the server's group gets the terminal
//! (as a shell's job control does): it can read it, and a Ctrl-C reaches
//! it once, from the terminal; the wrapper takes the terminal back when
//! the server ends. A thread takes each signal sent to the wrapper with
//! `sigwait` and forwards it once: SIGINT and SIGHUP to the server's
//! process group, SIGTERM to the server, each followed by SIGCONT.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::unistd::Pid as NixPid;

use super::Interrupt;

/// Whether a signal was forwarded to the server: the wrapper was told to
/// stop, and stops what is left of the server's tree once it exits.
static TOLD_TO_STOP: AtomicBool = AtomicBool::new(false);

/// Whether the wrapper was told to stop (a signal it forwarded).
pub fn told_to_stop() -> bool {
    TOLD_TO_STOP.load(Ordering::SeqCst)
}

/// The signals the wrapper forwards.
pub fn forwarded() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// Block the forwarded signals in this thread and every thread it starts,
/// and SIGTTOU (so that the wrapper can take the terminal back from the
/// background).
pub fn block_forwarded() -> io::Result<()> {
    let mut set = forwarded();
    set.add(Signal::SIGTTOU);
    set.thread_block().map_err(io::Error::from)
}

/// Whether this process runs in the foreground of the terminal on its
/// standard input (so the server should get that terminal).
pub fn in_terminal_foreground() -> bool {
    // SAFETY: plain calls on descriptor 0 and our own process group.
    unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// Take the terminal back for this process's group (after the server ran
/// in the foreground). SIGTTOU is blocked, so a background caller may.
pub fn reclaim_terminal() {
    // SAFETY: plain calls on descriptor 0 and our own process group.
    unsafe {
        libc::tcsetpgrp(0, libc::getpgrp());
    }
}

/// A forwarded signal that arrived (and waits, blocked) since
/// [`block_forwarded`], if any.
pub fn pending() -> Option<Interrupt> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigpending fills the set it is given.
    if unsafe { libc::sigpending(set.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: initialised by the successful call above.
    let set = unsafe { set.assume_init() };
    [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP]
        .into_iter()
        // SAFETY: sigismember reads a valid set.
        .find(|&s| unsafe { libc::sigismember(&set, s as libc::c_int) } == 1)
        .map(|s| Interrupt {
            name: s.as_str(),
            number: s as u8,
        })
}

/// Read one line from standard input, watching for a forwarded signal
/// meanwhile: once [`block_forwarded`] ran (`run`), Ctrl-C at a prompt is
/// held pending instead of ending the process, and a plain read would wait
/// through it for a line.
pub fn read_answer() -> super::Answer {
    use std::io::BufRead;
    use std::os::fd::AsFd;

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    loop {
        if let Some(interrupt) = pending() {
            return super::Answer::Interrupted(interrupt);
        }
        let stdin = std::io::stdin();
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(50u16)) {
            Ok(0) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return super::Answer::End,
            Ok(_) => {}
        }
        // Readable: on a terminal, a whole line (or end of input) is there.
        let mut line = String::new();
        return match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => super::Answer::End,
            Ok(_) => super::Answer::Line(line.trim_end_matches(['\n', '\r']).to_owned()),
        };
    }
}

/// Start `command` as the server: empty signal mask, default dispositions,
/// its own process group, which gets the terminal when `foreground`.
pub fn spawn(command: &[OsString], foreground: bool) -> io::Result<Child> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: only async-signal-safe calls (raw rt_sigaction, sigemptyset,
    // sigprocmask, setpgid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Its own group first, then (SIGTTOU still blocked, inherited)
            // the terminal, before anything of the server runs.
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if foreground {
                libc::tcsetpgrp(0, libc::getpid());
            }
            reset_dispositions();
            let mut empty = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(empty.as_mut_ptr());
            if libc::sigprocmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Every signal's disposition back to the default, in the child before
/// exec: an ignored signal would stay ignored across exec. On Linux the raw
/// syscall, because glibc's wrapper refuses its own real-time signals (32,
/// 33), which a parent may still have ignored.
///
/// # Safety
/// Between fork and exec only: async-signal-safe calls, no allocation.
#[cfg(target_os = "linux")]
unsafe fn reset_dispositions() {
    // The kernel's `struct sigaction`, all zero: SIG_DFL, no flags, no
    // restorer, an empty mask.
    let default = [0u64; 4];
    for signal in 1..=64 {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP {
            // SAFETY: a raw syscall with a valid, zeroed action.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    default.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                );
            }
        }
    }
}

/// # Safety
/// Between fork and exec only: async-signal-safe calls, no allocation.
#[cfg(not(target_os = "linux"))]
unsafe fn reset_dispositions() {
    // SAFETY: an all-zero sigaction is SIG_DFL with an empty mask.
    let mut default: libc::sigaction = unsafe { std::mem::zeroed() };
    default.sa_sigaction = libc::SIG_DFL;
    for signal in 1..32 {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP {
            // SAFETY: a valid action; the old one is not asked for.
            unsafe { libc::sigaction(signal, &default, std::ptr::null_mut()) };
        }
    }
}

/// Forward each signal the wrapper receives to the server until it exits;
/// then its exit status. In the foreground of a terminal the wrapper
/// follows the server's job control as a shell's job does: when the server
/// stops (Ctrl-Z), the wrapper takes the terminal back and stops too, so
/// that the shell gets its prompt back; when the shell continues the
/// wrapper (`fg`, `bg`), it continues the server, handing it the terminal
/// again if the wrapper was continued in the foreground.
pub fn forward_until_exit(child: Child, foreground: bool) -> io::Result<ExitStatus> {
    let pid = NixPid::from_raw(child.id() as i32);
    std::thread::Builder::new()
        .name("pidman-forward".into())
        .spawn(move || {
            let signals = forwarded();
            loop {
                let signal = signals.wait();
                if signal.is_ok() {
                    TOLD_TO_STOP.store(true, Ordering::SeqCst);
                }
                // Each followed by SIGCONT, as `kill` sends it: a stopped
                // server (Ctrl-Z, SIGSTOP) acts on it only once it runs.
                match signal {
                    Ok(Signal::SIGTERM) => {
                        let _ = kill(pid, Signal::SIGTERM);
                        let _ = kill(pid, Signal::SIGCONT);
                    }
                    Ok(signal) => {
                        let _ = killpg(pid, signal);
                        let _ = killpg(pid, Signal::SIGCONT);
                    }
                    Err(_) => {}
                }
            }
        })?;
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child, into a local.
        let waited = unsafe { libc::waitpid(pid.as_raw(), &mut status, libc::WUNTRACED) };
        if waited < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if !libc::WIFSTOPPED(status) {
            use std::os::unix::process::ExitStatusExt;
            // Reaped here: `child` is only dropped (which never waits).
            drop(child);
            return Ok(ExitStatus::from_raw(status));
        }
        if foreground {
            follow_the_stop(pid);
        }
    }
}

/// The server's group stopped in the foreground of the terminal: take the
/// terminal back, stop as it did, and once continued, continue it.
fn follow_the_stop(server: NixPid) {
    reclaim_terminal();
    // The wrapper stops here (SIGTSTP is not blocked and keeps its default)
    // until the shell sends SIGCONT.
    let _ = nix::sys::signal::raise(Signal::SIGTSTP);
    if in_terminal_foreground() {
        // SAFETY: a plain call on descriptor 0 and the server's group
        // (SIGTTOU is blocked).
        unsafe {
            libc::tcsetpgrp(0, server.as_raw());
        }
    }
    let _ = killpg(server, Signal::SIGCONT);
}

/// The wrapper's exit status for the server's: its code, or 128 + the
/// signal that ended it.
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.saturating_add(signal as u8),
        _ => 1,
    }
}
