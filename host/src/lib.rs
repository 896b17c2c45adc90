//! pidman: a PID-file manager for dev servers, as a WASI plugin component
//! and its native host.
//!
//! The plugin (`guest/`, embedded in this crate) holds every rule: the PID
//! file's format, the identity and staleness rules, the SIGTERM/SIGKILL
//! schedule, the port rule. This crate loads it with wasmtime and supplies
//! what it asks for: the process table, signals, ports, file ownership and
//! locks, and a WASI filesystem that holds only the PID file's directory.
//!
//! ```no_run
//! use pidman::{Claim, PidManager};
//!
//! # fn main() -> Result<(), pidman::Error> {
//! let mut pids = PidManager::open(".")?;
//! if let Some(pid) = pids.check_stale_pid()? {
//!     pids.kill_stale_process(pid, None)?;
//! }
//! match pids.acquire(None)? {
//!     Claim::Claimed(guard) => {
//!         // ... serve; the PID file is removed when `guard` drops.
//!         drop(guard);
//!     }
//!     Claim::Held { holder } => eprintln!("already served by {holder:?}"),
//! }
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod backend;
mod bindings;
mod cache;
mod capabilities;
#[cfg(feature = "cli")]
pub mod cli;
mod error;
mod gate;
mod host_impl;
mod paths;
mod plugin;
mod runtime;
pub mod simulated;
mod state;
#[cfg(feature = "cli")]
mod supervise;
mod wasi;
mod watchdog;

use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmtime::component::Resource;

pub use crate::backend::{Backend, Native};
use crate::bindings::HeldLock;
pub use crate::bindings::bengal::pid_manager::types::{Error as GuestError, Pid, ProcessIdentity};
use crate::bindings::exports::bengal::pid_manager::manager::Claim as GuestClaim;
pub use crate::bindings::exports::bengal::pid_manager::manager::{
    ClearReport, KillOutcome, LineageEntry, MemberStop, PortDescription, PortHolder, PortOwner,
    PortStatus, PreflightReport, Role, StaleServer, StopReport, TreeMember, Verdict,
};
/// The Linux `/proc` readers behind the process table (for benchmarks).
#[cfg(target_os = "linux")]
#[cfg(target_os = "linux")]
pub use crate::capabilities::process_table::linux as procfs;
pub use crate::error::Error;
pub use crate::plugin::{DEFAULT_BUDGET, MAX_PLUGIN_BYTES, Plugin};
use crate::plugin::{Exports, Session};

/// The Rust example of `docs/embedding.md`, compiled as a doctest so that
/// the page stays true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/embedding.md")]
pub struct EmbeddingDoc;

/// A timeout as the WIT's milliseconds (saturating).
fn millis(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)
}

/// The result of [`PidManager::acquire`].
pub enum Claim<'m, B: Backend = Native> {
    /// The PID file is ours until the guard drops.
    Claimed(Guard<'m, B>),
    /// A live server holds it (its PID, when the file names one).
    Held {
        /// The holder's PID; none while another pidman is mid-claim.
        holder: Option<Pid>,
    },
}

/// The PID-manager API for one PID file, through the plugin, on backend
/// `B` (the real operating system unless a test says otherwise).
pub struct PidManager<B: Backend = Native> {
    session: Session<B>,
    /// The PID file as this OS writes it.
    pid_file: PathBuf,
    /// The PID file as the plugin sees it ([`paths::to_guest`]).
    guest_file: String,
    budget: Duration,
}

impl PidManager<Native> {
    /// The manager for `<project_root>/.bengal.pid`, with the embedded
    /// plugin, on the real operating system.
    pub fn open(project_root: impl AsRef<Path>) -> Result<Self, Error> {
        Self::in_root(
            &Plugin::embedded()?,
            project_root.as_ref(),
            Native::default(),
            false,
        )
    }
}

impl<B: Backend> PidManager<B> {
    /// The manager for the PID file the plugin names for `project_root`.
    /// The plugin may use the project root and nothing else: the grant comes
    /// from the root the caller gave, and a PID file the plugin names
    /// outside it is refused. A root that does not exist (yet) is a missing
    /// PID file: the grant is its nearest existing ancestor, where the
    /// plugin finds nothing to check or remove and may create the rest.
    pub fn in_root(
        plugin: &Plugin<B>,
        project_root: &Path,
        backend: B,
        verbose: bool,
    ) -> Result<Self, Error> {
        let (grant, root) = paths::resolve_root(project_root).map_err(Error::Io)?;
        let mut session = plugin.instantiate(&grant, backend, verbose)?;
        let root_str = paths::to_guest(&root).map_err(Error::Io)?;
        let named = session.call(DEFAULT_BUDGET, |g, s| g.call_get_pid_file(s, &root_str))?;
        if gate::Grant::new(root_str.clone()).check(&named).is_err() {
            return Err(Error::Plugin(anyhow::anyhow!(
                "the plugin named {named} as the PID file, outside the project root {}",
                root.display()
            )));
        }
        Ok(Self {
            session,
            pid_file: paths::from_guest(&named),
            guest_file: named,
            budget: DEFAULT_BUDGET,
        })
    }

