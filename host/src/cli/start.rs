//! The dev-server start: `preflight` (find a stale server, say who holds the
//! port, stop the server when told to) and `run` (the same check, then
//! claim, start and supervise the server; the OS side is
//! [`crate::supervise`]).

use std::ffi::OsString;
use std::io::{self, IsTerminal};

use serde_json::{Value, json};

use super::args::{Cli, StartCheck};
use super::commands::{creating_manager, kill_name, refused};
use super::exit::{Exit, Outcome};
use super::tree::{self, lineage_text, shown};
use crate::supervise;
use crate::{Claim, Error, Guard, PidManager, PortStatus, PreflightReport, StaleServer, Verdict};

fn port_json(status: &PortStatus) -> Value {
    match status {
        PortStatus::Unchecked => json!(null),
        PortStatus::Free => json!({"free": true}),
        PortStatus::HeldByServer(h) => {
            json!({"free": false, "holder": "server", "held_by": tree::holder_json(h)})
        }
        PortStatus::HeldByOther(h) => json!({
            "free": false, "holder": "other", "pid": h.lineage[0].pid,
            "command": h.lineage[0].command, "held_by": tree::holder_json(h),
        }),
        PortStatus::HeldByUnknown(uid) => json!({"free": false, "holder": "unknown", "uid": uid}),
    }
}

/// A port that blocks the start, described; none when it does not.
fn port_blocker(port: Option<u16>, status: &PortStatus) -> Option<String> {
    let port = port?;
    match status {
        PortStatus::HeldByOther(h) => Some(format!(
            "port {port} is held by {}: another program, which pidman never touches; pick another port",
            lineage_text(h)
        )),
        PortStatus::HeldByUnknown(uid) => Some(format!(
            "port {port} is {}; pick another port",
            super::commands::unseen_holder(*uid)
        )),
        _ => None,
    }
}

/// Ask on the terminal; with no terminal (or `--json`) the answer is no.
/// The question shows what would be stopped (`found`, then no longer in
/// the output after it). An empty line is yes; end of input (Ctrl-D), an
/// interrupt (Ctrl-C, which `run` holds pending and then stops on) and
/// anything else are no.
fn confirm(json: bool, found: &mut Vec<String>) -> bool {
    if json || !std::io::stdin().is_terminal() {
        return false;
    }
    for line in found.drain(..) {
        eprintln!("{line}");
    }
    eprint!("Kill stale process? [Y/n] ");
    match supervise::read_answer() {
        supervise::Answer::Line(answer) => matches!(
            answer.trim().to_ascii_lowercase().as_str(),
            "" | "y" | "yes"
        ),
        supervise::Answer::End | supervise::Answer::Interrupted(_) => {
            eprintln!();
            false
        }
    }
}

/// The report as `--json` shows it.
fn report_fields(report: &PreflightReport, port: Option<u16>, log: &[String]) -> Value {
    json!({
        "pid_file": report.pid_file,
        "port": port,
        "port_status": port_json(&report.port),
        "server": report.server.as_ref().map(|s| json!({
            "pid": s.identity.pid, "command": s.command,
            "holds_port": s.holds_port, "from_pid_file": s.from_pid_file, "claimed": s.claimed,
            "group": s.group, "tree": tree::tree_json(&s.tree),
        })),
        "verdict": match report.verdict {
            Verdict::Clear => "clear",
            Verdict::StaleServer => "stale-server",
            Verdict::PortBusy => "port-busy",
        },
        "log": log,
    })
}

/// The line that names a running server.
fn server_line(server: &StaleServer, port: Option<u16>, file: &str) -> String {
    let holds = match port {
        Some(p) if server.holds_port => format!(", listening on port {p}"),
        Some(p) => format!(", not on port {p}"),
        None => String::new(),
    };
    let managed = if server.claimed {
        ", claimed by a running pidman"
    } else {
        ""
    };
    let found = if server.from_pid_file {
        "a server is running"
    } else {
        "a stale server holds the port"
    };
    format!(
        "{found}: PID {} (`{}`){holds}{managed}; PID file: {file}",
        server.identity.pid,
        shown(&server.command)
    )
}

