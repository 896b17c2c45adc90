//! `pidman run`'s process handling, the OS side of it: which interrupts
//! the wrapper takes over, how the server is started, and how it is
//! watched. One implementation per OS: `unix` (Linux and macOS: signals,
//! process groups, the terminal's foreground) and `windows` (console
//! control events).

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// An interrupt that arrived before the server started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupt {
    /// Its name (`SIGINT`, `CTRL_C_EVENT`).
    pub name: &'static str,
    /// The number the wrapper's exit status adds to 128.
    pub number: u8,
}

/// What the user typed at a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// One line, without its line end.
    Line(String),
    /// End of input (Ctrl-D), or the terminal went away.
    End,
    /// An interrupt (Ctrl-C) came first; it stays pending.
    Interrupted(Interrupt),
}
