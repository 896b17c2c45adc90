//! A simulated backend: an in-memory process table (argv, start time, uid,
//! zombie state, parent and group, and how each process answers SIGTERM;
//! an exiting process's children are reparented to init, its sockets
//! close, and a reloader replaces a child that exits), simulated sockets,
//! and a virtual clock that `wait-exit` advances instead of sleeping. The
//! real guest runs on it through the same linker as on the real OS, so its
//! every decision (including 5-second timeouts) can be tested
//! deterministically in microseconds. Files stay real (WASI on a temporary
//! directory); only their owner is simulated.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::backend::{Backend, HeldLock};
use crate::bindings::bengal::pid_manager::files::FileOwner;
use crate::bindings::bengal::pid_manager::ports::{TcpSocket, TcpState};
pub use crate::bindings::bengal::pid_manager::process_table::ProcessState;
use crate::bindings::bengal::pid_manager::process_table::{ProcessEntry, ProcessInfo};
pub use crate::bindings::bengal::pid_manager::signals::Signal;
use crate::bindings::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};

/// How a simulated process answers SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTerm {
    /// It exits this many (virtual) milliseconds later.
    ExitAfter(u64),
    /// It ignores it; only SIGKILL ends it.
    Ignore,
}

/// One simulated process.
#[derive(Debug, Clone)]
pub struct Process {
    /// Its command line.
    pub argv: Vec<String>,
    /// When it started, ms since the epoch.
    pub start_time_ms: u64,
    /// Its owner.
    pub uid: u32,
    /// Running or zombie.
    pub state: ProcessState,
    /// What SIGTERM does to it.
    pub on_term: OnTerm,
    /// SIGKILL does not end it either (uninterruptible sleep).
    pub unkillable: bool,
    /// Its parent (init unless set).
    pub parent: Pid,
    /// Its process group; none: the one it leads (its own PID).
    pub group: Option<Pid>,
    /// Its session (0: unknown).
    pub session: Pid,
    /// A reloader's child: when it exits while its parent runs and has
    /// not been sent SIGTERM, the parent starts a replacement (the next
    /// free PID, the same argv, parent and group), which takes over its
    /// sockets.
    pub respawn: bool,
    exits_at: Option<u64>,
    terminated: bool,
}

impl Process {
    /// A running process of `uid` with this command line, started at
    /// `start_time_ms`, that exits 50 ms after SIGTERM.
    pub fn new(argv: &[&str], start_time_ms: u64, uid: u32) -> Self {
        Self {
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            start_time_ms,
            uid,
            state: ProcessState::Running,
            on_term: OnTerm::ExitAfter(50),
            unkillable: false,
            parent: 1,
            group: None,
            session: 0,
            respawn: false,
            exits_at: None,
            terminated: false,
        }
    }
}

/// One simulated TCP socket.
#[derive(Debug, Clone)]
pub struct Socket {
    /// Its local port.
    pub port: u16,
    /// Listening (else an established connection).
    pub listening: bool,
    /// The process holding it; none when it is invisible to the caller.
    pub pid: Option<Pid>,
    /// The socket's owner.
    pub uid: u32,
    /// IPv6.
    pub ipv6: bool,
}

/// The simulated world, shared between the backend and the test.
#[derive(Debug)]
pub struct World {
    /// The virtual clock, ms since the epoch.
    pub now_ms: u64,
    /// The caller's PID.
    pub own_pid: Pid,
    /// The caller's parent.
    pub parent_pid: Pid,
    /// The caller's user.
    pub uid: u32,
    /// The process table.
    pub processes: BTreeMap<Pid, Process>,
    /// The sockets.
    pub sockets: Vec<Socket>,
    /// Every signal delivered, in order.
    pub signals: Vec<(Pid, Signal)>,
    /// Lock files another process holds and keeps.
    pub locks_held_elsewhere: BTreeSet<PathBuf>,
    /// Owners of files, where they should not be the caller.
    pub file_owners: BTreeMap<PathBuf, u32>,
    /// What every `try-lock` answers instead of a lock (a read-only
    /// directory, say), when set.
    pub lock_error: Option<Error>,
    locks: BTreeSet<PathBuf>,
}

/// The backend: cheap to clone, every clone sees the same world.
#[derive(Debug, Clone)]
pub struct Simulated {
    world: Arc<Mutex<World>>,
}

/// The simulated caller: PID 4000 (parent 3999) of user 1000.
pub const OWN_PID: Pid = 4000;
/// The simulated caller's parent.
pub const PARENT_PID: Pid = 3999;
/// The simulated caller's user.
pub const UID: u32 = 1000;

