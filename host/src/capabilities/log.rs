//! `log`: the guest's account of its decisions, printed on `-v` and kept
//! for `--json`.

use crate::plugin::bindings::bengal::pid_manager::log::{Host, Level};
use crate::state::PluginState;

/// Where the guest's messages go.
#[derive(Debug, Default, Clone)]
pub struct LogSink {
    /// Print each message to stderr as it comes.
    pub verbose: bool,
    /// Every message of the current call, oldest first.
    pub messages: Vec<String>,
}

impl Host for PluginState {
    fn emit(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
        };
        if self.log.verbose {
            eprintln!("pidman: {level}: {message}");
        }
        if self.log.messages.len() < 1_000 {
            self.log.messages.push(format!("{level}: {message}"));
        }
        Ok(())
    }
}
