//! The exclusive claim on a PID file for a server's life: taken under the
//! lock, which then names its claimant; handed to the server a wrapper
//! started; released with the file.

use crate::host::Host;
use crate::policy::lock::{self, LockState};
use crate::policy::pidfile;
use crate::policy::stale::{self, Verdict};
use crate::policy::{kill, write};
use crate::wit::bengal::pid_manager::log::Level;
use crate::wit::bengal::pid_manager::process_table::ProcessState;
use crate::wit::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};
use crate::wit::exports::bengal::pid_manager::manager::{Holder, StopReport};

/// The outcome of [`acquire`].
pub enum Acquired<L> {
    /// The file names the PID; keep the lock for as long as the claim lasts.
    Claimed(L),
    /// A live server holds it.
    Held(Holder),
}

/// The claim's record for the running process `pid`: pinned to its start
/// token, with the process group it leads (its tree, should it die and
/// leave members behind), held by the caller (which keeps the lock).
fn running(host: &impl Host, pid: Pid) -> Result<lock::Record, Error> {
    let info = host.inspect(pid).map_err(|e| match e {
        Error::NotFound => {
            Error::Invalid(format!("PID {pid} is not running: nothing to claim for"))
        }
        e => e,
    })?;
    if info.state != ProcessState::Running {
        return Err(Error::Invalid(format!(
            "PID {pid} is not running: nothing to claim for"
        )));
    }
    Ok(lock::Record {
        claimant: ProcessIdentity {
            pid,
            start_token: info.start_token,
        },
        group: (info.group == pid && pid > 1).then_some(pid),
        holder: holder(host),
        started_ms: Some(info.start_time_ms),
    })
}

/// The caller, which holds the lock for the claim, pinned by its start
/// token (none if it cannot read itself: the record then proves no claim).
fn holder(host: &impl Host) -> Option<ProcessIdentity> {
    let own = host.own_pid();
    let info = host.inspect(own).ok()?;
    Some(ProcessIdentity {
        pid: own,
        start_token: info.start_token,
    })
}

/// `acquire`: claim `pid_file` for `pid` unless a live server holds it.
pub fn acquire<H: Host>(
    host: &H,
    pid_file: &str,
    pid: Option<Pid>,
) -> Result<Acquired<H::Lock>, Error> {
    let pid = write::validate_pid(pid.unwrap_or_else(|| host.own_pid()))?;
    let claimant = running(host, pid)?;
    if stale::look(host, pid_file)?.is_none() {
        lock::ensure_dir(host, pid_file)?;
    }
    let lock = match lock::lock(host, pid_file, lock::CHANGE_LOCK_WAIT_MS) {
        LockState::Ours(lock) => lock,
        LockState::Claimed(holder) => {
            host.log(
                Level::Info,
                &format!("{pid_file} is claimed by live server {}", holder.pid),
            );
            return Ok(Acquired::Held(Holder {
                pid: Some(holder.pid),
            }));
        }
        LockState::Busy => return Ok(Acquired::Held(Holder { pid: None })),
        LockState::Unavailable(e) => {
            return Err(Error::Io(format!(
                "cannot lock {} ({}): no claim is safe without it",
                pidfile::lock_path(pid_file),
                lock::describe(&e)
            )));
        }
    };
    match stale::examine(host, pid_file, None)?.map(|judged| judged.verdict) {
        Some(Verdict::Live(holder)) if holder != pid => {
            host.log(
                Level::Info,
                &format!("{pid_file} is held by live server {holder}"),
            );
            return Ok(Acquired::Held(Holder { pid: Some(holder) }));
        }
        Some(Verdict::Stale(reason)) => {
            host.log(Level::Info, &format!("{reason}: replacing it"));
        }
        Some(Verdict::Live(_) | Verdict::Caller(_)) | None => {}
    }
    // The lock names the claimant before the file does: a reader that sees
    // the new file also sees who claims it.
    lock::name_claimant(host, pid_file, claimant).map_err(|e| lock::not_ours(host, pid_file, e))?;
    write::write_locked(host, pid_file, pid)?;
    Ok(Acquired::Claimed(lock))
}

/// `hand-over`: the claim (whose lock the caller holds) now names `pid`.
pub fn hand_over(host: &impl Host, pid_file: &str, pid: Pid) -> Result<(), Error> {
    let claimant = running(host, write::validate_pid(pid)?)?;
    lock::name_claimant(host, pid_file, claimant)?;
    write::write_locked(host, pid_file, pid)
}

/// `stop-claimed-tree`: stop what is left of the tree of the server the
/// claim (whose lock the caller holds) recorded.
pub fn stop_claimed_tree(
    host: &impl Host,
    pid_file: &str,
    timeout_ms: Option<u64>,
) -> Result<StopReport, Error> {
    let timeout_ms = kill::valid_timeout(timeout_ms)?;
    let Some(record) = lock::recorded_claim(host, pid_file) else {
        return Ok(kill::gone());
    };
    let members = kill::plan(host, record.claimant, record.group)?;
    if members.is_empty() {
        return Ok(kill::gone());
    }
    host.log(
        Level::Info,
        &format!(
            "stopping what is left of the tree of server {}: {} processes",
            record.claimant.pid,
            members.len()
        ),
    );
    kill::stop_tree(host, record.claimant, &members, timeout_ms)
}

/// `release`: remove the file if it still names `remove`, clear the lock's
/// record, and let the lock go (the caller drops it after this returns).
pub fn release(host: &impl Host, pid_file: &str, remove: Option<Pid>) -> Result<bool, Error> {
    let removed = match remove {
        Some(pid) => remove_if_names(host, pid_file, pid),
        None => Ok(false),
    };
    let cleared = lock::clear_claimant(host, pid_file);
    let removed = removed?;
    cleared?;
    Ok(removed)
}

/// Under a lock the caller holds: remove `pid_file` if it names `pid`.
fn remove_if_names(host: &impl Host, pid_file: &str, pid: Pid) -> Result<bool, Error> {
    if stale::look(host, pid_file)?.is_none() {
        return Ok(false);
    }
    let read = match host.read_file(pid_file, pidfile::MAX_BYTES + 1) {
        Ok(read) => read,
        Err(Error::NotFound) => return Ok(false),
        Err(e) => return Err(e),
    };
    if pidfile::parse(&read.bytes) != Ok(pid) {
        host.log(
            Level::Info,
            &format!("{pid_file} no longer names PID {pid}: kept"),
        );
        return Ok(false);
    }
    write::remove_judged(
        host,
        pid_file,
        &format!("the claim of PID {pid} ended"),
        &read.bytes,
    )
}
