//! An in-memory [`Host`] for the policy's unit tests: a process table, a
//! file tree, locks, sockets and a virtual clock. It records every signal
//! and removal, so tests can assert what the policy did not do.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use crate::host::{FileKind, FileRead, FileStat, Host};
use crate::wit::bengal::pid_manager::files::FileOwner;
use crate::wit::bengal::pid_manager::log::Level;
use crate::wit::bengal::pid_manager::ports::{TcpSocket, TcpState};
use crate::wit::bengal::pid_manager::process_table::{ProcessEntry, ProcessInfo, ProcessState};
use crate::wit::bengal::pid_manager::signals::Signal;
use crate::wit::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};

pub const OWN_PID: Pid = 4000;
pub const PARENT_PID: Pid = 3999;
pub const UID: u32 = 1000;
/// "Now" on the virtual clock when a fake starts, in ms since the epoch.
pub const T0: u64 = 1_700_000_000_000;

/// How a fake process answers SIGTERM.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OnTerm {
    /// Exits this many ms after SIGTERM.
    ExitAfter(u64),
    /// Ignores it (dies only by SIGKILL).
    Ignore,
}

#[derive(Clone, Debug)]
pub struct Proc {
    pub argv: Vec<String>,
    pub start_ms: u64,
    pub uid: u32,
    pub state: ProcessState,
    pub on_term: OnTerm,
    /// When it will exit after a SIGTERM, on the virtual clock.
    pub exits_at: Option<u64>,
    /// SIGKILL does not stop it (uninterruptible sleep).
    pub unkillable: bool,
    /// Stopped (SIGSTOP): it acts on SIGTERM only after SIGCONT.
    pub stopped: bool,
    /// A SIGTERM that waits for the process to run again.
    pub term_pending: bool,
    /// Its parent (1 unless spawned as a child).
    pub parent: Pid,
    /// Its process group (its own PID unless spawned as a child).
    pub group: Pid,
    /// Its session (0: unknown, as where none can be read).
    pub session: Pid,
    /// On SIGTERM it starts this process (a pool replacing a worker), in
    /// its group, and exits only later.
    pub spawns_on_term: Option<Pid>,
    /// The OS refuses to signal it (EPERM), whatever its uid says.
    pub refuses_signals: bool,
}

#[derive(Clone, Debug)]
pub struct FakeFile {
    pub bytes: Vec<u8>,
    pub modified_ms: u64,
    pub uid: u32,
    pub mode: u32,
    pub symlink: bool,
    pub dir: bool,
    /// A FIFO, socket or device node.
    pub special: bool,
}

impl FakeFile {
    /// A regular file of the caller's, mode 0644.
    pub fn regular(bytes: &[u8], modified_ms: u64) -> Self {
        Self {
            bytes: bytes.to_vec(),
            modified_ms,
            uid: UID,
            mode: 0o644,
            symlink: false,
            dir: false,
            special: false,
        }
    }
}

#[derive(Default)]
pub struct State {
    pub now: u64,
    pub procs: BTreeMap<Pid, Proc>,
    pub files: BTreeMap<String, FakeFile>,
    pub locks: BTreeSet<String>,
    /// Lock files another process holds and will not release.
    pub foreign_locks: BTreeSet<String>,
    pub sockets: Vec<(u16, TcpSocket, Option<Pid>)>,
    pub signals: Vec<(Pid, Signal)>,
    pub removed: Vec<String>,
    /// Every `try_lock` call, granted or not.
    pub lock_attempts: u32,
    pub logs: Vec<String>,
    pub readonly: bool,
    /// Thread ids that do not lead their process: tid -> its process.
    pub threads: BTreeMap<Pid, Pid>,
    /// Calls to `random_u64`, which answers them in turn.
    pub randoms: u64,
    /// Calls to `snapshot`.
    pub snapshots: u32,
    /// Calls to `parent_pid`.
    pub parent_asks: u32,
    /// Processes `inspect` may not read (`hidepid`): permission denied.
    pub hidden: BTreeSet<Pid>,
    /// Runs once, right after the next snapshot is taken (a change between
    /// the snapshot and the first signal).
    pub after_snapshot: Option<fn(&mut State)>,
    /// Every directory `create_dir_all` made.
    pub created_dirs: Vec<String>,
    /// Every temporary name `write_file_atomic` was given.
    pub temp_names: Vec<String>,
}

#[derive(Clone)]
pub struct Fake(pub Rc<RefCell<State>>);

/// A lock of the fake: released on drop.
pub struct FakeLock {
    state: Rc<RefCell<State>>,
    path: String,
}

impl Drop for FakeLock {
    fn drop(&mut self) {
        self.state.borrow_mut().locks.remove(&self.path);
    }
}

