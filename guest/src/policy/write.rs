//! Every change to a PID file: the atomic write, the clean-shutdown
//! removal, the removal of a file judged stale, and the sweep of dead
//! writers' temporary files. Each happens under the lock `<pid-file>.lock`.

use crate::host::Host;
use crate::policy::lock;
use crate::policy::pidfile;
use crate::policy::stale::{self, Verdict};
use crate::wit::bengal::pid_manager::log::Level;
use crate::wit::bengal::pid_manager::process_table::ProcessState;
use crate::wit::bengal::pid_manager::types::{Error, Pid};

/// A PID the file may name.
pub fn validate_pid(pid: Pid) -> Result<Pid, Error> {
    if pid == 0 || u64::from(pid) > pidfile::PID_MAX {
        return Err(Error::Invalid(format!("{pid} is not a valid PID")));
    }
    Ok(pid)
}

/// `write-pid-file`: the PID (default: the caller's), atomically, under
/// the lock.
pub fn write_pid_file(host: &impl Host, pid_file: &str, pid: Option<Pid>) -> Result<Pid, Error> {
    let pid = validate_pid(pid.unwrap_or_else(|| host.own_pid()))?;
    let _lock = lock::lock_for_change(host, pid_file)?;
    write_locked(host, pid_file, pid)?;
    Ok(pid)
}

/// Write `pid` to `pid_file`; the caller holds the lock (or acts for its
/// holder).
pub fn write_locked(host: &impl Host, pid_file: &str, pid: Pid) -> Result<(), Error> {
    // A name no other writer can hold (its PID and a random nonce), created
    // with O_EXCL: a clash is an error, never someone else's file.
    let temp = pidfile::temp_path(pid_file, host.own_pid(), host.random_u64());
    host.write_file_atomic(pid_file, &temp, pidfile::contents(pid).as_bytes())?;
    host.log(Level::Info, &format!("wrote PID {pid} to {pid_file}"));
    sweep_dead_writers(host, pid_file);
    Ok(())
}

/// Remove the temporary files of writers that died mid-write (SIGKILL,
/// power loss): only those whose writer PID no longer runs.
fn sweep_dead_writers(host: &impl Host, pid_file: &str) {
    let Some((dir, _)) = pid_file.rsplit_once('/') else {
        return;
    };
    let dir = if dir.is_empty() { "/" } else { dir };
    let Ok(entries) = host.list_dir(dir) else {
        return;
    };
    for entry in entries {
        let Some(writer) = pidfile::temp_writer(pid_file, &entry) else {
            continue;
        };
        if writer != host.own_pid() && matches!(host.process_state(writer), Ok(ProcessState::Gone))
        {
            let path = format!("{}/{entry}", dir.trim_end_matches('/'));
            if host.remove_file(&path).is_ok() {
                host.log(
                    Level::Info,
                    &format!("removed {path}, left by writer {writer} that died"),
                );
            }
        }
    }
}

/// Remove a file judged stale, but only if it still holds what the
/// judgement was made on. The caller holds the lock. Returns whether it
/// removed the file.
pub fn remove_judged(
    host: &impl Host,
    pid_file: &str,
    reason: &str,
    bytes: &[u8],
) -> Result<bool, Error> {
    host.log(
        Level::Debug,
        &format!("judged {pid_file}: {reason}; removing it under its lock"),
    );
    match host.read_file(pid_file, pidfile::MAX_BYTES + 1) {
        Ok(now) if now.bytes == bytes => {}
        Ok(_) => {
            host.log(
                Level::Warn,
                &format!("{reason}; left in place: it changed meanwhile"),
            );
            return Ok(false);
        }
        Err(Error::NotFound) => return Ok(false),
        Err(e) => return Err(e),
    }
    match host.remove_file(pid_file) {
        Ok(()) => {
            host.log(Level::Info, &format!("{reason}: removed {pid_file}"));
            Ok(true)
        }
        Err(Error::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `remove-pid-file`, the clean shutdown: remove the file when it names the
/// caller, its parent, a dead PID or a process that is not a server (or
/// holds garbage); keep one that names another live server. With
/// `expected`, only a file that names that PID.
pub fn remove_pid_file(
    host: &impl Host,
    pid_file: &str,
    expected: Option<Pid>,
) -> Result<bool, Error> {
    if stale::look(host, pid_file)?.is_none() {
        return Ok(false);
    }
    let _lock = lock::lock_for_change(host, pid_file)?;
    let Some(judged) = stale::examine(host, pid_file, None)? else {
        return Ok(false);
    };
    if let Some(expected) = expected
        && pidfile::parse(&judged.bytes) != Ok(expected)
    {
        host.log(
            Level::Info,
            &format!("{pid_file} does not name PID {expected}: kept"),
        );
        return Ok(false);
    }
    let reason = match judged.verdict {
        Verdict::Live(pid) => {
            return Err(Error::Denied(format!(
                "{pid_file} names live server {pid}, not the caller: kept"
            )));
        }
        Verdict::Caller(pid) => format!("{pid_file} names the caller ({pid})"),
        Verdict::Stale(reason) => reason,
    };
    remove_judged(host, pid_file, &reason, &judged.bytes)
}
