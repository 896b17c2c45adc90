//! The `pidman` command line: argument parsing, one function per command,
//! and the output (human or `--json`). Every decision is the plugin's; this
//! module only asks, prints and maps answers to exit codes.

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::supervise;
use crate::{
    Claim, ClearReport, Error, GuestError, KillOutcome, Native, PidManager, Plugin, PortOwner,
    PortStatus, PreflightReport, Verdict,
};

/// A PID-file manager for dev servers: find a stale server, prove it is
/// really that server, stop it gracefully, see who holds the port, and claim
/// the PID file.
///
/// Exit status: 0 yes / done, 1 no / refused (the message says why), 2 error.
#[derive(Debug, Parser)]
#[command(name = "pidman", version)]
pub struct Cli {
    /// The project root; the PID file is <ROOT>/.bengal.pid.
    #[arg(long, global = true, value_name = "DIR", default_value = ".")]
    root: PathBuf,
    /// Print one JSON object on stdout, errors included.
    #[arg(long, global = true)]
    json: bool,
    /// Explain each decision on stderr.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Load this build of the plugin instead of the embedded one.
    #[arg(long, global = true, value_name = "FILE.wasm")]
    plugin: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the PID file's path.
    Path,
    /// Print the PID of the live server that owns the PID file (exit 0), or
    /// remove a stale file and exit 1.
    Check {
        /// Another PID file than <ROOT>/.bengal.pid.
        #[arg(long, value_name = "F")]
        pid_file: Option<PathBuf>,
    },
    /// Exit 0 if PID runs a Bengal serve command, 1 if not.
    IsBengal {
        /// The process to look at.
        pid: u32,
    },
    /// SIGTERM, wait, SIGKILL: exit 0 once the process is gone, 1 if not.
    Kill {
        /// The process to stop.
        pid: u32,
        /// Seconds to wait after SIGTERM before SIGKILL [default: 5].
        #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
    },
    /// Write a PID to the PID file, atomically.
    Write {
        /// Another PID file than <ROOT>/.bengal.pid.
        #[arg(long, value_name = "F")]
        pid_file: Option<PathBuf>,
        /// The PID to write [default: the calling (parent) process].
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Remove the PID file (clean shutdown).
    Remove {
        /// Another PID file than <ROOT>/.bengal.pid.
        #[arg(long, value_name = "F")]
        pid_file: Option<PathBuf>,
    },
    /// Print the PID listening on PORT: exit 0 if the port is in use, 1 if free.
    Port {
        /// The TCP port.
        port: u16,
    },
    /// The dev-server start check: exit 0 when the server may start.
    Preflight(#[command(flatten)] StartCheck),
    /// Claim the PID file unless a live server holds it: exit 0 claimed, 1 held.
    Acquire {
        /// Another PID file than <ROOT>/.bengal.pid.
        #[arg(long, value_name = "F")]
        pid_file: Option<PathBuf>,
        /// The PID to claim for [default: the calling (parent) process].
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Preflight, start CMD, hold the claim for its life, forward
    /// SIGINT/SIGTERM/SIGHUP, remove the PID file when it exits; exit with
    /// its status.
    Run {
        #[command(flatten)]
        check: StartCheck,
        /// The server command and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
}

/// The options of the start check (`preflight`, and `run` before it starts
/// the server).
#[derive(Debug, Clone, Copy, clap::Args)]
struct StartCheck {
    /// The port the server wants.
    #[arg(long, value_name = "P")]
    port: Option<u16>,
    /// Stop a stale server without asking.
    #[arg(long)]
    yes: bool,
    /// Seconds a stale server gets after SIGTERM [default: 5].
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    timeout: Option<Duration>,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{text} is not a usable number of seconds"))
}

/// What a command found: its exit code, its human lines, its JSON fields.
struct Outcome {
    code: u8,
    lines: Vec<String>,
    fields: Value,
}

impl Outcome {
    fn new(code: u8, line: impl Into<String>, fields: Value) -> Self {
        Self {
            code,
            lines: vec![line.into()],
            fields,
        }
    }
}

/// Run the command line; errors print once, as one line (or one JSON
/// object), with exit status 2.
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let json = args.iter().any(|a| a == "--json");
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            if json {
                let _ = print_json(
                    &json!({"ok": false, "error": {"kind": "usage", "message": e.to_string().trim()}}),
                );
            } else {
                let _ = e.print();
            }

            return ExitCode::from(2);
        }
    };
    let command = command_name(&cli.command);
    let (code, printed) = match run(&cli) {
        Ok(outcome) => {
            let printed = if cli.json {
                let mut fields = outcome.fields;
                fields["ok"] = json!(true);
                fields["command"] = json!(command);
                fields["exit"] = json!(outcome.code);
                print_json(&fields)
            } else {
                print_lines(&outcome.lines)
            };
            (outcome.code, printed)
        }
        Err(e) => {
            let printed = if cli.json {
                print_json(&json!({
                    "ok": false, "command": command, "exit": 2,
                    "error": {"kind": e.kind(), "message": e.to_string()},
                }))
            } else {
                eprintln!("pidman: {e}");
                Ok(())
            };
            (2, printed)
        }
    };
    match printed {
        Ok(()) => ExitCode::from(code),
        // A closed or full stdout: the answer did not arrive, say so.
        Err(e) => {
            eprintln!("pidman: cannot write the answer to stdout: {e}");
            ExitCode::from(2)
        }
    }
}

fn print_json(value: &Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()
}

fn print_lines(lines: &[String]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}")?;
    }
    out.flush()
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Path => "path",
        Command::Check { .. } => "check",
        Command::IsBengal { .. } => "is-bengal",
        Command::Kill { .. } => "kill",
        Command::Write { .. } => "write",
        Command::Remove { .. } => "remove",
        Command::Port { .. } => "port",
        Command::Preflight(_) => "preflight",
        Command::Acquire { .. } => "acquire",
        Command::Run { .. } => "run",
    }
}