pub fn argv(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

impl Fake {
    pub fn new() -> Self {
        let fake = Fake(Rc::new(RefCell::new(State {
            now: T0,
            ..State::default()
        })));
        fake.spawn_at(1, "/sbin/init", T0 - 86_400_000);
        fake.spawn_at(PARENT_PID, "bengal serve", T0 - 60_000);
        fake.spawn_at(OWN_PID, "pidman check", T0 - 10);
        fake.with_proc(OWN_PID, |p| {
            p.parent = PARENT_PID;
            p.group = PARENT_PID;
        });
        fake
    }

    /// A running process started at `start_ms`, owned by [`UID`].
    pub fn spawn_at(&self, pid: Pid, line: &str, start_ms: u64) {
        self.0.borrow_mut().procs.insert(
            pid,
            Proc {
                argv: argv(line),
                start_ms,
                uid: UID,
                state: ProcessState::Running,
                on_term: OnTerm::ExitAfter(50),
                exits_at: None,
                unkillable: false,
                stopped: false,
                term_pending: false,
                parent: 1,
                group: pid,
                session: 0,
                spawns_on_term: None,
                refuses_signals: false,
            },
        );
    }

    /// A child of `parent`, in its group, started `after_ms` after it.
    pub fn child(&self, pid: Pid, parent: Pid, line: &str, after_ms: u64) {
        let (start, group) = {
            let state = self.0.borrow();
            let p = &state.procs[&parent];
            (p.start_ms + after_ms, p.group)
        };
        self.spawn_at(pid, line, start);
        self.with_proc(pid, |p| {
            p.parent = parent;
            p.group = group;
        });
    }

    /// A running process that started a minute ago.
    pub fn spawn(&self, pid: Pid, line: &str) {
        self.spawn_at(pid, line, T0 - 60_000);
    }

    pub fn with_proc(&self, pid: Pid, f: impl FnOnce(&mut Proc)) {
        f(self
            .0
            .borrow_mut()
            .procs
            .get_mut(&pid)
            .expect("no such fake process"));
    }

    /// A PID file written (by us) 30 s ago.
    pub fn write(&self, path: &str, bytes: &[u8]) {
        let now = self.0.borrow().now;
        self.put(path, FakeFile::regular(bytes, now - 30_000));
    }

    pub fn put(&self, path: &str, file: FakeFile) {
        self.0.borrow_mut().files.insert(path.to_owned(), file);
    }

    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        self.0.borrow().files.get(path).map(|f| f.bytes.clone())
    }

    pub fn signals(&self) -> Vec<(Pid, Signal)> {
        self.0.borrow().signals.clone()
    }

    pub fn removed(&self) -> Vec<String> {
        self.0.borrow().removed.clone()
    }

    pub fn now(&self) -> u64 {
        self.0.borrow().now
    }

    pub fn listen(&self, port: u16, pid: Option<Pid>, uid: u32, state: TcpState, handle: u64) {
        let socket = TcpSocket {
            ipv6: false,
            local_address: "127.0.0.1".into(),
            state,
            uid,
            handle,
        };
        self.0.borrow_mut().sockets.push((port, socket, pid));
    }

    /// Advance the virtual clock, ending processes whose SIGTERM grace ran out.
    fn advance_to(state: &mut State, t: u64) {
        state.now = state.now.max(t);
        for proc in state.procs.values_mut() {
            if proc.exits_at.is_some_and(|at| at <= state.now)
                && proc.state == ProcessState::Running
            {
                proc.state = ProcessState::Zombie;
            }
        }
    }

    fn identity_ok(state: &State, target: ProcessIdentity) -> Result<&Proc, Error> {
        let proc = state.procs.get(&target.pid).ok_or(Error::NotFound)?;
        if proc.start_ms != target.start_token {
            return Err(Error::Changed);
        }
        Ok(proc)
    }
}

impl Host for Fake {
    type Lock = FakeLock;

    fn own_pid(&self) -> Pid {
        OWN_PID
    }

    fn parent_pid(&self) -> Pid {
        self.0.borrow_mut().parent_asks += 1;
        PARENT_PID
    }

    fn own_uid(&self) -> u32 {
        UID
    }

    fn process_state(&self, pid: Pid) -> Result<ProcessState, Error> {
        if let Some(tgid) = self.0.borrow().threads.get(&pid) {
            return Err(Error::Invalid(format!(
                "{pid} is a thread of process {tgid}"
            )));
        }
        Ok(self
            .0
            .borrow()
            .procs
            .get(&pid)
            .map_or(ProcessState::Gone, |p| p.state))
    }

