//! Staleness: whether a PID file still belongs to a live server, the
//! clean-up of files that cannot, and the exclusive claim.
//!
//! Every removal happens under the sibling lock (`<pid-file>.lock`), so a
//! check never deletes a file another pidman is claiming. When another
//! holder keeps the lock (a `pidman run` or a library guard for its whole
//! life), nothing is removed, and a live process named by the file is the
//! holder whatever its argv.

use crate::bengal::pid_manager::log::Level;
use crate::bengal::pid_manager::process_table::ProcessState;
use crate::bengal::pid_manager::types::{Error, Pid};
use crate::exports::bengal::pid_manager::manager::Holder;
use crate::host::{FileRead, Host};
use crate::policy::identity::{command_line, is_bengal_argv, started_after_file};
use crate::policy::pidfile::{self, Garbage};

/// How long `check-stale-pid` waits for a claim in progress to finish
/// before it treats the lock as held for good (and removes nothing).
pub const CHECK_LOCK_WAIT_MS: u32 = 20;

/// How long `acquire` waits for the lock: long enough for a concurrent
/// check or claim to finish, short enough to answer "held" at once to a
/// second server.
pub const ACQUIRE_LOCK_WAIT_MS: u32 = 100;

/// An empty file may be a writer between create and write on a filesystem
/// without atomic rename: read it again this many times...
pub const EMPTY_RETRIES: u32 = 5;
/// ... this far apart before calling it garbage.
pub const EMPTY_RETRY_MS: u64 = 2;

/// Who holds the PID file's lock for this decision.
pub enum LockState<L> {
    /// We do: removals are safe.
    Ours(L),
    /// Another process does, and keeps it: it owns the file.
    Elsewhere,
    /// No lock could be taken (read-only directory, say): remove nothing.
    Unavailable,
}

/// What a PID file says about its server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// No PID file.
    Missing,
    /// A live server owns the file.
    Live(Pid),
    /// The file names the caller or its parent: never reported.
    Caller(Pid),
    /// The file cannot be a live server's; `bytes` are the contents the
    /// decision was made on.
    Stale { reason: String, bytes: Vec<u8> },
}

/// An error's text for a log line.
fn describe(e: &Error) -> &str {
    match e {
        Error::NotFound => "not found",
        Error::Changed => "changed",
        Error::PermissionDenied(m)
        | Error::Denied(m)
        | Error::Invalid(m)
        | Error::Survived(m)
        | Error::Untrusted(m)
        | Error::Unsupported(m)
        | Error::Io(m) => m,
    }
}

/// Take the lock for a decision about `pid_file`.
pub fn lock<H: Host>(host: &H, pid_file: &str, wait_ms: u32) -> LockState<H::Lock> {
    match host.try_lock(&pidfile::lock_path(pid_file), wait_ms) {
        Ok(Some(lock)) => LockState::Ours(lock),
        Ok(None) => LockState::Elsewhere,
        Err(e) => {
            host.log(
                Level::Warn,
                &format!(
                    "no lock for {pid_file} ({}): nothing will be removed",
                    describe(&e)
                ),
            );
            LockState::Unavailable
        }
    }
}

