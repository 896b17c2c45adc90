//! What a host does for the plugin, as one trait: [`Native`] does it on the
//! real operating system, `simulated::Simulated` on an in-memory
//! process table with a virtual clock. The store is generic over it, so the
//! same linker and the same guest run on either, with no `cfg` switch.
//!
//! The filesystem is not here: it is WASI, preopened on the PID file's
//! directory, for every backend. Every request reaches a backend through
//! the gate (`gate.rs`, applied in `host_impl.rs`): paths have passed
//! the grant, signals the floor, waits the budget. Backends only act.

use std::path::Path;

pub use crate::bindings::HeldLock;
use crate::bindings::bengal::pid_manager::files::FileOwner;
use crate::bindings::bengal::pid_manager::ports::TcpSocket;
use crate::bindings::bengal::pid_manager::process_table::{
    ProcessEntry, ProcessInfo, ProcessState,
};
use crate::bindings::bengal::pid_manager::signals::Signal;
use crate::bindings::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};
use crate::capabilities::{files, ports::PortTable, process_table, signals};

/// The capabilities behind the WIT imports (one method per function).
pub trait Backend: Send + 'static {
    /// `process-table.own-pid`.
    fn own_pid(&mut self) -> Pid;
    /// `process-table.parent-pid`: the caller's parent, 0 when it has none
    /// any more; an error when it cannot be read (the call then fails:
    /// never a quiet 0, which would switch the parent rule off).
    fn parent_pid(&mut self) -> Result<Pid, Error>;
    /// `process-table.own-uid`.
    fn own_uid(&mut self) -> u32;
    /// `process-table.state`.
    fn process_state(&mut self, pid: Pid) -> Result<ProcessState, Error>;
    /// `process-table.inspect`.
    fn inspect(&mut self, pid: Pid) -> Result<ProcessInfo, Error>;
    /// `process-table.snapshot`.
    fn snapshot(&mut self) -> Result<Vec<ProcessEntry>, Error>;
    /// `signals.send`, to a target that passed the gate's floor.
    fn send(&mut self, target: ProcessIdentity, signal: Signal) -> Result<(), Error>;
    /// `signals.wait-exit`.
    fn wait_exit(&mut self, target: ProcessIdentity, timeout_ms: u64) -> Result<bool, Error>;
    /// `signals.clock-ms`: the clock `wait_exit` runs on.
    fn clock_ms(&mut self) -> u64;
    /// `ports.sockets`.
    fn sockets(&mut self, port: u16, listening: bool) -> Result<Vec<TcpSocket>, Error>;
    /// `ports.owner`.
    fn socket_owner(&mut self, handle: u64) -> Result<Option<Pid>, Error>;
    /// `files.owner`, for a path inside the grant.
    fn file_owner(&mut self, path: &Path) -> Result<FileOwner, Error>;
    /// `files.try-lock`, for a path inside the grant.
    fn try_lock(&mut self, path: &Path, wait_ms: u32) -> Result<Option<HeldLock>, Error>;
}

/// The real operating system, through each capability's implementation
/// for this OS (`capabilities/*/{linux,macos,windows,unix,portable}.rs`).
#[derive(Default)]
pub struct Native {
    processes: process_table::ProcessTable,
    ports: PortTable,
}

impl Backend for Native {
    fn own_pid(&mut self) -> Pid {
        std::process::id()
    }

    fn parent_pid(&mut self) -> Result<Pid, Error> {
        process_table::parent_pid()
    }

    fn own_uid(&mut self) -> u32 {
        process_table::own_uid()
    }

    fn process_state(&mut self, pid: Pid) -> Result<ProcessState, Error> {
        process_table::state(&mut self.processes, pid)
    }

    fn inspect(&mut self, pid: Pid) -> Result<ProcessInfo, Error> {
        self.processes.inspect(pid)
    }

    fn snapshot(&mut self) -> Result<Vec<ProcessEntry>, Error> {
        process_table::snapshot(&mut self.processes)
    }

    fn send(&mut self, target: ProcessIdentity, signal: Signal) -> Result<(), Error> {
        signals::send(&mut self.processes, target, signal)
    }

    fn wait_exit(&mut self, target: ProcessIdentity, timeout_ms: u64) -> Result<bool, Error> {
        signals::wait_exit(&mut self.processes, target, timeout_ms)
    }

    fn clock_ms(&mut self) -> u64 {
        signals::clock_ms()
    }

    fn sockets(&mut self, port: u16, listening: bool) -> Result<Vec<TcpSocket>, Error> {
        self.ports.sockets(port, listening)
    }

    fn socket_owner(&mut self, handle: u64) -> Result<Option<Pid>, Error> {
        self.ports.owner(handle)
    }

    fn file_owner(&mut self, path: &Path) -> Result<FileOwner, Error> {
        files::owner(path)
    }

    fn try_lock(&mut self, path: &Path, wait_ms: u32) -> Result<Option<HeldLock>, Error> {
        Ok(files::try_lock(path, wait_ms)?.map(HeldLock::new))
    }
}