/// The lines that describe what stopping `server` means: its tree, and
/// who of it holds the port.
fn tree_lines(server: &StaleServer, port: Option<u16>, status: &PortStatus) -> Vec<String> {
    let mut lines = Vec::new();
    if let (Some(p), PortStatus::HeldByServer(holder)) = (port, status) {
        lines.push(format!("port {p} is held by {}", lineage_text(holder)));
    }
    if server.tree.len() > 1
        || server
            .tree
            .first()
            .is_some_and(|m| m.identity.pid != server.identity.pid)
    {
        lines.push(format!("its tree ({} processes):", server.tree.len()));
        lines.extend(tree::tree_lines(&server.tree));
    }
    lines
}

/// `pidman preflight`: exit 0 when the server may start.
pub fn preflight(
    mgr: &mut PidManager,
    start: &StartCheck,
    dry_run: bool,
    json: bool,
) -> Result<Outcome, Error> {
    let report = mgr.preflight(start.port)?;
    let mut fields = report_fields(&report, start.port, mgr.log());
    let mut lines: Vec<String> = Vec::new();
    if let Some(server) = &report.server {
        lines.push(server_line(server, start.port, &report.pid_file));
        lines.extend(tree_lines(server, start.port, &report.port));
    }
    match (report.verdict, report.server) {
        (Verdict::StaleServer, Some(_)) if dry_run => {
            lines.push("dry run: nothing was stopped".into());
            fields["dry_run"] = json!(true);
            fields["stopped"] = json!(false);
            Ok(Outcome::lines(Exit::No, lines, fields))
        }
        (Verdict::StaleServer, Some(server)) => stop(mgr, &server, start, json, lines, fields),
        (Verdict::PortBusy, _) => {
            lines.extend(port_blocker(start.port, &report.port));
            Ok(Outcome::lines(Exit::No, lines, fields))
        }
        _ => {
            lines.push(match start.port {
                Some(p) => format!("clear: no stale server, port {p} is free"),
                None => "clear: no stale server".into(),
            });
            Ok(Outcome::lines(Exit::Yes, lines, fields))
        }
    }
}

/// Stop the stale server `preflight` found, if told to (`--yes`, or yes at
/// the prompt), and look at the port again.
fn stop(
    mgr: &mut PidManager,
    server: &StaleServer,
    start: &StartCheck,
    json: bool,
    mut lines: Vec<String>,
    mut fields: Value,
) -> Result<Outcome, Error> {
    let pid = server.identity.pid;
    if !(start.yes || confirm(json, &mut lines)) {
        lines.push("not stopped: run again with --yes to stop it".into());
        fields["stopped"] = json!(false);
        return Ok(Outcome::lines(Exit::No, lines, fields));
    }
    let cleared = match mgr.clear_stale(server, start.port, start.timeout) {
        Ok(cleared) => cleared,
        Err(e) if refused(&e) => {
            lines.push(format!("could not stop PID {pid}: {e}"));
            fields["stopped"] = json!(false);
            fields["reason"] = json!(e.to_string());
            return Ok(Outcome::lines(Exit::No, lines, fields));
        }
        Err(e) => return Err(e),
    };
    lines.push(format!(
        "stopped PID {pid} ({})",
        kill_name(cleared.stopped.outcome)
    ));
    lines.extend(tree::stop_lines(&cleared.stopped, pid));
    fields["stopped"] = json!(true);
    fields["outcome"] = json!(kill_name(cleared.stopped.outcome));
    fields["members"] = tree::stop_json(&cleared.stopped);
    fields["port_status"] = port_json(&cleared.port);
    if let Some(blocker) = port_blocker(start.port, &cleared.port) {
        lines.push(blocker);
        return Ok(Outcome::lines(Exit::No, lines, fields));
    }
    if let Some(p) = start.port {
        lines.push(format!("port {p} is free"));
    }
    Ok(Outcome::lines(Exit::Yes, lines, fields))
}

/// Told to stop, the wrapper stops what its server left in its process
/// group (a shell's child, a worker), so that none of it keeps the port.
fn stop_leftovers(guard: &mut Guard<'_>) {
    match guard.stop_tree(None) {
        Ok(report) if !report.members.is_empty() => eprintln!(
            "pidman: stopped {} process{} the server left behind",
            report.members.len(),
            if report.members.len() == 1 { "" } else { "es" }
        ),
        Ok(_) => {}
        Err(e) => eprintln!("pidman: warning: could not stop what the server left behind: {e}"),
    }
}

