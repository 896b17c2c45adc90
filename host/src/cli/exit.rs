//! Exit statuses, as fd keeps them: one place says what each number means.

use serde_json::Value;

/// How a command ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: yes, done, clear to start.
    Yes,
    /// 1: no, refused, held (the message says why).
    No,
    /// 2: an error: usage, an unreadable or untrusted file, a plugin that
    /// fails to load, anything else.
    Error,
    /// `run`: the server's own status (128 + N for a signal).
    Server(u8),
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Yes => 0,
            Exit::No => 1,
            Exit::Error => 2,
            Exit::Server(code) => code,
        }
    }

    /// Yes when `yes`, else no.
    pub fn yes_if(yes: bool) -> Self {
        if yes { Exit::Yes } else { Exit::No }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

/// What a command found: how it ends, its human lines, its JSON fields.
pub struct Outcome {
    /// How the command ends.
    pub exit: Exit,
    /// What it prints on stdout, without `--json`.
    pub lines: Vec<String>,
    /// What it prints with `--json` (besides `ok`, `command`, `exit`).
    pub fields: Value,
}

impl Outcome {
    /// An outcome of one line.
    pub fn new(exit: Exit, line: impl Into<String>, fields: Value) -> Self {
        Self::lines(exit, vec![line.into()], fields)
    }

    /// An outcome of any number of lines (none: silent).
    pub fn lines(exit: Exit, lines: Vec<String>, fields: Value) -> Self {
        Self {
            exit,
            lines,
            fields,
        }
    }
}
