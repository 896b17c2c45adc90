//! The operating-system side of each WIT capability interface, one module
//! each: the only code that touches the OS for the plugin, put together by
//! [`crate::backend::Native`]. Each does what it is asked and decides
//! nothing, except the host's own hard refusals (PID 0/1, itself, its
//! parent, other users' processes, paths outside the grant).

pub mod files;
pub mod log;
pub mod ports;
pub mod process_table;
pub mod signals;

use crate::plugin::bindings::bengal::pid_manager::types::Error;

/// An `io::Error` as the guest-visible error, naming what failed.
pub(crate) fn io_error(what: &str, e: &std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound,
        std::io::ErrorKind::PermissionDenied => Error::PermissionDenied(format!("{what}: {e}")),
        _ => Error::Io(format!("{what}: {e}")),
    }
}

/// An errno as the guest-visible error.
pub(crate) fn errno_error(what: &str, errno: nix::errno::Errno) -> Error {
    io_error(what, &std::io::Error::from(errno))
}
