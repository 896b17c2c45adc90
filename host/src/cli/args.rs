//! The command line, declared with clap: its doc comments are `--help`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// A PID-file manager for dev servers: find a stale server, prove it is
/// really that server, stop it gracefully, see who holds the port, and claim
/// the PID file.
///
/// Exit status: 0 yes / done, 1 no / refused (the message says why), 2 error.
#[derive(Debug, Parser)]
#[command(name = "pidman", version)]
pub struct Cli {
    /// The project root; the PID file is ROOT/.bengal.pid.
    #[arg(long, global = true, value_name = "DIR", default_value = ".", value_hint = clap::ValueHint::DirPath)]
    pub root: PathBuf,
    /// Print one JSON object on stdout, errors included.
    #[arg(long, global = true)]
    pub json: bool,
    /// Explain each decision on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Load this build of the plugin instead of the embedded one.
    #[arg(long, global = true, value_name = "FILE.wasm", value_hint = clap::ValueHint::FilePath)]
    pub plugin: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the PID file's path.
    Path,
    /// Print the PID of the live server that owns the PID file (exit 0), or
    /// remove a stale file and exit 1.
    Check {
        #[command(flatten)]
        file: PidFile,
    },
    /// Exit 0 if PID runs a Bengal serve command, 1 if not.
    IsBengal {
        /// The process to look at.
        pid: u32,
    },
    /// Stop PID and its whole tree (SIGTERM, wait, SIGKILL): exit 0 once
    /// every process of it is gone, 1 if not.
    Kill {
        /// The process to stop.
        pid: u32,
        /// Seconds to wait after SIGTERM before SIGKILL [default: 5].
        #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
        /// Print the tree that would be stopped, and stop nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write a PID to the PID file, atomically.
    Write {
        #[command(flatten)]
        file: PidFile,
        /// The PID to write [default: the calling (parent) process].
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Remove the PID file (clean shutdown).
    Remove {
        #[command(flatten)]
        file: PidFile,
    },
    /// Print the PID listening on PORT (and on stderr, who it is and what
    /// runs above it): exit 0 if the port is in use, 1 if free.
    Port {
        /// The TCP port.
        port: u16,
    },
    /// The dev-server start check: exit 0 when the server may start.
    Preflight {
        #[command(flatten)]
        check: StartCheck,
        /// Print the tree that stopping the stale server would end, and
        /// stop nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Claim the PID file unless a live server holds it: exit 0 claimed, 1 held.
    Acquire {
        #[command(flatten)]
        file: PidFile,
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
    /// Print a completion script for SHELL on stdout (bash: `pidman
    /// completions bash > ~/.local/share/bash-completion/completions/pidman`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout: `pidman man | man -l -`.
    Man,
}

/// The options of the start check (`preflight`, and `run` before it starts
/// the server).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct StartCheck {
    /// The port the server wants.
    #[arg(long, value_name = "P")]
    pub port: Option<u16>,
    /// Stop a stale server without asking.
    #[arg(long)]
    pub yes: bool,
    /// Seconds a stale server gets after SIGTERM [default: 5].
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub timeout: Option<Duration>,
}

/// `--pid-file`, shared by the commands that work on one PID file.
#[derive(Debug, Clone, clap::Args)]
pub struct PidFile {
    /// Another PID file than ROOT/.bengal.pid.
    #[arg(long = "pid-file", value_name = "F", value_hint = clap::ValueHint::FilePath)]
    pub path: Option<PathBuf>,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{text} is not a usable number of seconds"))
}

impl Command {
    /// The command's name, as `--json` reports it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Path => "path",
            Command::Check { .. } => "check",
            Command::IsBengal { .. } => "is-bengal",
            Command::Kill { .. } => "kill",
            Command::Write { .. } => "write",
            Command::Remove { .. } => "remove",
            Command::Port { .. } => "port",
            Command::Preflight { .. } => "preflight",
            Command::Acquire { .. } => "acquire",
            Command::Run { .. } => "run",
            Command::Completions { .. } => "completions",
            Command::Man => "man",
        }
    }
}
