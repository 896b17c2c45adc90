//! The dev-server start check: is a stale server in the way (the process
//! the PID file names, or the server above the port's holder), which tree
//! stopping it means, and who holds the port.

use crate::host::Host;
use crate::policy::identity::command_line;
use crate::policy::lock::{self, Record};
use crate::policy::{kill, port, stale, tree, write};
use crate::wit::bengal::pid_manager::log::Level;
use crate::wit::bengal::pid_manager::process_table::ProcessEntry;
use crate::wit::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};
use crate::wit::exports::bengal::pid_manager::manager::{
    ClearReport, PortDescription, PortHolder, PortStatus, PreflightReport, Role, StaleServer,
    Verdict,
};

/// The port as it stands, with the holder judged against `tree` (the
/// stale server's members): a member holds it for the server.
fn port_status(port: Option<PortDescription>, tree: &[ProcessEntry]) -> PortStatus {
    match port {
        None => PortStatus::Unchecked,
        Some(PortDescription::Free) => PortStatus::Free,
        Some(PortDescription::Unknown(uid)) => PortStatus::HeldByUnknown(uid),
        Some(PortDescription::Held(holder)) => {
            if tree.iter().any(|m| m.pid == holder.lineage[0].pid) {
                PortStatus::HeldByServer(holder)
            } else {
                PortStatus::HeldByOther(holder)
            }
        }
    }
}

/// The server of the live process `identity`, described: its claim's
/// group (when the lock file records one for it) and its tree.
fn server(
    host: &impl Host,
    identity: ProcessIdentity,
    from_pid_file: bool,
    claimed: bool,
    record: Option<Record>,
) -> Result<(StaleServer, Vec<ProcessEntry>), Error> {
    let group = record
        .filter(|r| r.claimant == identity)
        .and_then(|r| r.group);
    let members = kill::plan(host, identity, group)?;
    let command = match host.inspect(identity.pid) {
        Ok(info) if info.start_token == identity.start_token => command_line(&info),
        _ => "(gone)".into(),
    };
    let server = StaleServer {
        identity,
        command,
        holds_port: false,
        from_pid_file,
        claimed,
        group,
        tree: tree::describe(host, &members),
    };
    Ok((server, members))
}

/// The live server the PID file names.
fn from_pid_file(
    host: &impl Host,
    pid_file: &str,
    record: Option<Record>,
) -> Result<Option<(StaleServer, Vec<ProcessEntry>)>, Error> {
    let Some(live) = stale::find_live_server(host, pid_file)? else {
        return Ok(None);
    };
    let Ok(info) = host.inspect(live.pid) else {
        return Ok(None);
    };
    let identity = ProcessIdentity {
        pid: live.pid,
        start_token: info.start_token,
    };
    caller_is_not_stale(server(host, identity, true, live.claimed, record))
}