fn plugin(cli: &Cli) -> Result<Plugin, Error> {
    let plugin = match &cli.plugin {
        Some(path) => Plugin::from_file(path)?,
        None => Plugin::embedded()?,
    };
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
fn manager(cli: &Cli, pid_file: Option<&Path>) -> Result<&'static mut PidManager, Error> {
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
fn creating_manager(cli: &Cli, pid_file: Option<&Path>) -> Result<&'static mut PidManager, Error> {
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

fn parent_pid() -> u32 {
    nix::unistd::getppid().as_raw() as u32
}

/// An error the command answers with exit 1 (a refusal, not a failure).
fn refused(e: &Error) -> bool {
    matches!(
        e,
        Error::Guest(
            GuestError::Denied(_) | GuestError::PermissionDenied(_) | GuestError::Survived(_)
        )
    )
}

fn run(cli: &Cli) -> Result<Outcome, Error> {
    match &cli.command {
        Command::Path => {
            let mgr = manager(cli, None)?;
            let path = mgr.pid_file().display().to_string();
            Ok(Outcome::new(0, path.clone(), json!({"pid_file": path})))
        }
        Command::Check { pid_file } => {
            let mgr = manager(cli, pid_file.as_deref())?;
            let found = mgr.check_stale_pid()?;
            let file = mgr.pid_file().display().to_string();
            let fields = json!({"pid_file": file, "pid": found, "log": mgr.log()});
            Ok(match found {
                Some(pid) => Outcome::new(0, pid.to_string(), fields),
                None => Outcome {
                    code: 1,
                    lines: vec![],
                    fields,
                },
            })
        }
        Command::IsBengal { pid } => {
            let mgr = manager(cli, None)?;
            let yes = mgr.is_bengal_process(*pid)?;
            let line = format!(
                "{pid} is {}a Bengal serve process",
                if yes { "" } else { "not " }
            );
            Ok(Outcome::new(
                u8::from(!yes),
                line,
                json!({"pid": pid, "bengal": yes}),
            ))
        }
        Command::Kill { pid, timeout } => {
            let mgr = manager(cli, None)?;
            match mgr.kill_stale_process(*pid, *timeout) {
                Ok(outcome) => {
                    let line = match outcome {
                        KillOutcome::AlreadyGone => format!("{pid} was not running"),
                        KillOutcome::Terminated => format!("{pid} exited after SIGTERM"),
                        KillOutcome::Killed => format!("{pid} ignored SIGTERM and was killed"),
                    };
                    Ok(Outcome::new(
                        0,
                        line,
                        json!({"pid": pid, "gone": true, "outcome": kill_name(outcome), "log": mgr.log()}),
                    ))
                }
                Err(e) if refused(&e) => Ok(Outcome::new(
                    1,
                    format!("{pid} was not stopped: {e}"),
                    json!({"pid": pid, "gone": false, "reason": e.to_string(), "kind": e.kind()}),
                )),
                Err(e) => Err(e),
            }
        }
        Command::Write { pid_file, pid } => {
            let mgr = creating_manager(cli, pid_file.as_deref())?;
            let file = mgr.pid_file().display().to_string();
            let written = match mgr.write_pid_file(Some(pid.unwrap_or_else(parent_pid))) {
                Ok(written) => written,
                Err(e) if refused(&e) => return Ok(refusal(&file, &e)),
                Err(e) => return Err(e),
            };
            Ok(Outcome::new(
                0,
                format!("wrote {written} to {file}"),
                json!({"pid_file": file, "pid": written}),
            ))
        }
        Command::Remove { pid_file } => {
            let mgr = manager(cli, pid_file.as_deref())?;
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
                0,
                line,
                json!({"pid_file": file, "removed": removed}),
            ))
        }
        Command::Port { port } => {
            let mgr = manager(cli, None)?;
            Ok(match mgr.process_on_port(*port)? {
                PortOwner::Free => Outcome {
                    code: 1,
                    lines: vec![],
                    fields: json!({"port": port, "in_use": false}),
                },
                PortOwner::Listener(pid) | PortOwner::Holder(pid) => Outcome::new(
                    0,
                    pid.to_string(),
                    json!({"port": port, "in_use": true, "pid": pid}),
                ),
                PortOwner::Unknown(uid) => Outcome::new(
                    0,
                    format!("in use by a process of uid {uid} that pidman cannot see"),
                    json!({"port": port, "in_use": true, "pid": null, "uid": uid}),
                ),
            })
        }
        Command::Preflight(check) => preflight(manager(cli, None)?, check, cli.json),
        Command::Acquire { pid_file, pid } => {
            let mgr = creating_manager(cli, pid_file.as_deref())?;
            let pid = pid.unwrap_or_else(parent_pid);
            let file = mgr.pid_file().display().to_string();
            match mgr.acquire(Some(pid))? {
                // The CLI's claim ends with this process: the lock is
                // released, and the file stays, naming `pid`.
                Claim::Claimed(guard) => {
                    guard.keep_file()?;
                    Ok(Outcome::new(
                        0,
                        format!("claimed {file} for {pid}"),
                        json!({"pid_file": file, "claimed": true, "pid": pid}),
                    ))
                }
                Claim::Held { holder } => Ok(Outcome::new(
                    1,
                    match holder {
                        Some(h) => format!("{file} is held by live server {h}"),
                        None => format!("{file} is being claimed by another pidman"),
                    },
                    json!({"pid_file": file, "claimed": false, "holder": holder}),
                )),
            }
        }
        Command::Run { check, command } => run_server(cli, check, command),
    }
}

