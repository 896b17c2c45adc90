//! Stopping a server and its tree: which PIDs may never be signalled, and
//! the SIGTERM / wait / SIGKILL schedule.

use crate::host::Host;
use crate::policy::tree::{self, Snapshot};
use crate::wit::bengal::pid_manager::log::Level;
use crate::wit::bengal::pid_manager::process_table::{ProcessEntry, ProcessState};
use crate::wit::bengal::pid_manager::signals::Signal;
use crate::wit::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};
use crate::wit::exports::bengal::pid_manager::manager::{
    KillOutcome, MemberStop, StopReport, TreeMember,
};

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

/// The stop that `kill-stale-process` would make for `pid`: the running
/// root pinned by its start token, after the refusals; none when `pid`
/// does not run.
fn root_to_stop(host: &impl Host, pid: Pid) -> Result<Option<ProcessIdentity>, Error> {
    if let Some(why) = refusal(host, pid) {
        return Err(Error::Denied(format!("refusing to signal: {why}")));
    }
    let info = match host.inspect(pid) {
        Ok(info) => info,
        Err(Error::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    if info.state != ProcessState::Running {
        return Ok(None);
    }
    check_owner(host, pid, info.uid)?;
    Ok(Some(ProcessIdentity {
        pid,
        start_token: info.start_token,
    }))
}

/// Refuse another user's process (unless pidman runs as root).
fn check_owner(host: &impl Host, pid: Pid, uid: Option<u32>) -> Result<(), Error> {
    let own_uid = host.own_uid();
    match uid.filter(|&uid| own_uid != 0 && uid != own_uid) {
        Some(uid) => Err(Error::PermissionDenied(format!(
            "PID {pid} belongs to uid {uid}, and pidman runs as uid {own_uid}"
        ))),
        None => Ok(()),
    }
}

/// The members of the tree of `root` (and of its claim's `group`) in one
/// snapshot, refusing a root that is one of the caller's ancestors.
pub fn plan(
    host: &impl Host,
    root: ProcessIdentity,
    group: Option<Pid>,
) -> Result<Vec<ProcessEntry>, Error> {
    let snapshot = Snapshot::take(host)?;
    let callers = snapshot.callers(host.own_pid(), host.parent_pid());
    if callers.contains(&root.pid) {
        return Err(Error::Denied(format!(
            "refusing to signal: PID {} is an ancestor of pidman (the caller)",
            root.pid
        )));
    }
    Ok(snapshot.tree(root, group, &callers))
}

/// `plan-stop`: the tree `kill-stale-process` would stop, signalling none.
pub fn plan_stop(host: &impl Host, pid: Pid) -> Result<Vec<TreeMember>, Error> {
    match root_to_stop(host, pid)? {
        Some(root) => Ok(tree::describe(host, &plan(host, root, None)?)),
        None => Ok(Vec::new()),
    }
}

/// `kill-stale-process`: stop `pid` (whoever it is now) and its tree.
pub fn kill_stale_process(
    host: &impl Host,
    pid: Pid,
    timeout_ms: Option<u64>,
) -> Result<StopReport, Error> {
    let timeout_ms = valid_timeout(timeout_ms)?;
    let Some(root) = root_to_stop(host, pid)? else {
        return Ok(gone());
    };
    let members = plan(host, root, None)?;
    stop_tree(host, root, &members, timeout_ms)
}

/// A report for a server that was gone before anything was signalled.
pub fn gone() -> StopReport {
    StopReport {
        outcome: KillOutcome::AlreadyGone,
        members: Vec::new(),
    }
}

/// The grace period asked for, or the default; an absurd one is refused.
pub fn valid_timeout(timeout_ms: Option<u64>) -> Result<u64, Error> {
    let timeout_ms = timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if timeout_ms > MAX_TIMEOUT_MS {
        return Err(Error::Invalid(format!(
            "a timeout of {timeout_ms} ms is over the limit of {MAX_TIMEOUT_MS} ms"
        )));
    }
    Ok(timeout_ms)
}

/// One member during a stop.
struct Stopping {
    target: ProcessIdentity,
    command: String,
    outcome: Option<KillOutcome>,
}

/// How many more times a stop looks for processes its tree started while
/// it was being stopped (a pool replacing the workers pidman just killed).
pub const LATE_ROUNDS: usize = 3;

/// The grace a process started during the stop gets after SIGTERM.
pub const LATE_GRACE_MS: u64 = 1_000;

/// Stop `members` (the tree of `root`, from one snapshot): SIGTERM and
/// SIGCONT to each, the root first; wait for all of them within one
/// timeout; SIGKILL every survivor and confirm. Every signal is aimed at
/// a pinned identity, so a PID reused meanwhile is never signalled. Then
/// look again: processes the tree started meanwhile in a process group one
/// of its members led are stopped too (a few rounds at most). Ok only when
/// every member, and every such late one, is gone.
pub fn stop_tree(
    host: &impl Host,
    root: ProcessIdentity,
    members: &[ProcessEntry],
    timeout_ms: u64,
) -> Result<StopReport, Error> {
    let mut stopped = stop_once(host, members, timeout_ms, true)?;
    let mut all = members.to_vec();
    for round in 0..=LATE_ROUNDS {
        let late = late_members(host, &all)?;
        if late.is_empty() {
            break;
        }
        if round == LATE_ROUNDS {
            let pids: Vec<String> = late.iter().map(|e| e.pid.to_string()).collect();
            return Err(Error::Survived(format!(
                "the tree of PID {} kept starting processes while it was stopped (now {})",
                root.pid,
                pids.join(", ")
            )));
        }
        host.log(
            Level::Info,
            &format!(
                "{} process(es) the tree started while it was stopped",
                late.len()
            ),
        );
        stopped.extend(stop_once(
            host,
            &late,
            timeout_ms.min(LATE_GRACE_MS),
            false,
        )?);
        all.extend(late);
    }
    let outcome = stopped
        .iter()
        .find(|m| m.pid == root.pid)
        .map_or(KillOutcome::AlreadyGone, |m| m.outcome);
    Ok(StopReport {
        outcome,
        members: stopped,
    })
}

/// Running processes, not yet stopped, in a process group that one of the
/// stopped members led, started no earlier than that leader: what the tree
/// started while it was being stopped. Never the caller or its ancestors.
fn late_members(host: &impl Host, stopped: &[ProcessEntry]) -> Result<Vec<ProcessEntry>, Error> {
    let leaders: Vec<&ProcessEntry> = stopped
        .iter()
        .filter(|m| m.group == m.pid && m.pid > 1)
        .collect();
    if leaders.is_empty() {
        return Ok(Vec::new());
    }
    let snapshot = host.snapshot()?;
    let callers =
        Snapshot::from_entries(snapshot.clone()).callers(host.own_pid(), host.parent_pid());
    Ok(snapshot
        .into_iter()
        .filter(|e| e.state == ProcessState::Running && e.pid > 1 && !callers.contains(&e.pid))
        .filter(|e| {
            leaders
                .iter()
                .any(|l| l.group == e.group && e.start_token >= l.start_token)
        })
        .filter(|e| {
            !stopped
                .iter()
                .any(|m| m.pid == e.pid && m.start_token == e.start_token)
        })
        .collect())
}

/// One round of [`stop_tree`]: TERM+CONT (the first member first; with
/// `first_is_root`, a refusal there stops everything before any other
/// signal), one shared wait, KILL, confirm.
fn stop_once(
    host: &impl Host,
    members: &[ProcessEntry],
    timeout_ms: u64,
    first_is_root: bool,
) -> Result<Vec<MemberStop>, Error> {
    let mut stopping = Vec::with_capacity(members.len());
    for (member, described) in members.iter().zip(tree::describe(host, members)) {
        if let Some(why) = refusal(host, member.pid) {
            return Err(Error::Denied(format!("refusing to signal: {why}")));
        }
        if let Ok(info) = host.inspect(member.pid)
            && info.start_token == member.start_token
        {
            check_owner(host, member.pid, info.uid)?;
        }
        stopping.push(Stopping {
            target: described.identity,
            command: described.command,
            outcome: None,
        });
    }
    if let Some(first) = stopping.first() {
        host.log(
            Level::Info,
            &format!(
                "stopping the tree of {}: {} process(es), pinned by their start tokens",
                first.target.pid,
                stopping.len()
            ),
        );
    }
    let mut failures = Vec::new();
    for (i, member) in stopping.iter_mut().enumerate() {
        match terminate(host, member.target) {
            Ok(true) => {}
            Ok(false) => member.outcome = Some(KillOutcome::AlreadyGone),
            // The root first: a refusal there stops the whole stop before
            // any other process is signalled.
            Err(e) if i == 0 && first_is_root => return Err(e),
            Err(e) => failures.push((member.target.pid, e)),
        }
    }
    let deadline = host.now_ms().saturating_add(timeout_ms);
    for member in stopping.iter_mut().filter(|m| m.outcome.is_none()) {
        let left = deadline.saturating_sub(host.now_ms());
        if host.wait_exit(member.target, left)? {
            host.log(
                Level::Info,
                &format!("{} exited after SIGTERM", member.target.pid),
            );
            member.outcome = Some(KillOutcome::Terminated);
        }
    }
    for member in stopping.iter_mut().filter(|m| m.outcome.is_none()) {
        let pid = member.target.pid;
        if failures.iter().any(|(failed, _)| *failed == pid) {
            continue;
        }
        match host.send(member.target, Signal::Kill) {
            Ok(()) => host.log(
                Level::Info,
                &format!("{pid} still ran {timeout_ms} ms after SIGTERM: sent SIGKILL"),
            ),
            Err(Error::NotFound | Error::Changed) => {
                member.outcome = Some(KillOutcome::Terminated);
            }
            Err(e) => failures.push((pid, e)),
        }
    }
    let deadline = host.now_ms().saturating_add(KILL_CONFIRM_MS);
    let mut survivors = Vec::new();
    for member in stopping.iter_mut().filter(|m| m.outcome.is_none()) {
        let pid = member.target.pid;
        if failures.iter().any(|(failed, _)| *failed == pid) {
            continue;
        }
        let left = deadline.saturating_sub(host.now_ms());
        if host.wait_exit(member.target, left)? {
            member.outcome = Some(KillOutcome::Killed);
        } else {
            survivors.push(pid);
        }
    }
    if let Some(error) = unfinished(failures, &survivors) {
        return Err(error);
    }
    Ok(stopping
        .into_iter()
        .map(|m| MemberStop {
            pid: m.target.pid,
            command: m.command,
            outcome: m.outcome.unwrap_or(KillOutcome::Killed),
        })
        .collect())
}

/// SIGTERM, then SIGCONT (a stopped process acts on SIGTERM only once it
/// runs again; a running one ignores SIGCONT). False when the process was
/// already gone.
fn terminate(host: &impl Host, target: ProcessIdentity) -> Result<bool, Error> {
    let pid = target.pid;
    match host.send(target, Signal::Term) {
        Ok(()) => host.log(Level::Info, &format!("sent SIGTERM to {pid}")),
        Err(Error::NotFound | Error::Changed) => return Ok(false),
        Err(e) => return Err(e),
    }
    match host.send(target, Signal::Cont) {
        Ok(()) | Err(Error::NotFound | Error::Changed) => {}
        Err(e) => host.log(Level::Debug, &format!("SIGCONT to {pid}: {e:?}")),
    }
    Ok(true)
}

/// The error for a stop that left processes running: the first refusal,
/// naming every process that could not be signalled or outlived SIGKILL.
fn unfinished(failures: Vec<(Pid, Error)>, survivors: &[Pid]) -> Option<Error> {
    let list = |pids: &mut dyn Iterator<Item = Pid>| {
        pids.map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
    };
    if !survivors.is_empty() {
        return Some(Error::Survived(format!(
            "PID {} still ran {KILL_CONFIRM_MS} ms after SIGKILL (uninterruptible sleep?)",
            list(&mut survivors.iter().copied())
        )));
    }
    let failed = list(&mut failures.iter().map(|(pid, _)| *pid));
    let (_, first) = failures.into_iter().next()?;
    let why = crate::policy::lock::describe(&first).to_owned();
    Some(match first {
        Error::PermissionDenied(_) => {
            Error::PermissionDenied(format!("could not signal PID {failed} of the tree: {why}"))
        }
        Error::Denied(_) => {
            Error::Denied(format!("could not signal PID {failed} of the tree: {why}"))
        }
        other => other,
    })
}
