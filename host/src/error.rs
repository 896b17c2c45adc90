//! The library's error: what the plugin answered, or why no answer came.

use std::fmt;

use crate::bindings::bengal::pid_manager::types::Error as GuestError;

/// What can go wrong in a [`crate::PidManager`] call.
#[derive(Debug)]
pub enum Error {
    /// The plugin answered with an error: it refused, or the operating
    /// system did. The operation had no effect beyond what the error says.
    Guest(GuestError),
    /// The plugin could not be loaded or run to the end (it trapped, ran out
    /// of fuel, memory or time). The host is unharmed.
    Plugin(anyhow::Error),
    /// The host could not do its own part: a project root or PID file path
    /// it cannot use, a command it cannot start, output it cannot write.
    Io(anyhow::Error),
}

impl Error {
    /// A short name for the error's kind (`permission-denied`, `plugin`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Plugin(_) => "plugin",
            Error::Io(_) => "io",
            Error::Guest(e) => match e {
                GuestError::NotFound => "not-found",
                GuestError::PermissionDenied(_) => "permission-denied",
                GuestError::Denied(_) => "denied",
                GuestError::Invalid(_) => "invalid",
                GuestError::Changed => "changed",
                GuestError::Survived(_) => "survived",
                GuestError::Untrusted(_) => "untrusted",
                GuestError::Unsupported(_) => "unsupported",
                GuestError::Io(_) => "io",
            },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Plugin(e) | Error::Io(e) => write!(f, "{e:#}"),
            Error::Guest(e) => match e {
                GuestError::NotFound => f.write_str("not found"),
                GuestError::Changed => f.write_str("the PID now belongs to another process"),
                GuestError::PermissionDenied(m)
                | GuestError::Denied(m)
                | GuestError::Invalid(m)
                | GuestError::Survived(m)
                | GuestError::Untrusted(m)
                | GuestError::Unsupported(m)
                | GuestError::Io(m) => f.write_str(m),
            },
        }
    }
}

impl std::error::Error for Error {}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Error::Plugin(e)
    }
}