/// A change the plugin refused (exit 1), naming why.
fn refusal(file: &str, e: &Error) -> Outcome {
    Outcome::new(
        1,
        format!("{file} was left as it is: {e}"),
        json!({"pid_file": file, "refused": true, "reason": e.to_string(), "kind": e.kind()}),
    )
}

fn kill_name(outcome: KillOutcome) -> &'static str {
    match outcome {
        KillOutcome::AlreadyGone => "already-gone",
        KillOutcome::Terminated => "terminated",
        KillOutcome::Killed => "killed",
    }
}

fn port_json(status: &PortStatus) -> Value {
    match status {
        PortStatus::Unchecked => json!(null),
        PortStatus::Free => json!({"free": true}),
        PortStatus::HeldByServer => json!({"free": false, "holder": "server"}),
        PortStatus::HeldByOther(p) => {
            json!({"free": false, "holder": "other", "pid": p.pid, "command": p.command})
        }
        PortStatus::HeldByUnknown(uid) => json!({"free": false, "holder": "unknown", "uid": uid}),
    }
}

/// A port that blocks the start, described; none when it does not.
fn port_blocker(port: Option<u16>, status: &PortStatus) -> Option<String> {
    let port = port?;
    match status {
        PortStatus::HeldByOther(p) => Some(format!(
            "port {port} is held by PID {} (`{}`), another program: pidman never touches it; pick another port",
            p.pid, p.command
        )),
        PortStatus::HeldByUnknown(uid) => Some(format!(
            "port {port} is in use by a process of uid {uid} that pidman cannot see; pick another port"
        )),
        _ => None,
    }
}

