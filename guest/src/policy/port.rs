//! Who holds a TCP port: listeners first, any other socket only when
//! nothing listens; and above the holder, which process is the server.

use crate::host::Host;
use crate::policy::identity::{command_line, is_bengal_argv};
use crate::policy::{lock, tree};
use crate::wit::bengal::pid_manager::ports::TcpSocket;
use crate::wit::bengal::pid_manager::process_table::ProcessInfo;
use crate::wit::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};
use crate::wit::exports::bengal::pid_manager::manager::{
    LineageEntry, PortDescription, PortHolder, PortOwner, Role,
};

/// `get-process-on-port`.
pub fn process_on_port(host: &impl Host, port: u16) -> Result<PortOwner, Error> {
    if port == 0 {
        return Err(Error::Invalid(
            "port 0 is not a port one can listen on".into(),
        ));
    }
    let listeners = host.sockets(port, true)?;
    if !listeners.is_empty() {
        return owner_of(host, &listeners, PortOwner::Listener);
    }
    // A socket no process holds (handle 0: time-wait, a closed
    // connection's remains) does not keep a server from binding.
    let held: Vec<TcpSocket> = host
        .sockets(port, false)?
        .into_iter()
        .filter(|s| s.handle != 0)
        .collect();
    if !held.is_empty() {
        return owner_of(host, &held, PortOwner::Holder);
    }
    Ok(PortOwner::Free)
}

/// The first socket whose owner is visible, else "in use, owner unknown".
fn owner_of(
    host: &impl Host,
    sockets: &[TcpSocket],
    found: fn(u32) -> PortOwner,
) -> Result<PortOwner, Error> {
    for socket in sockets {
        if let Some(pid) = host.socket_owner(socket.handle)? {
            return Ok(found(pid));
        }
    }
    Ok(PortOwner::Unknown(sockets[0].uid))
}

/// How many processes `describe-port` names when none above the holder is
/// a server pidman would act on.
pub const MAX_LINEAGE: usize = 8;

/// `describe-port`: who holds `port`, with the holder's ancestry; with
/// `pid_file`, the claim its lock file records counts too.
pub fn describe_port(
    host: &impl Host,
    port: u16,
    pid_file: Option<&str>,
) -> Result<PortDescription, Error> {
    let (pid, listening) = match process_on_port(host, port)? {
        PortOwner::Free => return Ok(PortDescription::Free),
        PortOwner::Unknown(uid) => return Ok(PortDescription::Unknown(uid)),
        PortOwner::Listener(pid) => (pid, true),
        PortOwner::Holder(pid) => (pid, false),
    };
    let record = pid_file.and_then(|file| lock::recorded_claim(host, file));
    Ok(PortDescription::Held(holder(host, pid, listening, record)))
}

/// The holder `pid` and its ancestors, each with its role; cut after the
/// topmost that is a server (Bengal's, or the recorded claim's), never
/// reaching the caller or its ancestors, and never above a session leader:
/// a terminal's shell, a multiplexer's window (`screen -S x bengal serve`
/// keeps that argv in its daemon) or a daemon is where a server's
/// ancestry ends, not a server to stop with everything under it.
pub fn holder(
    host: &impl Host,
    pid: Pid,
    listening: bool,
    record: Option<lock::Record>,
) -> PortHolder {
    let callers = caller_chain(host);
    let mut lineage = Vec::new();
    let mut first: Option<ProcessInfo> = None;
    let mut at = Some(pid);
    while let Some(pid) = at.take() {
        let caller = callers.contains(&pid);
        if lineage.len() >= tree::MAX_DEPTH || (!lineage.is_empty() && (pid <= 1 || caller)) {
            break;
        }
        let Ok(info) = host.inspect(pid) else { break };
        if let Some(child) = lineage.last().map(|e: &(LineageEntry, u64)| e.1)
            && info.start_token > child
        {
            break; // a reused parent PID: younger than its child
        }
        let role = if caller {
            Role::Other // the caller's own port: never a server to stop
        } else if record.is_some_and(|r| r.claimant == identity_of(&info)) {
            Role::Claimed
        } else if is_bengal_argv(&info.argv) {
            Role::Bengal
        } else {
            Role::Other
        };
        let leads_its_session = info.session != 0 && info.session == pid;
        at = Some(info.parent).filter(|&parent| parent != pid && !leads_its_session);
        lineage.push((
            LineageEntry {
                pid,
                command: command_line(&info),
                role,
            },
            info.start_token,
        ));
        first.get_or_insert(info);
    }
    let reaches_the_claim = lineage.iter().any(|(e, _)| e.role == Role::Claimed);
    let orphan_of = first
        .filter(|_| !reaches_the_claim)
        .and_then(|holder| orphan_of(host, &holder, record?));
    let mut lineage: Vec<LineageEntry> = lineage.into_iter().map(|(entry, _)| entry).collect();
    match lineage.iter().rposition(|e| e.role != Role::Other) {
        Some(top) => lineage.truncate(top + 1),
        None => lineage.truncate(MAX_LINEAGE),
    }
    if lineage.is_empty() {
        // The holder could not be read: named by its PID alone.
        lineage.push(LineageEntry {
            pid,
            command: "?".into(),
            role: Role::Other,
        });
    }
    PortHolder {
        listening,
        lineage,
        orphan_of,
    }
}

/// The recorded claim whose process group `holder` belongs to and started
/// under (its lineage did not reach the claim's server: the server is
/// gone, or the holder was orphaned inside the group).
fn orphan_of(
    host: &impl Host,
    holder: &ProcessInfo,
    record: lock::Record,
) -> Option<ProcessIdentity> {
    let group = record.group?;
    let root = record.claimant;
    // A PID is not reused while its group lives: a leader with another
    // start token means the claim's group ended.
    // Its own zombie still holds the id; anyone else's, running or not,
    // means the id was reused.
    let leader_is_the_claims = match host.inspect(group) {
        Ok(leader) => leader.start_token == root.start_token,
        Err(Error::NotFound) => true,
        Err(_) => false, // there, but unreadable: not known to be free
    };
    (holder.group == group
        && group == root.pid
        && holder.start_token >= root.start_token
        && leader_is_the_claims)
        .then_some(root)
}

/// The caller, its parent, and their ancestors (read one by one: a
/// handful of reads, no snapshot).
fn caller_chain(host: &impl Host) -> Vec<Pid> {
    let mut chain = vec![host.own_pid(), host.parent_pid()];
    let mut at = host.parent_pid();
    while chain.len() < tree::MAX_DEPTH {
        match host.inspect(at) {
            Ok(info) if info.parent > 1 && !chain.contains(&info.parent) => {
                chain.push(info.parent);
                at = info.parent;
            }
            _ => break,
        }
    }
    chain
}

fn identity_of(info: &ProcessInfo) -> ProcessIdentity {
    ProcessIdentity {
        pid: info.pid,
        start_token: info.start_token,
    }
}