    fn inspect(&self, pid: Pid) -> Result<ProcessInfo, Error> {
        let state = self.0.borrow();
        if let Some(tgid) = state.threads.get(&pid) {
            return Err(Error::Invalid(format!(
                "{pid} is a thread of process {tgid}"
            )));
        }
        let proc = state.procs.get(&pid).ok_or(Error::NotFound)?;
        if state.hidden.contains(&pid) {
            return Err(Error::PermissionDenied(format!("/proc/{pid}: hidepid")));
        }
        Ok(ProcessInfo {
            pid,
            name: proc.argv.first().cloned().unwrap_or_default(),
            argv: proc.argv.clone(),
            start_time_ms: proc.start_ms,
            start_token: proc.start_ms,
            uid: Some(proc.uid),
            state: proc.state,
            parent: proc.parent,
            group: proc.group,
            session: proc.session,
        })
    }

    fn snapshot(&self) -> Result<Vec<ProcessEntry>, Error> {
        let mut state = self.0.borrow_mut();
        state.snapshots += 1;
        let entries = state
            .procs
            .iter()
            .map(|(&pid, p)| ProcessEntry {
                pid,
                parent: p.parent,
                group: p.group,
                start_token: p.start_ms,
                state: p.state,
            })
            .collect();
        if let Some(change) = state.after_snapshot.take() {
            change(&mut state);
        }
        Ok(entries)
    }

    fn send(&self, target: ProcessIdentity, signal: Signal) -> Result<(), Error> {
        let mut state = self.0.borrow_mut();
        // The host's own refusals, as the real one has them.
        if matches!(target.pid, 0 | 1 | OWN_PID | PARENT_PID) {
            return Err(Error::Denied(format!("host refuses PID {}", target.pid)));
        }
        let proc = Self::identity_ok(&state, target)?;
        if proc.state != ProcessState::Running {
            return Err(Error::NotFound);
        }
        if proc.uid != UID || proc.refuses_signals {
            return Err(Error::PermissionDenied("EPERM".into()));
        }
        state.signals.push((target.pid, signal));
        let now = state.now;
        let proc = state.procs.get_mut(&target.pid).unwrap();
        if signal == Signal::Term
            && let Some(spawned) = proc.spawns_on_term.take()
        {
            let mut child = proc.clone();
            child.argv = vec!["worker".into()];
            child.start_ms = now;
            child.parent = target.pid;
            child.spawns_on_term = None;
            child.exits_at = None;
            state.procs.insert(spawned, child);
        }
        let proc = state.procs.get_mut(&target.pid).unwrap();
        match signal {
            Signal::Term if proc.stopped => proc.term_pending = true,
            Signal::Term => {
                if let OnTerm::ExitAfter(ms) = proc.on_term {
                    proc.exits_at = Some(now + ms);
                }
            }
            Signal::Cont => {
                proc.stopped = false;
                if std::mem::take(&mut proc.term_pending)
                    && let OnTerm::ExitAfter(ms) = proc.on_term
                {
                    proc.exits_at = Some(now + ms);
                }
            }
            Signal::Kill => {
                if !proc.unkillable {
                    proc.state = ProcessState::Zombie;
                }
            }
        }
        Ok(())
    }

    fn wait_exit(&self, target: ProcessIdentity, timeout_ms: u64) -> Result<bool, Error> {
        let mut state = self.0.borrow_mut();
        let proc = match Self::identity_ok(&state, target) {
            Ok(proc) => proc,
            Err(Error::NotFound | Error::Changed) => return Ok(true),
            Err(e) => return Err(e),
        };
        if proc.state != ProcessState::Running {
            return Ok(true);
        }
        let deadline = state.now + timeout_ms;
        match proc.exits_at {
            Some(at) if at <= deadline => {
                Self::advance_to(&mut state, at);
                Ok(true)
            }
            _ => {
                Self::advance_to(&mut state, deadline);
                Ok(false)
            }
        }
    }

    fn sockets(&self, port: u16, listening: bool) -> Result<Vec<TcpSocket>, Error> {
        let state = self.0.borrow();
        Ok(state
            .sockets
            .iter()
            .filter(|(p, s, _)| *p == port && (s.state == TcpState::Listen) == listening)
            .map(|(_, s, _)| s.clone())
            .collect())
    }

    fn socket_owner(&self, handle: u64) -> Result<Option<Pid>, Error> {
        let state = self.0.borrow();
        Ok(state
            .sockets
            .iter()
            .find(|(_, s, _)| s.handle == handle)
            .and_then(|(.., pid)| *pid))
    }