impl Default for Simulated {
    fn default() -> Self {
        Self::new()
    }
}

impl Simulated {
    /// A world with init (PID 1, root's), the caller and its parent, its
    /// clock set to the real time (file times are real).
    pub fn new() -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut processes = BTreeMap::new();
        processes.insert(1, Process::new(&["/sbin/init"], now_ms - 86_400_000, 0));
        processes.insert(PARENT_PID, Process::new(&["bash"], now_ms - 600_000, UID));
        let mut own = Process::new(&["pidman"], now_ms - 5, UID);
        own.parent = PARENT_PID;
        own.group = Some(PARENT_PID);
        processes.insert(OWN_PID, own);
        let world = World {
            now_ms,
            own_pid: OWN_PID,
            parent_pid: PARENT_PID,
            uid: UID,
            processes,
            sockets: Vec::new(),
            signals: Vec::new(),
            locks_held_elsewhere: BTreeSet::new(),
            file_owners: BTreeMap::new(),
            lock_error: None,
            locks: BTreeSet::new(),
        };
        Self {
            world: Arc::new(Mutex::new(world)),
        }
    }

    /// The world, to arrange a scenario or to look at what happened.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn advance(world: &mut World, to_ms: u64) {
        world.now_ms = world.now_ms.max(to_ms);
        let now = world.now_ms;
        let ending: Vec<Pid> = world
            .processes
            .iter()
            .filter(|(_, p)| {
                p.state == ProcessState::Running && p.exits_at.is_some_and(|t| t <= now)
            })
            .map(|(&pid, _)| pid)
            .collect();
        for pid in ending {
            Self::exit(world, pid);
        }
    }

    /// `pid` exits: a zombie now; its children go to init; its sockets
    /// close, unless its reloader starts a replacement that takes them.
    fn exit(world: &mut World, pid: Pid) {
        let Some(process) = world.processes.get_mut(&pid) else {
            return;
        };
        process.state = ProcessState::Zombie;
        let process = process.clone();
        for child in world.processes.values_mut().filter(|p| p.parent == pid) {
            child.parent = 1;
        }
        let reloader_runs = world
            .processes
            .get(&process.parent)
            .is_some_and(|p| p.state == ProcessState::Running && !p.terminated);
        let heir = if process.respawn && reloader_runs && process.parent != 1 {
            let next = world.processes.keys().max().map_or(2, |max| max + 1);
            let mut replacement = Process::new(&[], world.now_ms, process.uid);
            replacement.argv = process.argv.clone();
            replacement.parent = process.parent;
            replacement.group = Some(process.group.unwrap_or(pid));
            replacement.session = process.session;
            replacement.respawn = true;
            replacement.on_term = process.on_term;
            world.processes.insert(next, replacement);
            Some(next)
        } else {
            None
        };
        for socket in world.sockets.iter_mut().filter(|s| s.pid == Some(pid)) {
            match heir {
                Some(next) => socket.pid = Some(next),
                // A closed socket keeps its slot (handles are indices), on
                // port 0, which nobody asks about.
                None => socket.port = 0,
            }
        }
    }

    fn identified(world: &World, target: ProcessIdentity) -> Result<&Process, Error> {
        let process = world.processes.get(&target.pid).ok_or(Error::NotFound)?;
        if process.start_time_ms != target.start_token {
            return Err(Error::Changed);
        }
        Ok(process)
    }
}

/// Releases a simulated lock on drop.
struct SimulatedLock {
    world: Arc<Mutex<World>>,
    path: PathBuf,
}

impl Drop for SimulatedLock {
    fn drop(&mut self) {
        if let Ok(mut world) = self.world.lock() {
            world.locks.remove(&self.path);
        }
    }
}

impl Backend for Simulated {
    fn own_pid(&mut self) -> Pid {
        self.world().own_pid
    }

    fn parent_pid(&mut self) -> Result<Pid, Error> {
        Ok(self.world().parent_pid)
    }

    fn own_uid(&mut self) -> u32 {
        self.world().uid
    }

    fn process_state(&mut self, pid: Pid) -> Result<ProcessState, Error> {
        Ok(self
            .world()
            .processes
            .get(&pid)
            .map_or(ProcessState::Gone, |p| p.state))
    }