    /// The manager for an explicit PID file. The plugin may touch only its
    /// directory (or, while that does not exist yet, its nearest existing
    /// ancestor, so that the directory can be created).
    pub fn for_pid_file(
        plugin: &Plugin<B>,
        pid_file: &Path,
        backend: B,
        verbose: bool,
    ) -> Result<Self, Error> {
        let (grant, pid_file) = paths::resolve_file(pid_file).map_err(Error::Io)?;
        let guest_file = paths::to_guest(&pid_file).map_err(Error::Io)?;
        let session = plugin.instantiate(&grant, backend, verbose)?;
        Ok(Self {
            session,
            pid_file: paths::from_guest(&guest_file),
            guest_file,
            budget: DEFAULT_BUDGET,
        })
    }

    /// The wall-clock budget of each call ([`DEFAULT_BUDGET`] unless set);
    /// a call with a timeout of its own gets that timeout on top.
    pub fn set_budget(&mut self, budget: Duration) {
        self.budget = budget;
    }

    /// The backend, for a look at what it saw (the simulated one records
    /// every signal).
    pub fn backend(&self) -> &B {
        self.session.backend()
    }

    /// The PID file this manager looks after.
    pub fn pid_file(&self) -> &Path {
        &self.pid_file
    }

    /// The directory the plugin may use.
    pub fn grant(&self) -> PathBuf {
        self.session.grant()
    }

    /// The plugin's account of its last call's decisions.
    pub fn log(&self) -> &[String] {
        self.session.log()
    }

    /// One export call answering `result<T, error>`, given the PID file's
    /// path, within the budget plus `extra`: a trap and a guest error both
    /// become an [`Error`].
    fn ask<T>(
        &mut self,
        extra: Duration,
        f: impl FnOnce(
            &Exports,
            &mut wasmtime::Store<state::PluginState<B>>,
            &str,
        ) -> wasmtime::Result<Result<T, GuestError>>,
    ) -> Result<T, Error> {
        let file = &self.guest_file;
        self.session
            .call(self.budget.saturating_add(extra), |g, s| f(g, s, file))?
            .map_err(Error::Guest)
    }

    /// Whether `pid` runs a Bengal serve command.
    pub fn is_bengal_process(&mut self, pid: Pid) -> Result<bool, Error> {
        Ok(self
            .session
            .call(self.budget, |g, s| g.call_is_bengal_process(s, pid))?)
    }

    /// The live server that owns the PID file, removing a stale file.
    pub fn check_stale_pid(&mut self) -> Result<Option<Pid>, Error> {
        self.ask(Duration::ZERO, |g, s, file| g.call_check_stale_pid(s, file))
    }

    /// Stop `pid` and its whole tree: SIGTERM (the root first), up to
    /// `timeout` (default 5 s), SIGKILL; Ok only when every member is gone.
    pub fn kill_stale_process(
        &mut self,
        pid: Pid,
        timeout: Option<Duration>,
    ) -> Result<StopReport, Error> {
        let ms = timeout.map(millis);
        self.ask(timeout.unwrap_or_default(), |g, s, _| {
            g.call_kill_stale_process(s, pid, ms)
        })
    }

    /// The tree [`Self::kill_stale_process`] would stop for `pid` now, the
    /// root first, signalling nothing (`--dry-run`); empty when `pid` does
    /// not run.
    pub fn plan_stop(&mut self, pid: Pid) -> Result<Vec<TreeMember>, Error> {
        self.ask(Duration::ZERO, |g, s, _| g.call_plan_stop(s, pid))
    }

    /// Write `pid` (default: this process) to the PID file, atomically,
    /// under its lock.
    pub fn write_pid_file(&mut self, pid: Option<Pid>) -> Result<Pid, Error> {
        self.ask(Duration::ZERO, |g, s, file| {
            g.call_write_pid_file(s, file, pid)
        })
    }

    /// Clean shutdown: remove the PID file unless it names another live
    /// server (with `expected`, only when it names that PID).
    pub fn remove_pid_file(&mut self, expected: Option<Pid>) -> Result<bool, Error> {
        self.ask(Duration::ZERO, |g, s, file| {
            g.call_remove_pid_file(s, file, expected)
        })
    }

    /// Who holds TCP `port`.
    pub fn process_on_port(&mut self, port: u16) -> Result<PortOwner, Error> {
        self.ask(Duration::ZERO, |g, s, _| {
            g.call_get_process_on_port(s, port)
        })
    }