/// Read the PID file without following a symlink, and refuse files pidman
/// must not trust: a symlink, another user's file (neither ours nor root's),
/// a world-writable file.
fn read_trusted(host: &impl Host, pid_file: &str) -> Result<Option<FileRead>, Error> {
    let read = match host.read_file(pid_file, pidfile::MAX_BYTES + 1) {
        Ok(read) => read,
        Err(Error::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    let owner = match host.file_owner(pid_file) {
        Ok(owner) => owner,
        Err(Error::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    let own_uid = host.own_uid();
    if owner.symlink {
        return Err(Error::Untrusted(format!(
            "{pid_file} is a symlink; pidman never follows one (remove it by hand)"
        )));
    }
    if owner.uid != own_uid && owner.uid != 0 {
        return Err(Error::Untrusted(format!(
            "{pid_file} belongs to uid {}, not to uid {own_uid} or root: its PID is not trusted",
            owner.uid
        )));
    }
    if owner.mode & 0o002 != 0 {
        return Err(Error::Untrusted(format!(
            "{pid_file} is writable by every user (mode {:o}): its PID is not trusted",
            owner.mode
        )));
    }
    Ok(Some(read))
}

/// Parse, retrying an empty file briefly (a writer may be mid-write).
fn parse_settled(
    host: &impl Host,
    pid_file: &str,
    mut read: FileRead,
) -> Result<(Result<Pid, Garbage>, FileRead), Error> {
    let mut parsed = pidfile::parse(&read.bytes);
    let mut tries = 0;
    while parsed == Err(Garbage::Empty) && tries < EMPTY_RETRIES {
        tries += 1;
        host.sleep_ms(EMPTY_RETRY_MS);
        match read_trusted(host, pid_file)? {
            Some(again) => read = again,
            None => return Ok((Err(Garbage::Empty), read)),
        }
        parsed = pidfile::parse(&read.bytes);
    }
    Ok((parsed, read))
}

impl<L> LockState<L> {
    fn held_elsewhere(&self) -> bool {
        matches!(self, LockState::Elsewhere)
    }
}

/// Decide what `pid_file` says, removing nothing. `held_elsewhere`: another
/// process keeps the lock, so a live process the file names is its claimant.
pub fn examine(host: &impl Host, pid_file: &str, held_elsewhere: bool) -> Result<Finding, Error> {
    let Some(read) = read_trusted(host, pid_file)? else {
        return Ok(Finding::Missing);
    };
    let (parsed, read) = parse_settled(host, pid_file, read)?;
    let stale = |reason: String| Finding::Stale {
        reason,
        bytes: read.bytes.clone(),
    };
    let pid = match parsed {
        Ok(pid) => pid,
        Err(garbage) => return Ok(stale(format!("{pid_file} is not a PID file: {garbage}"))),
    };
    if pid == host.own_pid() || pid == host.parent_pid() {
        return Ok(Finding::Caller(pid));
    }
    let info = match host.inspect(pid) {
        Ok(info) => info,
        Err(Error::NotFound) => return Ok(stale(format!("PID {pid} is not running"))),
        Err(Error::PermissionDenied(why)) => {
            return Ok(stale(format!(
                "PID {pid} cannot be read ({why}), so it cannot be verified"
            )));
        }
        Err(e) => return Err(e),
    };
    match info.state {
        ProcessState::Running => {}
        ProcessState::Zombie => return Ok(stale(format!("PID {pid} has exited (zombie)"))),
        ProcessState::Gone => return Ok(stale(format!("PID {pid} is not running"))),
    }
    if started_after_file(info.start_time_ms, read.modified_ms) {
        return Ok(stale(format!(
            "PID {pid} was reused: `{}` started {} ms after {pid_file} was written",
            command_line(&info),
            info.start_time_ms - read.modified_ms
        )));
    }
    if held_elsewhere {
        host.log(
            Level::Debug,
            &format!("PID {pid} holds the lock on {pid_file}: the live claimant"),
        );
        return Ok(Finding::Live(pid));
    }
    if is_bengal_argv(&info.argv) {
        return Ok(Finding::Live(pid));
    }
    Ok(stale(format!(
        "PID {pid} is not a Bengal server: `{}`",
        command_line(&info)
    )))
}

/// Remove a stale file, but only under our lock and only if it still holds
/// what the decision was made on.
fn remove_stale<L>(
    host: &impl Host,
    pid_file: &str,
    lock: &LockState<L>,
    reason: &str,
    bytes: &[u8],
) -> Result<(), Error> {
    if !matches!(lock, LockState::Ours(_)) {
        host.log(
            Level::Warn,
            &format!("{reason}; left in place: pidman does not hold its lock"),
        );
        return Ok(());
    }
    match host.read_file(pid_file, pidfile::MAX_BYTES + 1) {
        Ok(now) if now.bytes == bytes => {}
        Ok(_) => {
            host.log(
                Level::Warn,
                &format!("{reason}; left in place: it changed meanwhile"),
            );
            return Ok(());
        }
        Err(Error::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    }
    match host.remove_file(pid_file) {
        Ok(()) | Err(Error::NotFound) => {
            host.log(Level::Info, &format!("{reason}: removed {pid_file}"));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// A live server that owns a PID file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveServer {
    /// Its PID.
    pub pid: Pid,
    /// Whether another process keeps the lock (the server is managed).
    pub claimed: bool,
}

/// `check-stale-pid`: the live server that owns `pid_file`, removing the
/// file when it cannot be one's.
pub fn check_stale_pid(host: &impl Host, pid_file: &str) -> Result<Option<Pid>, Error> {
    Ok(find_live_server(host, pid_file)?.map(|server| server.pid))
}

/// [`check_stale_pid`], also telling whether the server's claim is held.
pub fn find_live_server(host: &impl Host, pid_file: &str) -> Result<Option<LiveServer>, Error> {
    // No file, no side effect: not even the lock file.
    if let Err(Error::NotFound) = host.file_owner(pid_file) {
        return Ok(None);
    }
    let lock = lock(host, pid_file, CHECK_LOCK_WAIT_MS);
    match examine(host, pid_file, lock.held_elsewhere())? {
        Finding::Missing => Ok(None),
        Finding::Live(pid) => Ok(Some(LiveServer {
            pid,
            claimed: lock.held_elsewhere(),
        })),
        Finding::Caller(pid) => {
            host.log(
                Level::Debug,
                &format!("{pid_file} names the caller ({pid}): not stale"),
            );
            Ok(None)
        }
        Finding::Stale { reason, bytes } => {
            remove_stale(host, pid_file, &lock, &reason, &bytes)?;
            Ok(None)
        }
    }
}

fn validate_pid(pid: Pid) -> Result<Pid, Error> {
    if pid == 0 || u64::from(pid) > pidfile::PID_MAX {
        return Err(Error::Invalid(format!("{pid} is not a valid PID")));
    }
    Ok(pid)
}

/// `write-pid-file`: the PID (default: the caller's), atomically.
pub fn write_pid_file(host: &impl Host, pid_file: &str, pid: Option<Pid>) -> Result<Pid, Error> {
    let pid = validate_pid(pid.unwrap_or_else(|| host.own_pid()))?;
    let temp = pidfile::temp_path(pid_file, host.own_pid());
    host.write_file_atomic(pid_file, &temp, pidfile::contents(pid).as_bytes())?;
    host.log(Level::Info, &format!("wrote PID {pid} to {pid_file}"));
    sweep_dead_writers(host, pid_file);
    Ok(pid)
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

/// `remove-pid-file`: remove it; with `expected`, only when it names that
/// PID (a guard never removes a successor's claim).
pub fn remove_pid_file(
    host: &impl Host,
    pid_file: &str,
    expected: Option<Pid>,
) -> Result<bool, Error> {
    if let Some(expected) = expected {
        let read = match host.read_file(pid_file, pidfile::MAX_BYTES + 1) {
            Ok(read) => read,
            Err(Error::NotFound) => return Ok(false),
            Err(e) => return Err(e),
        };
        if pidfile::parse(&read.bytes) != Ok(expected) {
            host.log(
                Level::Info,
                &format!("{pid_file} does not name PID {expected}: kept"),
            );
            return Ok(false);
        }
    }
    match host.remove_file(pid_file) {
        Ok(()) => Ok(true),
        Err(Error::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The outcome of [`acquire`].
pub enum Acquired<L> {
    /// The file names the PID; keep the lock for as long as the claim lasts.
    Claimed(L),
    /// A live server holds it.
    Held(Holder),
}

/// `acquire`: claim `pid_file` for `pid` unless a live server holds it.
pub fn acquire<H: Host>(
    host: &H,
    pid_file: &str,
    pid: Option<Pid>,
) -> Result<Acquired<H::Lock>, Error> {
    let pid = validate_pid(pid.unwrap_or_else(|| host.own_pid()))?;
    match host.process_state(pid)? {
        ProcessState::Running => {}
        _ => {
            return Err(Error::Invalid(format!(
                "PID {pid} is not running: nothing to claim for"
            )));
        }
    }
    let lock = match lock(host, pid_file, ACQUIRE_LOCK_WAIT_MS) {
        LockState::Ours(lock) => lock,
        LockState::Elsewhere => {
            let holder = match examine(host, pid_file, true)? {
                Finding::Live(holder) | Finding::Caller(holder) => Some(holder),
                Finding::Missing | Finding::Stale { .. } => None,
            };
            return Ok(Acquired::Held(Holder { pid: holder }));
        }
        LockState::Unavailable => {
            return Err(Error::Io(format!(
                "cannot lock {}: no claim is safe without it",
                pidfile::lock_path(pid_file)
            )));
        }
    };
    match examine(host, pid_file, false)? {
        Finding::Live(holder) if holder != pid => {
            host.log(
                Level::Info,
                &format!("{pid_file} is held by live server {holder}"),
            );
            return Ok(Acquired::Held(Holder { pid: Some(holder) }));
        }
        Finding::Stale { reason, .. } => {
            host.log(Level::Info, &format!("{reason}: replacing it"));
        }
        Finding::Live(_) | Finding::Caller(_) | Finding::Missing => {}
    }
    write_pid_file(host, pid_file, Some(pid))?;
    Ok(Acquired::Claimed(lock))
}
