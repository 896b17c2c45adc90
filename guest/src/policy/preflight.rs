//! The dev-server start check: is a stale server in the way, and who holds
//! the port.

use crate::host::Host;
use crate::policy::identity::{command_line, is_bengal_argv};
use crate::policy::{kill, port, stale, write};
use crate::wit::bengal::pid_manager::log::Level;
use crate::wit::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};
use crate::wit::exports::bengal::pid_manager::manager::{
    ClearReport, PortOwner, PortStatus, PreflightReport, ProcessSummary, StaleServer, Verdict,
};

/// A live process described for the report; none when it vanished.
fn describe(host: &impl Host, pid: Pid) -> Option<(ProcessIdentity, String, Vec<String>)> {
    let info = host.inspect(pid).ok()?;
    let identity = ProcessIdentity {
        pid,
        start_token: info.start_token,
    };
    Some((identity, command_line(&info), info.argv))
}

fn port_status(
    host: &impl Host,
    port: Option<u16>,
    server: Option<Pid>,
) -> Result<PortStatus, Error> {
    let Some(port) = port else {
        return Ok(PortStatus::Unchecked);
    };
    Ok(match port::process_on_port(host, port)? {
        PortOwner::Free => PortStatus::Free,
        PortOwner::Listener(pid) | PortOwner::Holder(pid) if Some(pid) == server => {
            PortStatus::HeldByServer
        }
        PortOwner::Listener(pid) | PortOwner::Holder(pid) => {
            let command = describe(host, pid).map_or_else(|| "?".into(), |(_, cmd, _)| cmd);
            PortStatus::HeldByOther(ProcessSummary { pid, command })
        }
        PortOwner::Unknown(uid) => PortStatus::HeldByUnknown(uid),
    })
}

/// The live server the PID file names, described.
fn server_from_pid_file(host: &impl Host, live: stale::LiveServer) -> Option<StaleServer> {
    let (identity, command, _) = describe(host, live.pid)?;
    Some(StaleServer {
        identity,
        command,
        holds_port: false,
        from_pid_file: true,
        claimed: live.claimed,
    })
}

/// A Bengal server listening on `port` (never the caller or its parent).
fn bengal_listener(host: &impl Host, port: u16) -> Result<Option<StaleServer>, Error> {
    let PortOwner::Listener(pid) = port::process_on_port(host, port)? else {
        return Ok(None);
    };
    if kill::refusal(host, pid).is_some() {
        return Ok(None);
    }
    let Some((identity, command, argv)) = describe(host, pid) else {
        return Ok(None);
    };
    if !is_bengal_argv(&argv) {
        return Ok(None);
    }
    host.log(
        Level::Info,
        &format!("Bengal server {pid} listens on {port}"),
    );
    Ok(Some(StaleServer {
        identity,
        command,
        holds_port: true,
        from_pid_file: false,
        claimed: false,
    }))
}

/// `preflight`: a stale server from the PID file; else a Bengal server
/// listening on `port`. A port held by any other program is reported, never
/// touched.
pub fn preflight(
    host: &impl Host,
    pid_file: &str,
    port: Option<u16>,
) -> Result<PreflightReport, Error> {
    let mut server = match stale::find_live_server(host, pid_file)? {
        Some(live) => server_from_pid_file(host, live),
        None => None,
    };
    if server.is_none()
        && let Some(port) = port
    {
        server = bengal_listener(host, port)?;
    }
    let status = port_status(host, port, server.as_ref().map(|s| s.identity.pid))?;
    if let Some(server) = server.as_mut() {
        server.holds_port = matches!(status, PortStatus::HeldByServer);
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

/// `clear-stale`: stop exactly the server `preflight` found, remove the PID
/// file if it still names it, and look at the port again.
pub fn clear_stale(
    host: &impl Host,
    pid_file: &str,
    server: &StaleServer,
    port: Option<u16>,
    timeout_ms: Option<u64>,
) -> Result<ClearReport, Error> {
    let pid = server.identity.pid;
    let outcome = kill::stop(host, server.identity, timeout_ms)?;
    // Under the lock, and only while the file names the server; a file
    // someone else claims meanwhile is theirs (the next check judges it).
    match write::remove_pid_file(host, pid_file, Some(pid)) {
        Ok(_) => {}
        Err(Error::Denied(why)) => host.log(Level::Warn, &why),
        Err(e) => return Err(e),
    }
    let port = port_status(host, port, None)?;
    Ok(ClearReport { outcome, port })
}