    fn file_owner(&self, path: &str) -> Result<FileOwner, Error> {
        let state = self.0.borrow();
        let file = state.files.get(path).ok_or(Error::NotFound)?;
        Ok(FileOwner {
            uid: file.uid,
            mode: file.mode,
            symlink: file.symlink,
        })
    }

    fn try_lock(&self, path: &str, _wait_ms: u32) -> Result<Option<FakeLock>, Error> {
        let mut state = self.0.borrow_mut();
        state.lock_attempts += 1;
        if state.readonly {
            return Err(Error::PermissionDenied(format!("{path}: read-only")));
        }
        if state.foreign_locks.contains(path) || !state.locks.insert(path.to_owned()) {
            return Ok(None);
        }
        Ok(Some(FakeLock {
            state: self.0.clone(),
            path: path.to_owned(),
        }))
    }

    fn file_stat(&self, path: &str) -> Result<FileStat, Error> {
        let state = self.0.borrow();
        let file = state.files.get(path).ok_or(Error::NotFound)?;
        let kind = if file.symlink {
            FileKind::Symlink
        } else if file.dir {
            FileKind::Directory
        } else if file.special {
            FileKind::Special
        } else {
            FileKind::Regular
        };
        Ok(FileStat {
            kind,
            size: file.bytes.len() as u64,
        })
    }

    fn read_file(&self, path: &str, limit: usize) -> Result<FileRead, Error> {
        let state = self.0.borrow();
        let file = state.files.get(path).ok_or(Error::NotFound)?;
        if file.symlink {
            return Err(Error::Untrusted(format!("{path} is a symlink")));
        }
        if file.dir || file.special {
            panic!("the policy opened {path}, which is not a regular file");
        }
        let bytes = file.bytes[..file.bytes.len().min(limit)].to_vec();
        Ok(FileRead {
            bytes,
            modified_ms: file.modified_ms,
        })
    }

    fn write_file_atomic(&self, path: &str, temp: &str, contents: &[u8]) -> Result<(), Error> {
        let mut state = self.0.borrow_mut();
        assert!(
            temp.ends_with(".tmp") && temp != path,
            "a separate temporary file"
        );
        if state.readonly {
            return Err(Error::PermissionDenied(format!("{path}: read-only")));
        }
        state.temp_names.push(temp.to_owned());
        let now = state.now;
        state
            .files
            .insert(path.to_owned(), FakeFile::regular(contents, now));
        Ok(())
    }

    fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), Error> {
        let mut state = self.0.borrow_mut();
        if state.readonly {
            return Err(Error::PermissionDenied(format!("{path}: read-only")));
        }
        let now = state.now;
        if state.files.get(path).is_some_and(|f| f.uid != UID) {
            return Err(Error::PermissionDenied(format!(
                "{path}: permission denied"
            )));
        }
        let file = state
            .files
            .entry(path.to_owned())
            .or_insert_with(|| FakeFile::regular(b"", now));
        assert!(
            !file.symlink && !file.dir && !file.special,
            "wrote through {path}"
        );
        file.bytes = contents.to_vec();
        file.modified_ms = now;
        Ok(())
    }

    fn create_dir_all(&self, dir: &str) -> Result<(), Error> {
        let mut state = self.0.borrow_mut();
        if state.readonly {
            return Err(Error::PermissionDenied(format!("{dir}: read-only")));
        }
        state.created_dirs.push(dir.to_owned());
        Ok(())
    }

    fn random_u64(&self) -> u64 {
        let mut state = self.0.borrow_mut();
        state.randoms += 1;
        state.randoms
    }

    fn list_dir(&self, dir: &str) -> Result<Vec<String>, Error> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let state = self.0.borrow();
        Ok(state
            .files
            .keys()
            .filter_map(|p| p.strip_prefix(&prefix))
            .filter(|rest| !rest.contains('/'))
            .map(str::to_owned)
            .collect())
    }

    fn remove_file(&self, path: &str) -> Result<(), Error> {
        let mut state = self.0.borrow_mut();
        if state.readonly {
            return Err(Error::PermissionDenied(format!("{path}: read-only")));
        }
        match state.files.get(path) {
            None => Err(Error::NotFound),
            Some(f) if f.dir => Err(Error::Invalid(format!("{path} is a directory"))),
            Some(_) => {
                state.files.remove(path);
                state.removed.push(path.to_owned());
                Ok(())
            }
        }
    }

    fn sleep_ms(&self, ms: u64) {
        let mut state = self.0.borrow_mut();
        let t = state.now + ms;
        Self::advance_to(&mut state, t);
    }

    fn now_ms(&self) -> u64 {
        self.0.borrow().now
    }

    fn log(&self, _level: Level, message: &str) {
        self.0.borrow_mut().logs.push(message.to_owned());
    }
}