/// Ask on the terminal; with no terminal (or `--json`) the answer is no.
/// The question shows what would be stopped (`found`, then no longer in
/// the output after it).
fn confirm(json: bool, found: &mut Vec<String>) -> bool {
    if json || !std::io::stdin().is_terminal() {
        return false;
    }
    for line in found.drain(..) {
        eprintln!("{line}");
    }
    eprint!("Kill stale process? [Y/n] ");
    let mut answer = String::new();
    match std::io::stdin().lock().read_line(&mut answer) {
        // End of input (Ctrl-D) is no; so is an error.
        Ok(0) | Err(_) => {
            eprintln!();
            return false;
        }
        Ok(_) => {}
    }
    // An empty line is yes.
    matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "" | "y" | "yes"
    )
}

fn preflight(mgr: &mut PidManager, start: &StartCheck, json: bool) -> Result<Outcome, Error> {
    let StartCheck { port, yes, timeout } = *start;
    let report: PreflightReport = mgr.preflight(port)?;
    let file = report.pid_file.clone();
    let mut fields = json!({
        "pid_file": file,
        "port": port,
        "port_status": port_json(&report.port),
        "server": report.server.as_ref().map(|s| json!({
            "pid": s.identity.pid, "command": s.command,
            "holds_port": s.holds_port, "from_pid_file": s.from_pid_file, "claimed": s.claimed,
        })),
        "verdict": match report.verdict {
            Verdict::Clear => "clear",
            Verdict::StaleServer => "stale-server",
            Verdict::PortBusy => "port-busy",
        },
        "log": mgr.log(),
    });
    let mut lines = Vec::new();
    if let Some(server) = &report.server {
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
        lines.push(format!(
            "a server is running: PID {} (`{}`){holds}{managed}; PID file: {file}",
            server.identity.pid, server.command
        ));
    }
    match report.verdict {
        Verdict::Clear => {
            lines.push(match port {
                Some(p) => format!("clear: no stale server, port {p} is free"),
                None => "clear: no stale server".into(),
            });
            Ok(Outcome {
                code: 0,
                lines,
                fields,
            })
        }
        Verdict::PortBusy => {
            lines.extend(port_blocker(port, &report.port));
            Ok(Outcome {
                code: 1,
                lines,
                fields,
            })
        }
        Verdict::StaleServer => {
            let server = report
                .server
                .expect("a stale-server verdict names the server");
            if !(yes || confirm(json, &mut lines)) {
                lines.push("not stopped: run again with --yes to stop it".into());
                fields["stopped"] = json!(false);
                return Ok(Outcome {
                    code: 1,
                    lines,
                    fields,
                });
            }
            let cleared: ClearReport = match mgr.clear_stale(&server, port, timeout) {
                Ok(cleared) => cleared,
                Err(e) if refused(&e) => {
                    lines.push(format!("could not stop PID {}: {e}", server.identity.pid));
                    fields["stopped"] = json!(false);
                    fields["reason"] = json!(e.to_string());
                    return Ok(Outcome {
                        code: 1,
                        lines,
                        fields,
                    });
                }
                Err(e) => return Err(e),
            };
            lines.push(format!(
                "stopped PID {} ({})",
                server.identity.pid,
                kill_name(cleared.outcome)
            ));
            fields["stopped"] = json!(true);
            fields["outcome"] = json!(kill_name(cleared.outcome));
            fields["port_status"] = port_json(&cleared.port);
            match port_blocker(port, &cleared.port) {
                Some(blocker) => {
                    lines.push(blocker);
                    Ok(Outcome {
                        code: 1,
                        lines,
                        fields,
                    })
                }
                None => {
                    if let Some(p) = port {
                        lines.push(format!("port {p} is free"));
                    }
                    Ok(Outcome {
                        code: 0,
                        lines,
                        fields,
                    })
                }
            }
        }
    }
}

