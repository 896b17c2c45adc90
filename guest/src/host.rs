//! The capabilities the policy needs, as one small trait.
//!
//! The policy modules see only this trait: [`crate::wasi_host::WasiHost`]
//! implements it with the WIT imports and WASI, and the unit tests with an
//! in-memory fake. The types are the WIT's own, so nothing is converted
//! twice.

use crate::wit::bengal::pid_manager::files::FileOwner;
use crate::wit::bengal::pid_manager::log::Level;
use crate::wit::bengal::pid_manager::ports::TcpSocket;
use crate::wit::bengal::pid_manager::process_table::{ProcessEntry, ProcessInfo, ProcessState};
use crate::wit::bengal::pid_manager::signals::Signal;
use crate::wit::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};

/// A file's first bytes and its modification time.
#[derive(Debug, Clone)]
pub struct FileRead {
    /// At most the `limit` bytes asked for.
    pub bytes: Vec<u8>,
    /// Modification time, milliseconds since the UNIX epoch.
    pub modified_ms: u64,
}

/// What kind of entry a path names (never following a symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file: the only kind that can be a PID file.
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A FIFO, socket or device node: opening one may block or have side
    /// effects, so pidman never does.
    Special,
}

impl FileKind {
    /// The kind of a file type as `std::fs` reports it.
    pub fn of(file_type: &std::fs::FileType) -> Self {
        if file_type.is_file() {
            FileKind::Regular
        } else if file_type.is_dir() {
            FileKind::Directory
        } else if file_type.is_symlink() {
            FileKind::Symlink
        } else {
            FileKind::Special
        }
    }
}

/// What `lstat` says of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// The kind of entry.
    pub kind: FileKind,
    /// Its size in bytes.
    pub size: u64,
}

/// What the policy may ask of the world. Each method mirrors one WIT import
/// (or one plain-WASI file operation) and decides nothing.
pub trait Host {
    /// An exclusive advisory lock; dropping it releases it.
    type Lock;

    /// The caller's own PID.
    fn own_pid(&self) -> Pid;
    /// The caller's parent PID.
    fn parent_pid(&self) -> Pid;
    /// The caller's effective user id.
    fn own_uid(&self) -> u32;
    /// Running, zombie or gone.
    fn process_state(&self, pid: Pid) -> Result<ProcessState, Error>;
    /// Everything the process table knows about `pid`.
    fn inspect(&self, pid: Pid) -> Result<ProcessInfo, Error>;
    /// Every process, in one pass: PID, parent, group, start token, state.
    fn snapshot(&self) -> Result<Vec<ProcessEntry>, Error>;
    /// Signal exactly the identified process.
    fn send(&self, target: ProcessIdentity, signal: Signal) -> Result<(), Error>;
    /// Wait for the identified process to end; true when it did.
    fn wait_exit(&self, target: ProcessIdentity, timeout_ms: u64) -> Result<bool, Error>;
    /// The TCP sockets on a local port: the listeners, or all the others.
    fn sockets(&self, port: u16, listening: bool) -> Result<Vec<TcpSocket>, Error>;
    /// The process holding a socket, when visible.
    fn socket_owner(&self, handle: u64) -> Result<Option<Pid>, Error>;
    /// Owner and mode of a path, not following symlinks.
    fn file_owner(&self, path: &str) -> Result<FileOwner, Error>;
    /// An exclusive lock on `path`, waiting at most `wait_ms`.
    fn try_lock(&self, path: &str, wait_ms: u32) -> Result<Option<Self::Lock>, Error>;
    /// The kind and size of `path` itself (`lstat`), without opening it.
    fn file_stat(&self, path: &str) -> Result<FileStat, Error>;
    /// Read at most `limit` bytes of a regular file, never through a symlink.
    fn read_file(&self, path: &str, limit: usize) -> Result<FileRead, Error>;
    /// Replace `path` atomically: write `temp` (created afresh, never
    /// through a symlink), fsync, rename it over `path`, fsync the
    /// directory; creates the directory when missing.
    fn write_file_atomic(&self, path: &str, temp: &str, contents: &[u8]) -> Result<(), Error>;
    /// Replace the contents of `path` in place (created if missing, never
    /// through a symlink): for the lock file's record of its claimant.
    fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), Error>;
    /// Create `dir` and its missing parents.
    fn create_dir_all(&self, dir: &str) -> Result<(), Error>;
    /// A random number, for names no other writer can pick.
    fn random_u64(&self) -> u64;
    /// The names in directory `dir`.
    fn list_dir(&self, dir: &str) -> Result<Vec<String>, Error>;
    /// Remove `path` itself (a symlink is removed, not its target).
    fn remove_file(&self, path: &str) -> Result<(), Error>;
    /// Pause the caller.
    fn sleep_ms(&self, ms: u64);
    /// The clock `wait_exit` runs on, in milliseconds (monotonic, from an
    /// arbitrary start), for deadlines that span several waits.
    fn now_ms(&self) -> u64;
    /// Explain a decision (shown by the host on `-v`).
    fn log(&self, level: Level, message: &str);
}
