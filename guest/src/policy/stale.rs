//! Staleness: whether a PID file still belongs to a live server. This
//! module judges; it changes nothing itself (removals are
//! [`crate::policy::write`]'s, under the lock).

use crate::host::{FileRead, Host};
use crate::policy::identity::{command_line, is_bengal_argv, started_after_file};
use crate::policy::lock::{self, LockState};
use crate::policy::pidfile::{self, Garbage};
use crate::policy::write;
use crate::wit::bengal::pid_manager::log::Level;
use crate::wit::bengal::pid_manager::process_table::ProcessState;
use crate::wit::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};

/// An empty file may be a writer between create and write on a filesystem
/// without atomic rename: read it again this many times...
pub const EMPTY_RETRIES: u32 = 5;
/// ... this far apart before calling it garbage.
pub const EMPTY_RETRY_MS: u64 = 2;

/// What a PID file says about its server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A live server owns the file.
    Live(Pid),
    /// The file names the caller or its parent: never reported.
    Caller(Pid),
    /// The file cannot be a live server's, for this reason.
    Stale(String),
}

/// A judged PID file: the verdict and the contents it was made on (a
/// removal goes ahead only while the file still holds them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// The verdict.
    pub verdict: Verdict,
    /// The file's contents when judged.
    pub bytes: Vec<u8>,
}

