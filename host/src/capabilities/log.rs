//! `log`: the guest's account of its decisions, printed on `-v` and kept
//! for `--json`.

use crate::plugin::bindings::bengal::pid_manager::log::Level;

/// Where the guest's messages go.
#[derive(Debug, Default, Clone)]
pub struct LogSink {
    /// Print each message to stderr as it comes.
    pub verbose: bool,
    /// Every message of the current call, oldest first.
    pub messages: Vec<String>,
}

impl LogSink {
    /// Record one message of the guest's.
    pub fn record(&mut self, level: Level, message: String) {
        let level = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
        };
        if self.verbose {
            eprintln!("pidman: {level}: {message}");
        }
        if self.messages.len() < 1_000 {
            self.messages.push(format!("{level}: {message}"));
        }
    }
}
