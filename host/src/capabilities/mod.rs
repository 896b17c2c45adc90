//! The operating-system side of each WIT capability interface, one module
//! each: the only code that touches the OS for the plugin, put together by
//! `backend::Native`. Each does what it is asked and decides
//! nothing; the host's own rules are the gate's (`gate.rs`).

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
compile_error!("pidman's host has capabilities for Linux, macOS and Windows only");

pub mod files;
pub mod log;
pub mod ports;
pub mod process_table;
pub mod signals;

use crate::bindings::bengal::pid_manager::types::Error;

/// Whether to take the portable paths instead of the OS's own
/// (`PIDMAN_PORTABLE=1`, Linux and macOS): the `sysinfo` process table,
/// `kill(2)` and polling instead of pidfds or kqueue, `lsof` for ports. The
/// code the Unix systems share, run where it can be tested.
#[cfg(unix)]
pub fn portable() -> bool {
    static PORTABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PORTABLE.get_or_init(|| std::env::var_os("PIDMAN_PORTABLE").is_some_and(|v| v == "1"))
}

/// An `io::Error` as the guest-visible error, naming what failed.
pub(crate) fn io_error(what: &str, e: &std::io::Error) -> Error {
    // A process that exits while its /proc files are read answers ESRCH:
    // it is gone, which is no error.
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ESRCH) {
        return Error::NotFound;
    }
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound,
        std::io::ErrorKind::PermissionDenied => Error::PermissionDenied(format!("{what}: {e}")),
        _ => Error::Io(format!("{what}: {e}")),
    }
}

/// An errno as the guest-visible error.
#[cfg(unix)]
pub(crate) fn errno_error(what: &str, errno: nix::errno::Errno) -> Error {
    io_error(what, &std::io::Error::from(errno))
}