    /// Who holds TCP `port`, with the holder's ancestry and what pidman
    /// makes of each process in it (a claim this PID file's lock records
    /// included).
    pub fn describe_port(&mut self, port: u16) -> Result<PortDescription, Error> {
        self.ask(Duration::ZERO, |g, s, file| {
            g.call_describe_port(s, port, Some(file))
        })
    }

    /// The dev-server start check.
    pub fn preflight(&mut self, port: Option<u16>) -> Result<PreflightReport, Error> {
        self.ask(Duration::ZERO, |g, s, file| g.call_preflight(s, file, port))
    }

    /// Stop the server `preflight` found and look at the port again.
    pub fn clear_stale(
        &mut self,
        server: &StaleServer,
        port: Option<u16>,
        timeout: Option<Duration>,
    ) -> Result<ClearReport, Error> {
        let ms = timeout.map(millis);
        self.ask(timeout.unwrap_or_default(), |g, s, file| {
            g.call_clear_stale(s, file, server, port, ms)
        })
    }

    /// Claim the PID file for `pid` (default: this process) unless a live
    /// server holds it. The guard keeps the lock (which names the claimant)
    /// and removes the file when it drops.
    pub fn acquire(&mut self, pid: Option<Pid>) -> Result<Claim<'_, B>, Error> {
        let claim = self.ask(Duration::ZERO, |g, s, file| g.call_acquire(s, file, pid))?;
        Ok(match claim {
            GuestClaim::Claimed(lock) => {
                let pid = pid.unwrap_or_else(|| self.session.backend_mut().own_pid());
                Claim::Claimed(Guard {
                    manager: self,
                    lock: Some(lock),
                    pid,
                })
            }
            GuestClaim::Held(holder) => Claim::Held { holder: holder.pid },
        })
    }
}

/// A claimed PID file: holds the lock, and on drop removes the file (if it
/// still names the claimed PID) and then releases the lock.
pub struct Guard<'m, B: Backend = Native> {
    manager: &'m mut PidManager<B>,
    lock: Option<Resource<HeldLock>>,
    pid: Pid,
}

impl<B: Backend> Guard<'_, B> {
    /// The PID the file names.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The PID file.
    pub fn pid_file(&self) -> &Path {
        self.manager.pid_file()
    }

    /// Hand the claim to another process (a server the caller started): the
    /// PID file and the lock now name `pid`. The lock stays with this
    /// process (no child inherits it).
    pub fn set_pid(&mut self, pid: Pid) -> Result<(), Error> {
        let Some(lock) = &self.lock else {
            return Ok(());
        };
        let borrowed = Resource::<HeldLock>::new_borrow(lock.rep());
        self.manager.ask(Duration::ZERO, |g, s, file| {
            g.call_hand_over(s, borrowed, file, pid)
        })?;
        self.pid = pid;
        Ok(())
    }

    /// Stop what is left of the claimed server's tree (its recorded
    /// process group's members started under the claim, and their
    /// descendants): for a wrapper told to stop, once its server exited.
    pub fn stop_tree(&mut self, timeout: Option<Duration>) -> Result<StopReport, Error> {
        let Some(lock) = &self.lock else {
            return Err(Error::Guest(GuestError::Invalid(
                "the claim has ended: no tree to stop".into(),
            )));
        };
        let borrowed = Resource::<HeldLock>::new_borrow(lock.rep());
        let ms = timeout.map(millis);
        self.manager.ask(timeout.unwrap_or_default(), |g, s, file| {
            g.call_stop_claimed_tree(s, borrowed, file, ms)
        })
    }

    /// End the claim but keep the PID file (it goes on naming the PID):
    /// the lock's record is cleared and the lock released.
    pub fn keep_file(mut self) -> Result<(), Error> {
        self.end(None).map(drop)
    }

    /// Remove the PID file and release the lock, reporting errors (drop
    /// does the same, silently).
    pub fn release(mut self) -> Result<bool, Error> {
        let pid = self.pid;
        self.end(Some(pid))
    }

    fn end(&mut self, remove: Option<Pid>) -> Result<bool, Error> {
        let Some(lock) = self.lock.take() else {
            return Ok(false);
        };
        let rep = lock.rep();
        let ended = self.manager.ask(Duration::ZERO, |g, s, file| {
            g.call_release(s, lock, file, remove)
        });
        if ended.is_err() {
            // The guest may not have dropped it: let the lock go regardless.
            self.manager.session.drop_lock(Resource::new_own(rep));
        }
        ended
    }
}

impl<B: Backend> Drop for Guard<'_, B> {
    fn drop(&mut self) {
        let pid = self.pid;
        let _ = self.end(Some(pid));
    }
}
