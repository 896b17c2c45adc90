//! One function per command (the start check and `run` are in
//! [`super::start`]). Every decision is the plugin's: these ask, and turn
//! the answer into an [`Outcome`].

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::args::{Cli, Command};
use super::exit::{Exit, Outcome};
use super::{start, tree};
use crate::{Claim, Error, GuestError, KillOutcome, Native, PidManager, Plugin, PortDescription};

/// Run the command `cli` names.
pub fn run(cli: &Cli) -> Result<Outcome, Error> {
    match &cli.command {
        Command::Path => path(cli),
        Command::Check { file } => check(manager(cli, file.path.as_deref())?),
        Command::IsBengal { pid } => is_bengal(manager(cli, None)?, *pid),
        Command::Kill {
            pid,
            timeout,
            dry_run: false,
        } => kill(manager(cli, None)?, *pid, *timeout),
        Command::Kill { pid, .. } => plan(manager(cli, None)?, *pid),
        Command::Write { file, pid } => write(creating_manager(cli, file.path.as_deref())?, *pid),
        Command::Remove { file } => remove(manager(cli, file.path.as_deref())?),
        Command::Port { port: number } => port(manager(cli, None)?, *number, cli.json),
        Command::Preflight { check, dry_run } => {
            start::preflight(manager(cli, None)?, check, *dry_run, cli.json)
        }
        Command::Acquire { file, pid } => {
            acquire(creating_manager(cli, file.path.as_deref())?, *pid)
        }
        Command::Run { check, command } => start::run_server(cli, check, command),
        // Answered by `cli::main` before any plugin is loaded.
        Command::Completions { .. } | Command::Man => unreachable!("handled by cli::main"),
    }
}

fn plugin(cli: &Cli) -> Result<Plugin, Error> {
    let plugin = match &cli.plugin {
        Some(path) => Plugin::from_file(path)?,
        None => Plugin::embedded()?,
    };
    if let Some(why) = plugin.cache_refused().filter(|_| cli.verbose) {
        eprintln!("pidman: {}", crate::capabilities::log::escape_controls(why));
    }
    Ok(plugin.exit_on_overrun())
}

/// `PIDMAN_CALL_BUDGET_MS`: each plugin call's wall-clock budget, for slow
/// machines and for the tests of the limits; else the library's default.
fn call_budget() -> Result<Duration, Error> {
    match std::env::var("PIDMAN_CALL_BUDGET_MS") {
        Err(_) => Ok(crate::DEFAULT_BUDGET),
        Ok(ms) => ms.parse().map(Duration::from_millis).map_err(|_| {
            Error::Io(anyhow::anyhow!(
                "PIDMAN_CALL_BUDGET_MS={ms:?} is not a number of milliseconds"
            ))
        }),
    }
}

/// The command's manager. It lives until the process exits: leaking it
/// spares a short-lived process the teardown of the engine (a tenth of its
/// run time), and every claim a command keeps is released explicitly.
pub fn manager(cli: &Cli, pid_file: Option<&Path>) -> Result<&'static mut PidManager, Error> {
    let budget = call_budget()?;
    let plugin = plugin(cli)?;
    let backend = Native::default();
    let mut manager = match pid_file {
        Some(file) => PidManager::for_pid_file(&plugin, file, backend, cli.verbose),
        None => PidManager::in_root(&plugin, &cli.root, backend, cli.verbose),
    }?;
    manager.set_budget(budget);
    std::mem::forget(plugin);
    Ok(Box::leak(Box::new(manager)))
}

/// The manager for a command that creates the PID file: a missing project
/// root is made first (the plugin may use nothing outside it).
pub fn creating_manager(
    cli: &Cli,
    pid_file: Option<&Path>,
) -> Result<&'static mut PidManager, Error> {
    if pid_file.is_none() && !cli.root.exists() {
        std::fs::create_dir_all(&cli.root).map_err(|e| {
            Error::Io(anyhow::anyhow!(
                "cannot create the project root {}: {e}",
                cli.root.display()
            ))
        })?;
    }
    manager(cli, pid_file)
}

