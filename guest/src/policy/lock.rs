//! The sibling lock `<pid-file>.lock`: every change to a PID file happens
//! under it, and a claim that keeps it for a server's life records in it
//! its server, the server's process group, and the process that holds the
//! lock (`<pid> <start-token> <group> <holder-pid> <holder-token>
//! <started-ms>`), so
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
    /// When the claimant started, in ms since the epoch: a record from
    /// before this boot (or this container's start) is ignored, since start
    /// tokens count from boot and PIDs repeat after one.
    pub started_ms: Option<u64>,
}

/// A claim's record in the lock file: `<pid> <start-token> <group>
/// <holder-pid> <holder-token> <started-ms>` (group 0: none; holder and
/// start only when known, in that order).
pub fn record(claim: Record) -> String {
    let ProcessIdentity { pid, start_token } = claim.claimant;
    let mut text = format!("{pid} {start_token} {}", claim.group.unwrap_or(0));
    if let Some(h) = claim.holder {
        text.push_str(&format!(" {} {}", h.pid, h.start_token));
        if let Some(started) = claim.started_ms {
            text.push_str(&format!(" {started}"));
        }
    }
    text.push('\n');
    text
}

/// The claim a lock file's contents record, if they record one: `<pid>
/// <token>`, then optionally `<group>` (0: none), then optionally
/// `<holder-pid> <holder-token>` and `<started-ms>`. PID 1 is never a
/// claimant, a holder or a group.
pub fn parse_record(bytes: &[u8]) -> Option<Record> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut fields = text.split_ascii_whitespace();
    let above_init = |pid: &str| pidfile::parse(pid.as_bytes()).ok().filter(|&p| p > 1);
    let identity = |pid: &str, token: &str| -> Option<ProcessIdentity> {
        Some(ProcessIdentity {
            pid: above_init(pid)?,
            start_token: token.parse().ok()?,
        })
    };
    let claimant = identity(fields.next()?, fields.next()?)?;
    let group = match fields.next() {
        Some("0") | None => None,
        Some(group) => Some(above_init(group)?),
    };
    let holder = match (fields.next(), fields.next()) {
        (Some(pid), Some(token)) => Some(identity(pid, token)?),
        (None, None) => None,
        _ => return None,
    };
    let started_ms = match fields.next() {
        Some(ms) => Some(ms.parse().ok()?),
        None => None,
    };
    fields.next().is_none().then_some(Record {
        claimant,
        group,
        holder,
        started_ms,
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
    let mut record = parse_record(&host.read_file(&lock_path, pidfile::MAX_BYTES).ok()?.bytes)?;
    if !this_boot(host, record.started_ms) {
        // PIDs, groups and start tokens start over at a boot: the record's
        // group may now be anyone's.
        record.group = None;
    }
    Some(record)
}

/// Whether a claimant that started at `started_ms` started in this boot
/// (or this container's life): no earlier than PID 1. Unknown: no.
fn this_boot(host: &impl Host, started_ms: Option<u64>) -> bool {
    let Some(started) = started_ms else {
        return false;
    };
    match host.inspect(1) {
        Ok(init) => started >= init.start_time_ms,
        // No PID 1 to compare with (Windows): the start tokens there are
        // absolute times, which a reboot does not repeat.
        Err(_) => true,
    }
}

/// The claim recorded in `pid_file`'s lock file, when it is live: its
/// server and the holder it names both run with their start tokens (the
/// holder keeps the lock for as long as it lives). Read without taking the
/// lock.
pub fn live_claim(host: &impl Host, pid_file: &str) -> Option<Record> {
    let record = recorded_claim(host, pid_file)?;
    let runs = |who: ProcessIdentity| {
        host.inspect(who.pid).is_ok_and(|info| {
            info.state == ProcessState::Running && info.start_token == who.start_token
        })
    };
    (runs(record.holder?) && runs(record.claimant)).then_some(record)
}

/// Whether the claim of `claimant` (leading `group`) covers the running
/// process `pid`: it is the claimant, a descendant of it (a wrapper's
/// server: `run -- uv run bengal serve`), or a member of its group.
pub fn covers(host: &impl Host, claimant: ProcessIdentity, group: Option<Pid>, pid: Pid) -> bool {
    let mut at = pid;
    let mut child_token = u64::MAX;
    for _ in 0..crate::policy::tree::MAX_DEPTH {
        let Ok(info) = host.inspect(at) else {
            return false;
        };
        if info.start_token > child_token {
            return false; // a reused parent PID: younger than its child
        }
        if at == claimant.pid {
            return info.start_token == claimant.start_token;
        }
        if at == pid && group.is_some_and(|g| g == info.group) {
            return info.start_token >= claimant.start_token;
        }
        if info.parent <= 1 || info.parent == at {
            return false;
        }
        child_token = info.start_token;
        at = info.parent;
    }
    false
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
        host.inspect(who.pid).is_ok_and(|info| {
            info.state == ProcessState::Running && info.start_token == who.start_token
        })
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

/// The error for a lock file this user cannot write, naming its owner and
/// the fix when it is someone else's (a `sudo pidman run` left one owned by
/// root in the user's project): whoever owns the directory may remove it.
pub fn not_ours(host: &impl Host, pid_file: &str, e: Error) -> Error {
    if !matches!(e, Error::PermissionDenied(_)) {
        return e;
    }
    let lock_path = pidfile::lock_path(pid_file);
    let own_uid = host.own_uid();
    let Ok(owner) = host.file_owner(&lock_path) else {
        return e;
    };
    if owner.uid == own_uid {
        return e;
    }
    let dir = lock_path.rsplit_once('/').map_or(".", |(dir, _)| dir);
    let dir = if dir.is_empty() { "/" } else { dir };
    let fix = match host.file_owner(dir) {
        Ok(d) if d.uid == own_uid => format!("`rm {lock_path}` (you own {dir})"),
        _ => format!("`sudo rm {lock_path}`"),
    };
    let who = if owner.uid == 0 {
        "root (a `sudo pidman` or `sudo bengal serve` left it)".to_owned()
    } else {
        format!("uid {}", owner.uid)
    };
    Error::PermissionDenied(format!(
        "{lock_path} belongs to {who}, so pidman (uid {own_uid}) cannot record a claim in it; \
         no claim holds it now (pidman just took its lock): remove it with {fix}"
    ))
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
            for (holder, started_ms) in [(None, None), (holder, None), (holder, Some(77))] {
                let claim = Record {
                    claimant,
                    group,
                    holder,
                    started_ms,
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
            started_ms: None,
        };
        assert_eq!(
            parse_record(b"42 5\n"),
            Some(old),
            "an older pidman's record"
        );
        for garbage in [
            "",
            "\n",
            "42",
            "42 x",
            "0 5",
            "-1 5",
            "42 5 6 7",
            "42 5 x",
            "42 5 6 7 x",
            "x 5",
            "42 5 0 7 1 x",
            "42 5 0 7 1 9 9",
            "1 5",
            "42 5 1",
            "42 5 0 1 5",
        ] {
            assert_eq!(parse_record(garbage.as_bytes()), None, "{garbage:?}");
        }
    }
}
