//! The sibling lock `<pid-file>.lock`: every change to a PID file happens
//! under it, and a claim that keeps it for a server's life records in it
//! its server, the server's process group, and the process that holds the
//! lock (`<pid> <start-token> <group> <holder-pid> <holder-token>`), so
//! that "held elsewhere" means a live claim, held by the live process the
//! record names, and never just another pidman busy for a moment, nor a
//! record that outlived its claim.

use crate::host::Host;
use crate::policy::pidfile;
use crate::wit::bengal::pid_manager::log::Level;
use crate::wit::bengal::pid_manager::process_table::ProcessState;
use crate::wit::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};

/// How long `check-stale-pid` waits for a change in progress to finish
/// before it decides without the lock (and so removes nothing).
pub const CHECK_LOCK_WAIT_MS: u32 = 20;

/// How long a change (`acquire`, `write`, `remove`) waits for the lock:
/// long enough for a concurrent check or claim to finish, short enough to
/// answer "held" at once to a second server.
pub const CHANGE_LOCK_WAIT_MS: u32 = 100;

/// Who holds the PID file's lock for this decision.
pub enum LockState<L> {
    /// We do: changes are safe.
    Ours(L),
    /// A live claimant holds it and names itself in it: the file is its
    /// server's for as long as it lives.
    Claimed(ProcessIdentity),
    /// Someone holds it without naming a live claimant: another pidman in
    /// the middle of a decision, or a descriptor that outlived its claim.
    /// Nothing is changed, and nothing is taken for a claim.
    Busy,
    /// No lock could be taken (read-only directory, say): nothing changes.
    Unavailable(Error),
}

impl<L> LockState<L> {
    /// The live claimant the lock names, if it is held by one.
    pub fn claimant(&self) -> Option<ProcessIdentity> {
        match self {
            LockState::Claimed(identity) => Some(*identity),
            _ => None,
        }
    }
}

/// An error's text for a log line.
pub fn describe(e: &Error) -> &str {
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

/// What a claim records in the lock file: its server, the process group
/// that server leads (its tree once it is gone), and the process that
/// holds the lock for it (the server itself, or the `pidman run` that
/// started it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// The claimant (the server), pinned by its start token.
    pub claimant: ProcessIdentity,
    /// The process group it leads.
    pub group: Option<Pid>,
    /// The process that holds the lock; none in a record of an older
    /// pidman, which therefore proves no live claim.
    pub holder: Option<ProcessIdentity>,
}

/// A claim's record in the lock file: `<pid> <start-token> <group>
/// <holder-pid> <holder-token>` (group 0: none).
pub fn record(claim: Record) -> String {
    let ProcessIdentity { pid, start_token } = claim.claimant;
    let group = claim.group.unwrap_or(0);
    match claim.holder {
        Some(h) => format!("{pid} {start_token} {group} {} {}\n", h.pid, h.start_token),
        None => format!("{pid} {start_token} {group}\n"),
    }
}

/// The claim a lock file's contents record, if they record one: `<pid>
/// <token>`, then optionally `<group>` (0: none), then optionally
/// `<holder-pid> <holder-token>`.
pub fn parse_record(bytes: &[u8]) -> Option<Record> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut fields = text.split_ascii_whitespace();
    let identity = |pid: &str, token: &str| -> Option<ProcessIdentity> {
        Some(ProcessIdentity {
            pid: pidfile::parse(pid.as_bytes()).ok()?,
            start_token: token.parse().ok()?,
        })
    };
    let claimant = identity(fields.next()?, fields.next()?)?;
    let group = match fields.next() {
        Some("0") | None => None,
        Some(group) => Some(pidfile::parse(group.as_bytes()).ok()?),
    };
    let holder = match (fields.next(), fields.next()) {
        (Some(pid), Some(token)) => Some(identity(pid, token)?),
        (None, None) => None,
        _ => return None,
    };
    fields.next().is_none().then_some(Record {
        claimant,
        group,
        holder,
    })
}

/// The claim recorded in `pid_file`'s lock file, whether or not anyone
/// holds the lock now, and whether or not its server still runs: evidence
/// of which tree a `pidman run` of this project started, never of a live
/// claim. Only a regular lock file of the caller's (or root's) that other
/// users cannot write is read.
pub fn recorded_claim(host: &impl Host, pid_file: &str) -> Option<Record> {
    let lock_path = pidfile::lock_path(pid_file);
    let owner = host.file_owner(&lock_path).ok()?;
    let own_uid = host.own_uid();
    if owner.symlink || (owner.uid != own_uid && owner.uid != 0) || owner.mode & 0o002 != 0 {
        return None;
    }
    let stat = host.file_stat(&lock_path).ok()?;
    pidfile::refuse_unless_pid_file(&lock_path, &stat).ok()?;
    parse_record(&host.read_file(&lock_path, pidfile::MAX_BYTES).ok()?.bytes)
}