/// `pidman run`: preflight, claim, start, forward, clean up.
pub fn run_server(cli: &Cli, start: &StartCheck, command: &[OsString]) -> Result<Outcome, Error> {
    // First, before any thread exists: a signal from now on waits for us.
    supervise::block_forwarded().map_err(|e| Error::Io(e.into()))?;
    let mgr = creating_manager(cli, None)?;
    // A server another pidman keeps claimed runs as intended: a second
    // `run` names it and stops; it never kills it.
    if let Some(server) = mgr.preflight(start.port)?.server.filter(|s| s.claimed) {
        let pid = server.identity.pid;
        let line = format!(
            "another server holds the PID file: PID {pid} (`{}`)",
            shown(&server.command)
        );
        return Ok(Outcome::new(
            Exit::No,
            line,
            json!({"claimed": false, "holder": pid}),
        ));
    }
    let check = preflight(mgr, start, false, cli.json)?;
    // Ctrl-C (or another forwarded signal) during the check, at its prompt
    // too, stops `run`: the server never starts.
    if let Some(signal) = supervise::pending() {
        let code = 128 + signal.number;
        let mut lines = check.lines;
        lines.push(format!("{}: not started", signal.name));
        let mut fields = check.fields;
        fields["started"] = json!(false);
        fields["signal"] = json!(signal.name);
        fields["status"] = json!(code);
        return Ok(Outcome::lines(Exit::Server(code), lines, fields));
    }
    if check.exit != Exit::Yes {
        return Ok(check);
    }
    let guard = match mgr.acquire(Some(std::process::id()))? {
        Claim::Claimed(guard) => guard,
        Claim::Held { holder } => {
            let line = match holder {
                Some(h) => format!("another server holds the PID file: PID {h}"),
                None => "another pidman is claiming the PID file".into(),
            };
            return Ok(Outcome::new(
                Exit::No,
                line,
                json!({"claimed": false, "holder": holder}),
            ));
        }
    };
    serve(guard, command)
}

/// Start the server under the claim `guard` holds, hand the claim over,
/// wait for the server, release the claim.
fn serve(mut guard: Guard<'_>, command: &[OsString]) -> Result<Outcome, Error> {
    let file = guard.pid_file().display().to_string();
    // A signal that came while we checked and claimed stops us here (or,
    // on Windows, at the last moment inside `spawn`): the server never
    // starts.
    let not_started = |guard: Guard<'_>, signal: supervise::Interrupt| {
        guard.release()?;
        let code = 128 + signal.number;
        let line = format!("{} before the server started: not started", signal.name);
        let fields =
            json!({"pid_file": file, "started": false, "signal": signal.name, "status": code});
        Ok(Outcome::new(Exit::Server(code), line, fields))
    };
    if let Some(signal) = supervise::pending() {
        return not_started(guard, signal);
    }
    let foreground = supervise::in_terminal_foreground();
    let child = match supervise::spawn(command, foreground) {
        Ok(child) => child,
        Err(e) => {
            if foreground {
                supervise::reclaim_terminal();
            }
            if let (io::ErrorKind::Interrupted, Some(signal)) = (e.kind(), supervise::pending()) {
                return not_started(guard, signal);
            }
            return Err(Error::Io(anyhow::anyhow!(
                "cannot start {}: {e}",
                command[0].to_string_lossy()
            )));
        }
    };
    let child_pid = child.id();
    if let Err(e) = guard.set_pid(child_pid) {
        eprintln!(
            "pidman: warning: could not hand the claim to the server ({e}); the file names pidman"
        );
    }
    let status = supervise::forward_until_exit(child, foreground);
    if foreground {
        supervise::reclaim_terminal();
    }
    let status = status.map_err(|e| Error::Io(anyhow::anyhow!("waiting for the server: {e}")))?;
    if supervise::told_to_stop() {
        stop_leftovers(&mut guard);
    }
    guard.release()?;
    let code = supervise::exit_code(status);
    let fields = json!({"pid_file": file, "pid": child_pid, "status": code, "started": true});
    Ok(Outcome::lines(Exit::Server(code), vec![], fields))
}