    fn inspect(&mut self, pid: Pid) -> Result<ProcessInfo, Error> {
        let world = self.world();
        let p = world.processes.get(&pid).ok_or(Error::NotFound)?;
        Ok(ProcessInfo {
            pid,
            name: p
                .argv
                .first()
                .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
                .unwrap_or_default(),
            argv: if p.state == ProcessState::Zombie {
                Vec::new()
            } else {
                p.argv.clone()
            },
            start_time_ms: p.start_time_ms,
            start_token: p.start_time_ms,
            uid: Some(p.uid),
            state: p.state,
            parent: p.parent,
            group: p.group.unwrap_or(pid),
            session: p.session,
        })
    }

    fn snapshot(&mut self) -> Result<Vec<ProcessEntry>, Error> {
        Ok(self
            .world()
            .processes
            .iter()
            .map(|(&pid, p)| ProcessEntry {
                pid,
                parent: p.parent,
                group: p.group.unwrap_or(pid),
                start_token: p.start_time_ms,
                state: p.state,
            })
            .collect())
    }

    fn send(&mut self, target: ProcessIdentity, signal: Signal) -> Result<(), Error> {
        // The gate has applied the host's floor (PID 0, 1, self, parent,
        // other users' processes) before this is called.
        let mut world = self.world();
        let pid = target.pid;
        let process = Self::identified(&world, target)?;
        if process.state != ProcessState::Running {
            return Err(Error::NotFound);
        }
        world.signals.push((pid, signal));
        let now = world.now_ms;
        let process = world.processes.get_mut(&pid).expect("identified above");
        if signal == Signal::Term {
            process.terminated = true;
        }
        match (signal, process.on_term) {
            (Signal::Term, OnTerm::ExitAfter(ms)) => process.exits_at = Some(now + ms),
            (Signal::Kill, _) if !process.unkillable => Self::exit(&mut world, pid),
            // Ignored SIGTERM, an unkillable process, and SIGCONT (simulated
            // processes are never stopped).
            _ => {}
        }
        Ok(())
    }

    fn wait_exit(&mut self, target: ProcessIdentity, timeout_ms: u64) -> Result<bool, Error> {
        let mut world = self.world();
        let exits_at = match Self::identified(&world, target) {
            Ok(p) if p.state != ProcessState::Running => return Ok(true),
            Ok(p) => p.exits_at,
            Err(Error::NotFound | Error::Changed) => return Ok(true),
            Err(e) => return Err(e),
        };
        let deadline = world.now_ms.saturating_add(timeout_ms);
        match exits_at {
            Some(at) if at <= deadline => {
                Self::advance(&mut world, at);
                Ok(true)
            }
            _ => {
                Self::advance(&mut world, deadline);
                Ok(false)
            }
        }
    }

    fn clock_ms(&mut self) -> u64 {
        self.world().now_ms
    }

    fn sockets(&mut self, port: u16, listening: bool) -> Result<Vec<TcpSocket>, Error> {
        let world = self.world();
        Ok(world
            .sockets
            .iter()
            .enumerate()
            .filter(|(_, s)| s.port == port && s.listening == listening)
            .map(|(i, s)| TcpSocket {
                ipv6: s.ipv6,
                local_address: if s.ipv6 {
                    "::".into()
                } else {
                    "127.0.0.1".into()
                },
                state: if s.listening {
                    TcpState::Listen
                } else {
                    TcpState::Established
                },
                uid: s.uid,
                handle: i as u64 + 1,
            })
            .collect())
    }

    fn socket_owner(&mut self, handle: u64) -> Result<Option<Pid>, Error> {
        let world = self.world();
        let index = usize::try_from(handle).ok().and_then(|h| h.checked_sub(1));
        Ok(index.and_then(|i| world.sockets.get(i)).and_then(|s| s.pid))
    }

    fn file_owner(&mut self, path: &Path) -> Result<FileOwner, Error> {
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| crate::capabilities::io_error(&path.display().to_string(), &e))?;
        let world = self.world();
        Ok(FileOwner {
            uid: world.file_owners.get(path).copied().unwrap_or(world.uid),
            mode: crate::capabilities::files::mode(&meta),
            symlink: meta.file_type().is_symlink(),
        })
    }

    fn try_lock(&mut self, path: &Path, _wait_ms: u32) -> Result<Option<HeldLock>, Error> {
        let mut world = self.world();
        if let Some(e) = &world.lock_error {
            return Err(e.clone());
        }
        if world.locks_held_elsewhere.contains(path) || !world.locks.insert(path.to_owned()) {
            return Ok(None);
        }
        let guard = SimulatedLock {
            world: Arc::clone(&self.world),
            path: path.to_owned(),
        };
        Ok(Some(HeldLock::new(guard)))
    }
}
