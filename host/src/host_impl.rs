//! The WIT import traits, implemented for the store's state over any
//! [`Backend`]: conversion and forwarding only, plus the grant check on
//! paths (a host rule that holds for every backend).

use wasmtime::component::Resource;

use crate::backend::{Backend, HeldLock};
use crate::plugin::bindings::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};
use crate::plugin::bindings::bengal::pid_manager::{
    files, log, ports, process_table, signals, types,
};
use crate::state::PluginState;

type Answer<T> = wasmtime::Result<Result<T, Error>>;

impl<B: Backend> types::Host for PluginState<B> {}

impl<B: Backend> process_table::Host for PluginState<B> {
    fn own_pid(&mut self) -> wasmtime::Result<Pid> {
        Ok(self.backend.own_pid())
    }

    fn parent_pid(&mut self) -> wasmtime::Result<Pid> {
        Ok(self.backend.parent_pid())
    }

    fn own_uid(&mut self) -> wasmtime::Result<u32> {
        Ok(self.backend.own_uid())
    }

    fn state(&mut self, pid: Pid) -> Answer<process_table::ProcessState> {
        Ok(self.backend.process_state(pid))
    }

    fn inspect(&mut self, pid: Pid) -> Answer<process_table::ProcessInfo> {
        Ok(self.backend.inspect(pid))
    }
}

impl<B: Backend> signals::Host for PluginState<B> {
    fn send(&mut self, target: ProcessIdentity, sig: signals::Signal) -> Answer<()> {
        Ok(self.backend.send(target, sig))
    }

    fn wait_exit(&mut self, target: ProcessIdentity, timeout_ms: u64) -> Answer<bool> {
        Ok(self.backend.wait_exit(target, timeout_ms))
    }
}

impl<B: Backend> ports::Host for PluginState<B> {
    fn sockets(&mut self, port: u16, listening: bool) -> Answer<Vec<ports::TcpSocket>> {
        Ok(self.backend.sockets(port, listening))
    }

    fn owner(&mut self, handle: u64) -> Answer<Option<Pid>> {
        Ok(self.backend.socket_owner(handle))
    }
}

impl<B: Backend> files::Host for PluginState<B> {
    fn owner(&mut self, path: String) -> Answer<files::FileOwner> {
        Ok(match self.grant.check(&path) {
            Ok(path) => self.backend.file_owner(path),
            Err(e) => Err(e),
        })
    }

    fn try_lock(&mut self, path: String, wait_ms: u32) -> Answer<Option<Resource<HeldLock>>> {
        let checked = match self.grant.check(&path) {
            Ok(path) => path,
            Err(e) => return Ok(Err(e)),
        };
        match self.backend.try_lock(checked, wait_ms) {
            Ok(Some(lock)) => Ok(Ok(Some(self.table.push(lock)?))),
            Ok(None) => Ok(Ok(None)),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl<B: Backend> files::HostLock for PluginState<B> {
    fn drop(&mut self, lock: Resource<HeldLock>) -> wasmtime::Result<()> {
        self.table.delete(lock)?;
        Ok(())
    }
}

impl<B: Backend> log::Host for PluginState<B> {
    fn emit(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.log.record(level, message);
        Ok(())
    }
}