/// A server that is one of the caller's ancestors is the caller's own
/// (pidman run by a script the server runs): not stale, never stopped.
fn caller_is_not_stale(
    found: Result<(StaleServer, Vec<ProcessEntry>), Error>,
) -> Result<Option<(StaleServer, Vec<ProcessEntry>)>, Error> {
    match found {
        Ok(found) => Ok(Some(found)),
        Err(Error::Denied(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The server above the port's holder: the topmost of its ancestors that
/// is a Bengal server or the recorded claim's, else the orphaned group of
/// the recorded claim the holder belongs to.
fn from_port(
    host: &impl Host,
    pid_file: &str,
    holder: &PortHolder,
    record: Option<Record>,
) -> Result<Option<(StaleServer, Vec<ProcessEntry>)>, Error> {
    if let Some(top) = holder.lineage.iter().rev().find(|e| e.role != Role::Other) {
        if kill::refusal(host, top.pid).is_some() {
            return Ok(None);
        }
        let Ok(info) = host.inspect(top.pid) else {
            return Ok(None);
        };
        let identity = ProcessIdentity {
            pid: top.pid,
            start_token: info.start_token,
        };
        host.log(
            Level::Info,
            &format!(
                "{} holds the port; above it, {} is the server",
                holder.lineage[0].pid, top.pid
            ),
        );
        // Managed by a live claim: `run`'s server, a child of it, or the
        // `run` that holds the claim (its argv ends in the server's)?
        let claimed = lock::live_claim(host, pid_file).is_some_and(|c| {
            c.holder == Some(identity) || lock::covers(host, c.claimant, c.group, identity.pid)
        });
        return caller_is_not_stale(server(host, identity, false, claimed, record));
    }
    let Some(root) = holder.orphan_of else {
        return Ok(None);
    };
    host.log(
        Level::Info,
        &format!(
            "{} holds the port, in the process group of server {} that `pidman run` claimed, now gone",
            holder.lineage[0].pid, root.pid
        ),
    );
    caller_is_not_stale(server(host, root, false, false, record))
}

/// `preflight`: a stale server from the PID file; else the server above
/// the port's holder. A port held by any other program is reported, never
/// touched.
pub fn preflight(
    host: &impl Host,
    pid_file: &str,
    port: Option<u16>,
) -> Result<PreflightReport, Error> {
    let record = lock::recorded_claim(host, pid_file);
    let mut found = from_pid_file(host, pid_file, record)?;
    let description = match port {
        Some(port) => Some(port::describe_port(host, port, Some(pid_file))?),
        None => None,
    };
    if found.is_none()
        && let Some(PortDescription::Held(holder)) = &description
    {
        found = from_port(host, pid_file, holder, record)?;
    }
    let (mut server, members) = found.unzip();
    let status = port_status(description, members.as_deref().unwrap_or_default());
    if let Some(server) = server.as_mut() {
        server.holds_port = matches!(status, PortStatus::HeldByServer(_));
    }
    let verdict = match (&status, &server) {
        (PortStatus::HeldByOther(_) | PortStatus::HeldByUnknown(_), _) => Verdict::PortBusy,
        (_, Some(_)) => Verdict::StaleServer,
        (_, None) => Verdict::Clear,
    };
    Ok(PreflightReport {
        pid_file: pid_file.to_owned(),
        server,
        port: status,
        verdict,
    })
}

/// The group `server` may be stopped by: only while the lock file still
/// records that very claim (a claim taken since is someone else's).
fn confirmed_group(host: &impl Host, pid_file: &str, server: &StaleServer) -> Option<Pid> {
    let group = server.group?;
    let record = lock::recorded_claim(host, pid_file)?;
    (record.claimant == server.identity && record.group == Some(group)).then_some(group)
}

/// `clear-stale`: stop the server `preflight` found and its tree as it is
/// now, remove the PID file if it still names the server, and look at the
/// port again.
pub fn clear_stale(
    host: &impl Host,
    pid_file: &str,
    server: &StaleServer,
    port: Option<u16>,
    timeout_ms: Option<u64>,
) -> Result<ClearReport, Error> {
    let timeout_ms = kill::valid_timeout(timeout_ms)?;
    let root = server.identity;
    if let Some(why) = kill::refusal(host, root.pid) {
        return Err(Error::Denied(format!("refusing to signal: {why}")));
    }
    let group = confirmed_group(host, pid_file, server);
    let members = kill::plan(host, root, group)?;
    let stopped = if members.is_empty() {
        kill::gone()
    } else {
        kill::stop_tree(host, root, &members, timeout_ms)?
    };
    // Under the lock, and only while the file names the server; a file
    // someone else claims meanwhile is theirs (the next check judges it).
    match write::remove_pid_file(host, pid_file, Some(root.pid)) {
        Ok(_) => {}
        Err(Error::Denied(why)) => host.log(Level::Warn, &why),
        Err(e) => return Err(e),
    }
    let description = match port {
        Some(port) => Some(port::describe_port(host, port, Some(pid_file))?),
        None => None,
    };
    let port = port_status(description, &[]);
    Ok(ClearReport { stopped, port })
}