/// `pidman run`: preflight, claim, start, forward, clean up.
fn run_server(cli: &Cli, start: &StartCheck, command: &[OsString]) -> Result<Outcome, Error> {
    // First, before any thread exists: a signal from now on waits for us.
    supervise::block_forwarded().map_err(|e| Error::Io(e.into()))?;
    let mgr = creating_manager(cli, None)?;
    // A server another pidman keeps claimed runs as intended: a second
    // `run` names it and stops; it never kills it.
    if let Some(server) = mgr.preflight(start.port)?.server.filter(|s| s.claimed) {
        let pid = server.identity.pid;
        return Ok(Outcome::new(
            1,
            format!(
                "another server holds the PID file: PID {pid} (`{}`)",
                server.command
            ),
            json!({"claimed": false, "holder": pid}),
        ));
    }
    let check = preflight(mgr, start, cli.json)?;
    if check.code != 0 {
        return Ok(check);
    }
    let mut guard = match mgr.acquire(Some(std::process::id()))? {
        Claim::Claimed(guard) => guard,
        Claim::Held { holder } => {
            let line = match holder {
                Some(h) => format!("another server holds the PID file: PID {h}"),
                None => "another pidman is claiming the PID file".into(),
            };
            return Ok(Outcome::new(
                1,
                line,
                json!({"claimed": false, "holder": holder}),
            ));
        }
    };
    let file = guard.pid_file().display().to_string();
    // A signal that came while we checked and claimed stops us here: the
    // server never starts.
    if let Some(signal) = supervise::pending() {
        guard.release()?;
        let code = 128 + signal as u8;
        return Ok(Outcome::new(
            code,
            format!("{} before the server started: not started", signal.as_str()),
            json!({"pid_file": file, "started": false, "signal": signal.as_str(), "status": code}),
        ));
    }
    let foreground = supervise::in_terminal_foreground();
    let child = match supervise::spawn(command, foreground) {
        Ok(child) => child,
        Err(e) => {
            if foreground {
                supervise::reclaim_terminal();
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
    let status = supervise::forward_until_exit(child);
    if foreground {
        supervise::reclaim_terminal();
    }
    let status = status.map_err(|e| Error::Io(anyhow::anyhow!("waiting for the server: {e}")))?;
    guard.release()?;
    let code = supervise::exit_code(status);
    let fields = json!({"pid_file": file, "pid": child_pid, "status": code, "started": true});
    Ok(Outcome {
        code,
        lines: vec![],
        fields,
    })
}
