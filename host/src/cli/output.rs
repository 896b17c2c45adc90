//! Printing a command's outcome: human lines or one JSON object on stdout,
//! errors once on stderr. Output that cannot be written is an error too
//! (exit 2), never a panic and never a silent exit 0.

use std::io::Write;
use std::process::ExitCode;

use serde_json::{Value, json};

use super::exit::{Exit, Outcome};
use crate::Error;
use crate::capabilities::log::escape_controls;

/// Print what `run` came to and give the exit status.
pub fn finish(json: bool, command: &str, result: Result<Outcome, Error>) -> ExitCode {
    let (exit, printed) = match result {
        Ok(outcome) if json => {
            let mut fields = outcome.fields;
            fields["ok"] = json!(true);
            fields["command"] = json!(command);
            fields["exit"] = json!(outcome.exit.code());
            (outcome.exit, print_json(&fields))
        }
        Ok(outcome) => (outcome.exit, print_lines(&outcome.lines)),
        Err(e) if json => (
            Exit::Error,
            print_json(&json!({
                "ok": false, "command": command, "exit": Exit::Error.code(),
                "error": {"kind": e.kind(), "message": e.to_string()},
            })),
        ),
        Err(e) => {
            eprintln!("pidman: {}", escape_controls(&e.to_string()));
            (Exit::Error, Ok(()))
        }
    };
    match printed {
        Ok(()) => exit.into(),
        // A closed or full stdout: the answer did not arrive, say so.
        Err(e) => {
            eprintln!("pidman: cannot write the answer to stdout: {e}");
            Exit::Error.into()
        }
    }
}

/// A usage error (clap's message), as text or JSON.
pub fn usage_error(json: bool, e: &clap::Error) -> ExitCode {
    if json {
        let message = e.to_string();
        let _ = print_json(
            &json!({"ok": false, "error": {"kind": "usage", "message": message.trim()}}),
        );
    } else {
        let _ = e.print();
    }
    Exit::Error.into()
}

fn print_json(value: &Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()
}

fn print_lines(lines: &[String]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    // Lines quote other processes' command lines: never raw to a terminal.
    for line in lines {
        writeln!(out, "{}", escape_controls(line))?;
    }
    out.flush()
}