/// The claimant of a held lock: the server the lock file records, when
/// both it and the process the record names as the lock's holder still
/// run with their start tokens. A record whose holder is gone (a SIGKILLed
/// `pidman run`) proves nothing, whoever holds the lock for a moment now.
fn named_claimant(host: &impl Host, lock_path: &str) -> Option<ProcessIdentity> {
    // Only a regular file is read: a FIFO there could block the read.
    let stat = host.file_stat(lock_path).ok()?;
    pidfile::refuse_unless_pid_file(lock_path, &stat).ok()?;
    let read = host.read_file(lock_path, pidfile::MAX_BYTES).ok()?;
    let record = parse_record(&read.bytes)?;
    let runs = |who: ProcessIdentity| {
        host.inspect(who.pid)
            .is_ok_and(|info| info.state == ProcessState::Running && info.start_token == who.start_token)
    };
    (runs(record.holder?) && runs(record.claimant)).then_some(record.claimant)
}

/// Take the lock for a decision about `pid_file`, waiting at most `wait_ms`.
pub fn lock<H: Host>(host: &H, pid_file: &str, wait_ms: u32) -> LockState<H::Lock> {
    let lock_path = pidfile::lock_path(pid_file);
    match host.try_lock(&lock_path, wait_ms) {
        Ok(Some(lock)) => LockState::Ours(lock),
        Ok(None) => match named_claimant(host, &lock_path) {
            Some(claimant) => LockState::Claimed(claimant),
            None => {
                host.log(
                    Level::Debug,
                    &format!("{lock_path} is held, but names no live claimant: busy"),
                );
                LockState::Busy
            }
        },
        Err(e) => {
            host.log(
                Level::Warn,
                &format!(
                    "no lock for {pid_file} ({}): nothing will change",
                    describe(&e)
                ),
            );
            LockState::Unavailable(e)
        }
    }
}

/// Whether `pid` is the caller or its parent: the process a command acts
/// for.
pub fn is_caller(host: &impl Host, pid: Pid) -> bool {
    pid == host.own_pid() || pid == host.parent_pid()
}

/// The lock for a change to `pid_file`, creating the file's directory when
/// it is missing. Held by a claimant that is the caller (or its parent, for
/// a command a server runs), the change goes ahead on its behalf: `Ok(None)`.
/// Any other holder refuses the change.
pub fn lock_for_change<H: Host>(host: &H, pid_file: &str) -> Result<Option<H::Lock>, Error> {
    ensure_dir(host, pid_file)?;
    match lock(host, pid_file, CHANGE_LOCK_WAIT_MS) {
        LockState::Ours(lock) => Ok(Some(lock)),
        LockState::Claimed(claimant) if is_caller(host, claimant.pid) => Ok(None),
        LockState::Claimed(claimant) => Err(Error::Denied(format!(
            "{pid_file} is claimed by live server {} (it holds {}): left as it is",
            claimant.pid,
            pidfile::lock_path(pid_file)
        ))),
        LockState::Busy => Err(Error::Denied(format!(
            "another process holds {} right now: {pid_file} was left as it is; try again",
            pidfile::lock_path(pid_file)
        ))),
        LockState::Unavailable(e) => Err(Error::Io(format!(
            "cannot lock {} ({}): no change is safe without it",
            pidfile::lock_path(pid_file),
            describe(&e)
        ))),
    }
}

/// Create the PID file's directory when it is missing, so that its lock
/// file can be made (whatever a host answers for a missing directory).
pub fn ensure_dir(host: &impl Host, pid_file: &str) -> Result<(), Error> {
    match pid_file.rsplit_once('/') {
        Some((dir, _)) if !dir.is_empty() && host.file_stat(dir) == Err(Error::NotFound) => {
            host.create_dir_all(dir)
        }
        _ => Ok(()),
    }
}

/// Name the claimant (and its group) in the lock we hold.
pub fn name_claimant(host: &impl Host, pid_file: &str, claim: Record) -> Result<(), Error> {
    host.write_file(&pidfile::lock_path(pid_file), record(claim).as_bytes())
}

/// Clear the claimant's record before the lock is let go, so that no later
/// holder is taken for it.
pub fn clear_claimant(host: &impl Host, pid_file: &str) -> Result<(), Error> {
    host.write_file(&pidfile::lock_path(pid_file), b"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_names_nobody() {
        let claimant = ProcessIdentity {
            pid: 42,
            start_token: 98_765,
        };
        let holder = Some(ProcessIdentity {
            pid: 7,
            start_token: 1,
        });
        for group in [None, Some(42)] {
            for holder in [None, holder] {
                let claim = Record {
                    claimant,
                    group,
                    holder,
                };
                assert_eq!(parse_record(record(claim).as_bytes()), Some(claim));
            }
        }
        let old = Record {
            claimant: ProcessIdentity {
                pid: 42,
                start_token: 5,
            },
            group: None,
            holder: None,
        };
        assert_eq!(parse_record(b"42 5\n"), Some(old), "an older pidman's record");
        for garbage in [
            "", "\n", "42", "42 x", "0 5", "-1 5", "42 5 6 7", "42 5 x", "42 5 6 7 x", "x 5",
            "42 5 0 7 1 9",
        ] {
            assert_eq!(parse_record(garbage.as_bytes()), None, "{garbage:?}");
        }
    }
}