/// Look at `pid_file` without opening it: none when it is missing; an
/// error for anything that cannot be a PID file.
pub fn look(host: &impl Host, pid_file: &str) -> Result<Option<()>, Error> {
    match host.file_stat(pid_file) {
        Ok(stat) => pidfile::refuse_unless_pid_file(pid_file, &stat).map(Some),
        Err(Error::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Read the PID file without following a symlink, and refuse files pidman
/// must not trust: another user's file (neither ours nor root's), a
/// world-writable file, anything but a regular file of at most 64 bytes.
fn read_trusted(host: &impl Host, pid_file: &str) -> Result<Option<FileRead>, Error> {
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
    let read = match host.read_file(pid_file, pidfile::MAX_BYTES + 1) {
        Ok(read) => read,
        Err(Error::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    if read.bytes.len() > pidfile::MAX_BYTES {
        return Err(Error::Invalid(format!(
            "{pid_file} is longer than {} bytes, not a PID file: left alone",
            pidfile::MAX_BYTES
        )));
    }
    Ok(Some(read))
}

/// A PID file's parse and the read it came from; none if the file went.
type Settled = Option<(Result<Pid, Garbage>, FileRead)>;

/// Parse, retrying an empty file briefly (a writer may be mid-write).
fn parse_settled(host: &impl Host, pid_file: &str, mut read: FileRead) -> Result<Settled, Error> {
    let mut parsed = pidfile::parse(&read.bytes);
    let mut tries = 0;
    while parsed == Err(Garbage::Empty) && tries < EMPTY_RETRIES {
        tries += 1;
        host.sleep_ms(EMPTY_RETRY_MS);
        match read_trusted(host, pid_file)? {
            Some(again) => read = again,
            None => return Ok(None),
        }
        parsed = pidfile::parse(&read.bytes);
    }
    Ok(Some((parsed, read)))
}

/// Judge what `pid_file` says, changing nothing; none when it is missing.
/// `claimant`: the live claimant that holds the lock, whose PID in the file
/// is its server's whatever its argv.
pub fn examine(
    host: &impl Host,
    pid_file: &str,
    claimant: Option<ProcessIdentity>,
) -> Result<Option<Judged>, Error> {
    let Some(read) = read_trusted(host, pid_file)? else {
        return Ok(None);
    };
    let Some((parsed, read)) = parse_settled(host, pid_file, read)? else {
        return Ok(None);
    };
    let verdict = judge(host, pid_file, parsed, read.modified_ms, claimant)?;
    Ok(Some(Judged {
        verdict,
        bytes: read.bytes,
    }))
}

fn judge(
    host: &impl Host,
    pid_file: &str,
    parsed: Result<Pid, Garbage>,
    modified_ms: u64,
    claimant: Option<ProcessIdentity>,
) -> Result<Verdict, Error> {
    let pid = match parsed {
        Ok(pid) => pid,
        Err(garbage) => {
            return Ok(Verdict::Stale(format!(
                "{pid_file} is not a PID file: {garbage}"
            )));
        }
    };
    if pid == host.own_pid() {
        return Ok(Verdict::Caller(pid));
    }
    let inspected = host.inspect(pid);
    // The caller's parent runs (an orphan's parent is its new one): a PID
    // no process has, or one that has exited, is never it, and the parent's
    // PID is asked only of the rest (a call into the host saved on a dead
    // PID's check).
    let ended = match &inspected {
        Err(Error::NotFound) => true,
        Ok(info) => info.state != ProcessState::Running,
        Err(_) => false,
    };
    if !ended && pid == host.parent_pid() {
        return Ok(Verdict::Caller(pid));
    }
    let stale = |why: String| Ok(Verdict::Stale(why));
    let info = match inspected {
        Ok(info) => info,
        Err(Error::NotFound) => return stale(format!("PID {pid} is not running")),
        Err(Error::PermissionDenied(why)) => {
            return stale(format!(
                "PID {pid} cannot be read ({why}), so it cannot be verified"
            ));
        }
        Err(Error::Invalid(why)) => return stale(format!("PID {pid} is not a process: {why}")),
        Err(e) => return Err(e),
    };
    match info.state {
        ProcessState::Running => {}
        ProcessState::Zombie => return stale(format!("PID {pid} has exited (zombie)")),
        ProcessState::Gone => return stale(format!("PID {pid} is not running")),
    }
    if started_after_file(info.start_time_ms, modified_ms) {
        return stale(format!(
            "PID {pid} was reused: `{}` started {} ms after {pid_file} was written",
            command_line(&info),
            info.start_time_ms - modified_ms
        ));
    }
    if claimant.is_some_and(|c| c.pid == pid && c.start_token == info.start_token) {
        host.log(
            Level::Debug,
            &format!("PID {pid} holds the lock on {pid_file} and names itself: its claimant"),
        );
        return Ok(Verdict::Live(pid));
    }
    if is_bengal_argv(&info.argv) {
        return Ok(Verdict::Live(pid));
    }
    stale(format!(
        "PID {pid} is not a Bengal server: `{}`",
        command_line(&info)
    ))
}

/// A live server that owns a PID file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveServer {
    /// Its PID.
    pub pid: Pid,
    /// Whether it is the live claimant that holds the lock (managed, not
    /// left behind).
    pub claimed: bool,
}

/// `check-stale-pid`: the live server that owns `pid_file`, removing the
/// file when it cannot be one's.
pub fn check_stale_pid(host: &impl Host, pid_file: &str) -> Result<Option<Pid>, Error> {
    Ok(find_live_server(host, pid_file)?.map(|server| server.pid))
}

/// [`check_stale_pid`], also telling whether the server's claim is held.
pub fn find_live_server(host: &impl Host, pid_file: &str) -> Result<Option<LiveServer>, Error> {
    // No file, no side effect: not even the lock file. Nothing that cannot
    // be a PID file is opened, locked for, or removed.
    if look(host, pid_file)?.is_none() {
        return Ok(None);
    }
    let lock = lock::lock(host, pid_file, lock::CHECK_LOCK_WAIT_MS);
    let claimant = lock.claimant();
    let Some(judged) = examine(host, pid_file, claimant)? else {
        return Ok(None);
    };
    match judged.verdict {
        Verdict::Live(pid) => Ok(Some(LiveServer {
            pid,
            // The claim covers its server's own children too: a file that
            // `run -- uv run bengal serve`'s Bengal wrote names uv's child.
            claimed: claimant.is_some_and(|c| lock::covers(host, c, None, pid)),
        })),
        Verdict::Caller(pid) => {
            host.log(
                Level::Debug,
                &format!("{pid_file} names the caller ({pid}): not stale"),
            );
            Ok(None)
        }
        Verdict::Stale(reason) => {
            match lock {
                LockState::Ours(_) => {
                    write::remove_judged(host, pid_file, &reason, &judged.bytes)?;
                }
                _ => host.log(
                    Level::Warn,
                    &format!("{reason}; left in place: pidman does not hold its lock"),
                ),
            }
            Ok(None)
        }
    }
}
