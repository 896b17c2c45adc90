//! The gate: the WIT import traits, implemented for the store's state over
//! any [`Backend`]. Each request passes the host's own rules
//! ([`crate::gate`]: the path grant, the signal floor, the call's time
//! budget) and then goes to the backend, which only acts.

use wasmtime::component::Resource;

use crate::backend::Backend;
use crate::bindings::HeldLock;
use crate::bindings::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};
use crate::bindings::bengal::pid_manager::{files, log, ports, process_table, signals, types};
use crate::gate::{self, Caller};
use crate::state::PluginState;

type Answer<T> = wasmtime::Result<Result<T, Error>>;

impl<B: Backend> PluginState<B> {
    /// The caller's parent; when it cannot be read the call fails (a trap
    /// that names why), since every answer would be a guess.
    fn parent(&mut self) -> wasmtime::Result<Pid> {
        self.backend.parent_pid().map_err(|e| {
            wasmtime::Error::msg(format!(
                "cannot read pidman's parent process: {}",
                crate::Error::Guest(e)
            ))
        })
    }

    /// A blocking import may not start once the call's budget is spent: the
    /// call is stopped (a trap), whatever the plugin would do next.
    fn within_budget(&self) -> wasmtime::Result<()> {
        if self.budget.spent() {
            wasmtime::bail!("the plugin ran past its time budget; stopped");
        }
        Ok(())
    }
}

impl<B: Backend> types::Host for PluginState<B> {}

impl<B: Backend> process_table::Host for PluginState<B> {
    fn own_pid(&mut self) -> wasmtime::Result<Pid> {
        Ok(self.backend.own_pid())
    }

    fn parent_pid(&mut self) -> wasmtime::Result<Pid> {
        self.parent()
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

    fn snapshot(&mut self) -> Answer<Vec<process_table::ProcessEntry>> {
        Ok(self.backend.snapshot())
    }
}

impl<B: Backend> signals::Host for PluginState<B> {
    fn send(&mut self, target: ProcessIdentity, sig: signals::Signal) -> Answer<()> {
        let caller = Caller {
            pid: self.backend.own_pid(),
            parent: self.parent()?,
            uid: self.backend.own_uid(),
        };
        // The owner matters only to a caller that is not root.
        let owner = match caller.uid {
            0 => None,
            _ => self
                .backend
                .inspect(target.pid)
                .ok()
                .and_then(|info| info.uid),
        };
        if let Some(why) = gate::signal_refusal(&caller, target.pid, owner) {
            return Ok(Err(Error::Denied(format!(
                "the host refuses to signal: {why}"
            ))));
        }
        Ok(self.backend.send(target, sig))
    }

    fn wait_exit(&mut self, target: ProcessIdentity, timeout_ms: u64) -> Answer<bool> {
        self.within_budget()?;
        let timeout_ms = self.budget.clamp_ms(timeout_ms);
        Ok(self.backend.wait_exit(target, timeout_ms))
    }

    fn clock_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(self.backend.clock_ms())
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
        // The granted directory's own owner too: whose project it is.
        Ok(match self.grant.check_or_self(&path) {
            Ok(path) => self.backend.file_owner(&path),
            Err(e) => Err(e),
        })
    }

    fn try_lock(&mut self, path: String, wait_ms: u32) -> Answer<Option<Resource<HeldLock>>> {
        self.within_budget()?;
        let checked = match self.grant.check(&path) {
            Ok(path) => path,
            Err(e) => return Ok(Err(e)),
        };
        let wait_ms = self.budget.clamp_ms(u64::from(wait_ms)) as u32;
        match self.backend.try_lock(&checked, wait_ms) {
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
