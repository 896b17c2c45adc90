//! Stopping a process: which PIDs may never be signalled, and the
//! SIGTERM / wait / SIGKILL schedule.

use crate::host::Host;
use crate::wit::bengal::pid_manager::log::Level;
use crate::wit::bengal::pid_manager::process_table::ProcessState;
use crate::wit::bengal::pid_manager::signals::Signal;
use crate::wit::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};
use crate::wit::exports::bengal::pid_manager::manager::KillOutcome;

/// How long a server gets to exit after SIGTERM (Bengal's default).
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;

/// The longest SIGTERM grace period pidman accepts.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// How long pidman watches for a SIGKILLed process to be gone.
pub const KILL_CONFIRM_MS: u64 = 2_000;

/// Refuse the PIDs pidman never signals: 0 (the process group), 1 (init),
/// the caller and the caller's parent.
pub fn refusal(host: &impl Host, pid: Pid) -> Option<String> {
    match pid {
        0 => Some("PID 0 is the caller's process group, not a process".into()),
        1 => Some("PID 1 is the init process".into()),
        p if p == host.own_pid() => Some(format!("PID {p} is pidman itself")),
        p if p == host.parent_pid() => Some(format!("PID {p} is pidman's parent (the caller)")),
        _ => None,
    }
}

/// `kill-stale-process`: stop `pid` (whoever it is now).
pub fn kill_stale_process(
    host: &impl Host,
    pid: Pid,
    timeout_ms: Option<u64>,
) -> Result<KillOutcome, Error> {
    if let Some(why) = refusal(host, pid) {
        return Err(Error::Denied(format!("refusing to signal: {why}")));
    }
    let info = match host.inspect(pid) {
        Ok(info) => info,
        Err(Error::NotFound) => return Ok(KillOutcome::AlreadyGone),
        Err(e) => return Err(e),
    };
    if info.state != ProcessState::Running {
        return Ok(KillOutcome::AlreadyGone);
    }
    let own_uid = host.own_uid();
    if let Some(uid) = info.uid.filter(|&uid| own_uid != 0 && uid != own_uid) {
        return Err(Error::PermissionDenied(format!(
            "PID {pid} belongs to uid {uid}, and pidman runs as uid {own_uid}"
        )));
    }
    stop(
        host,
        ProcessIdentity {
            pid,
            start_token: info.start_token,
        },
        timeout_ms,
    )
}

/// SIGTERM, wait up to the timeout, SIGKILL, confirm: all aimed at exactly
/// `target`, so a PID reused meanwhile is never signalled.
pub fn stop(
    host: &impl Host,
    target: ProcessIdentity,
    timeout_ms: Option<u64>,
) -> Result<KillOutcome, Error> {
    let timeout_ms = timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if timeout_ms > MAX_TIMEOUT_MS {
        return Err(Error::Invalid(format!(
            "a timeout of {timeout_ms} ms is over the limit of {MAX_TIMEOUT_MS} ms"
        )));
    }
    if let Some(why) = refusal(host, target.pid) {
        return Err(Error::Denied(format!("refusing to signal: {why}")));
    }
    let pid = target.pid;
    match host.send(target, Signal::Term) {
        Ok(()) => host.log(Level::Info, &format!("sent SIGTERM to {pid}")),
        Err(Error::NotFound | Error::Changed) => return Ok(KillOutcome::AlreadyGone),
        Err(e) => return Err(e),
    }
    // A stopped process (SIGSTOP, Ctrl-Z) cannot act on SIGTERM until it
    // runs again; a running one ignores SIGCONT.
    match host.send(target, Signal::Cont) {
        Ok(()) | Err(Error::NotFound | Error::Changed) => {}
        Err(e) => host.log(Level::Debug, &format!("SIGCONT to {pid}: {e:?}")),
    }
    if host.wait_exit(target, timeout_ms)? {
        host.log(Level::Info, &format!("{pid} exited after SIGTERM"));
        return Ok(KillOutcome::Terminated);
    }
    match host.send(target, Signal::Kill) {
        Ok(()) => host.log(
            Level::Info,
            &format!("{pid} still ran {timeout_ms} ms after SIGTERM: sent SIGKILL"),
        ),
        Err(Error::NotFound | Error::Changed) => return Ok(KillOutcome::Terminated),
        Err(e) => return Err(e),
    }
    if host.wait_exit(target, KILL_CONFIRM_MS)? {
        return Ok(KillOutcome::Killed);
    }
    Err(Error::Survived(format!(
        "PID {pid} still runs {KILL_CONFIRM_MS} ms after SIGKILL (uninterruptible sleep?)"
    )))
}