/// The PID `write` and `acquire` name by default: the caller's parent (the
/// server that runs pidman). A parent that has ended names no server.
fn parent_pid() -> Result<u32, Error> {
    match crate::capabilities::process_table::parent_pid() {
        Ok(0) => Err(Error::Io(anyhow::anyhow!(
            "pidman has no parent process to name (it has ended), so no server: give --pid"
        ))),
        Ok(pid) => Ok(pid),
        Err(e) => Err(Error::Io(anyhow::anyhow!(
            "cannot read pidman's parent process ({}): give --pid",
            Error::Guest(e)
        ))),
    }
}

/// An error the command answers with exit 1 (a refusal, not a failure).
pub fn refused(e: &Error) -> bool {
    matches!(
        e,
        Error::Guest(
            GuestError::Denied(_) | GuestError::PermissionDenied(_) | GuestError::Survived(_)
        )
    )
}

/// A change the plugin refused (exit 1), naming why.
fn refusal(file: &str, e: &Error) -> Outcome {
    Outcome::new(
        Exit::No,
        format!("{file} was left as it is: {e}"),
        json!({"pid_file": file, "refused": true, "reason": e.to_string(), "kind": e.kind()}),
    )
}

/// The name `--json` gives a kill's outcome.
pub fn kill_name(outcome: KillOutcome) -> &'static str {
    match outcome {
        KillOutcome::AlreadyGone => "already-gone",
        KillOutcome::Terminated => "terminated",
        KillOutcome::Killed => "killed",
    }
}

fn path(cli: &Cli) -> Result<Outcome, Error> {
    let path = manager(cli, None)?.pid_file().display().to_string();
    Ok(Outcome::new(
        Exit::Yes,
        path.clone(),
        json!({"pid_file": path}),
    ))
}

fn check(mgr: &mut PidManager) -> Result<Outcome, Error> {
    let found = mgr.check_stale_pid()?;
    let file = mgr.pid_file().display().to_string();
    let fields = json!({"pid_file": file, "pid": found, "log": mgr.log()});
    Ok(match found {
        Some(pid) => Outcome::new(Exit::Yes, pid.to_string(), fields),
        None => Outcome::lines(Exit::No, vec![], fields),
    })
}

fn is_bengal(mgr: &mut PidManager, pid: u32) -> Result<Outcome, Error> {
    let yes = mgr.is_bengal_process(pid)?;
    let line = format!(
        "{pid} is {}a Bengal serve process",
        if yes { "" } else { "not " }
    );
    Ok(Outcome::new(
        Exit::yes_if(yes),
        line,
        json!({"pid": pid, "bengal": yes}),
    ))
}

fn kill(mgr: &mut PidManager, pid: u32, timeout: Option<Duration>) -> Result<Outcome, Error> {
    match mgr.kill_stale_process(pid, timeout) {
        Ok(report) => {
            let mut lines = vec![match report.outcome {
                KillOutcome::AlreadyGone => format!("{pid} was not running"),
                KillOutcome::Terminated => format!("{pid} exited after SIGTERM"),
                KillOutcome::Killed => format!("{pid} ignored SIGTERM and was killed"),
            }];
            lines.extend(tree::stop_lines(&report, pid));
            let fields = json!({
                "pid": pid, "gone": true, "outcome": kill_name(report.outcome),
                "members": tree::stop_json(&report), "log": mgr.log(),
            });
            Ok(Outcome::lines(Exit::Yes, lines, fields))
        }
        Err(e) if refused(&e) => Ok(Outcome::new(
            Exit::No,
            format!("{pid} was not stopped: {e}"),
            json!({"pid": pid, "gone": false, "reason": e.to_string(), "kind": e.kind()}),
        )),
        Err(e) => Err(e),
    }
}

