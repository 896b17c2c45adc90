//! `log`: the guest's account of its decisions, printed on `-v` and kept
//! for `--json`.
//!
//! Test-only pause point, compiled only with the `test-pause` feature (the
//! test suite's builds; never an installed one): with
//! `PIDMAN_TEST_PAUSE=<text>=<file>` in the environment, the first message containing `<text>` prints
//! `pidman: paused at: <message>` on stderr and waits (at most 60 s) until
//! `<file>` exists. The integration tests use it to act at an exact moment
//! of a decision (kill a writer between its temporary file and the rename;
//! change a file between its judgement and its removal). The host has
//! points of its own, named the same way ([`pause_here`]).

#[cfg(feature = "test-pause")]
use std::path::PathBuf;
#[cfg(feature = "test-pause")]
use std::sync::OnceLock;
#[cfg(feature = "test-pause")]
use std::time::{Duration, Instant};

use crate::bindings::bengal::pid_manager::log::Level;

/// `text` with every control character escaped (`\n`, `\e`, `\x{7}`), so
/// that another process's command line, quoted in a message, can never
/// move the cursor, retitle the terminal or forge a line of pidman's own
/// output. (In `--json` it stays data: JSON escapes it.) Idempotent: the
/// escapes hold no control character, and a backslash stays as it is (a
/// Windows path reads as it is).
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            c if c.is_control() => out.push_str(&format!("\\x{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Where the guest's messages go.
#[derive(Debug, Default, Clone)]
pub struct LogSink {
    /// Print each message to stderr as it comes.
    pub verbose: bool,
    /// Every message of the current call, oldest first.
    pub messages: Vec<String>,
    #[cfg(feature = "test-pause")]
    paused: bool,
}

#[cfg(feature = "test-pause")]
fn pause_point() -> Option<&'static (String, PathBuf)> {
    static PAUSE: OnceLock<Option<(String, PathBuf)>> = OnceLock::new();
    PAUSE
        .get_or_init(|| {
            let spec = std::env::var("PIDMAN_TEST_PAUSE").ok()?;
            let (text, file) = spec.split_once('=')?;
            Some((text.to_owned(), PathBuf::from(file)))
        })
        .as_ref()
}

/// Wait here (at most 60 s) if `what` is what `PIDMAN_TEST_PAUSE` names,
/// until its release file exists; whether it was.
#[cfg(feature = "test-pause")]
pub fn pause_here(what: &str) -> bool {
    let Some((text, release)) = pause_point() else {
        return false;
    };
    if !what.contains(text.as_str()) {
        return false;
    }
    eprintln!("pidman: paused at: {what}");
    let until = Instant::now() + Duration::from_secs(60);
    while !release.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

impl LogSink {
    /// The pause point: [`pause_here`] at the first message that is the one
    /// `PIDMAN_TEST_PAUSE` names.
    #[cfg(feature = "test-pause")]
    fn pause_at(&mut self, message: &str) {
        if !self.paused {
            self.paused = pause_here(message);
        }
    }

    /// A sink that prints as it goes when `verbose`.
    pub fn new(verbose: bool) -> Self {
        Self {
            verbose,
            ..Self::default()
        }
    }

    /// Record one message of the guest's.
    pub fn record(&mut self, level: Level, message: String) {
        let level = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
        };
        if self.verbose {
            eprintln!("pidman: {level}: {}", escape_controls(&message));
        }
        #[cfg(feature = "test-pause")]
        self.pause_at(&message);
        if self.messages.len() < 1_000 {
            self.messages.push(format!("{level}: {message}"));
        }
    }
}