/// `kill --dry-run`: the tree a kill would stop, stopping nothing.
fn plan(mgr: &mut PidManager, pid: u32) -> Result<Outcome, Error> {
    let planned = mgr.plan_stop(pid);
    let log = mgr.log();
    let fields = |tree: &[crate::TreeMember]| json!({"pid": pid, "dry_run": true, "tree": tree::tree_json(tree), "log": log});
    match planned {
        Ok(tree) if tree.is_empty() => Ok(Outcome::new(
            Exit::Yes,
            format!("{pid} is not running: nothing would be stopped"),
            fields(&tree),
        )),
        Ok(tree) => {
            let mut lines = vec![format!(
                "would stop {} process{} (dry run, nothing was signalled):",
                tree.len(),
                if tree.len() == 1 { "" } else { "es" }
            )];
            lines.extend(tree::tree_lines(&tree));
            Ok(Outcome::lines(Exit::Yes, lines, fields(&tree)))
        }
        Err(e) if refused(&e) => Ok(Outcome::new(
            Exit::No,
            format!("{pid} would not be stopped: {e}"),
            json!({"pid": pid, "dry_run": true, "reason": e.to_string(), "kind": e.kind()}),
        )),
        Err(e) => Err(e),
    }
}

fn write(mgr: &mut PidManager, pid: Option<u32>) -> Result<Outcome, Error> {
    let file = mgr.pid_file().display().to_string();
    let pid = match pid {
        Some(pid) => pid,
        None => parent_pid()?,
    };
    match mgr.write_pid_file(Some(pid)) {
        Ok(written) => Ok(Outcome::new(
            Exit::Yes,
            format!("wrote {written} to {file}"),
            json!({"pid_file": file, "pid": written}),
        )),
        Err(e) if refused(&e) => Ok(refusal(&file, &e)),
        Err(e) => Err(e),
    }
}

fn remove(mgr: &mut PidManager) -> Result<Outcome, Error> {
    let file = mgr.pid_file().display().to_string();
    let removed = match mgr.remove_pid_file(None) {
        Ok(removed) => removed,
        Err(e) if refused(&e) => return Ok(refusal(&file, &e)),
        Err(e) => return Err(e),
    };
    let line = if removed {
        format!("removed {file}")
    } else {
        format!("no PID file at {file}")
    };
    Ok(Outcome::new(
        Exit::Yes,
        line,
        json!({"pid_file": file, "removed": removed}),
    ))
}

fn port(mgr: &mut PidManager, port: u16, json: bool) -> Result<Outcome, Error> {
    Ok(match mgr.describe_port(port)? {
        PortDescription::Free => {
            Outcome::lines(Exit::No, vec![], json!({"port": port, "in_use": false}))
        }
        PortDescription::Held(holder) => {
            let pid = holder.lineage[0].pid;
            if !json {
                // stdout keeps the bare PID for scripts; people read this.
                eprintln!("port {port} is held by {}", tree::lineage_text(&holder));
            }
            let mut fields = tree::holder_json(&holder);
            fields["port"] = json!(port);
            fields["in_use"] = json!(true);
            Outcome::new(Exit::Yes, pid.to_string(), fields)
        }
        PortDescription::Unknown(uid) => Outcome::new(
            Exit::Yes,
            unseen_holder(uid),
            json!({"port": port, "in_use": true, "pid": null, "uid": uid}),
        ),
    })
}

fn acquire(mgr: &'static mut PidManager, pid: Option<u32>) -> Result<Outcome, Error> {
    let pid = match pid {
        Some(pid) => pid,
        None => parent_pid()?,
    };
    let file = mgr.pid_file().display().to_string();
    match mgr.acquire(Some(pid))? {
        // The CLI's claim ends with this process: the lock is released,
        // and the file stays, naming `pid`.
        Claim::Claimed(guard) => {
            guard.keep_file()?;
            Ok(Outcome::new(
                Exit::Yes,
                format!("claimed {file} for {pid}"),
                json!({"pid_file": file, "claimed": true, "pid": pid}),
            ))
        }
        Claim::Held { holder } => Ok(Outcome::new(
            Exit::No,
            match holder {
                Some(h) => format!("{file} is held by live server {h}"),
                None => format!("{file} is being claimed by another pidman"),
            },
            json!({"pid_file": file, "claimed": false, "holder": holder}),
        )),
    }
}

/// Who holds a port whose owner cannot be seen, as the lines say it.
pub fn unseen_holder(uid: u32) -> String {
    if uid == crate::capabilities::ports::UNKNOWN_UID {
        "in use by a process that pidman cannot see (another user's)".into()
    } else {
        format!("in use by a process of uid {uid} that pidman cannot see")
    }
}
