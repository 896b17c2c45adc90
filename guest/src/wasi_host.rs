//! [`Host`] on the component's imports: the WIT capability interfaces for
//! processes, signals, ports, ownership and locks, and plain WASI (through
//! `std::fs`) for file contents. Mechanism only: no rule lives here.

use std::fs::{self, File};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU8, Ordering};
#[cfg(not(target_os = "wasi"))]
use std::time::{SystemTime, UNIX_EPOCH};

use crate::host::{FileKind, FileRead, FileStat, Host};
use crate::wit::bengal::pid_manager::files::{self, FileOwner, Lock};
use crate::wit::bengal::pid_manager::log::{self, Level};
use crate::wit::bengal::pid_manager::ports::{self, TcpSocket};
use crate::wit::bengal::pid_manager::process_table::{
    self, ProcessEntry, ProcessInfo, ProcessState,
};
use crate::wit::bengal::pid_manager::signals::{self, Signal};
use crate::wit::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};

/// The real capabilities of a running component.
pub struct WasiHost;

/// The least level the host wants messages of (`set-log-level`): a
/// [`Level`] as a number, [`NO_MESSAGES`] for none. Every message until the
/// host says otherwise.
static LEAST_LEVEL: AtomicU8 = AtomicU8::new(Level::Debug as u8);
/// Above every level: the host wants no message.
const NO_MESSAGES: u8 = Level::Warn as u8 + 1;

/// `set-log-level`: send only messages of at least `least` from now on
/// (none: no message).
pub fn set_log_level(least: Option<Level>) {
    LEAST_LEVEL.store(least.map_or(NO_MESSAGES, |l| l as u8), Ordering::Relaxed);
}

impl Host for WasiHost {
    type Lock = Lock;

    fn own_pid(&self) -> Pid {
        // Fixed for the process's life: asked once per instance (a host call
        // costs a Python or JavaScript host far more than the answer).
        static OWN_PID: std::sync::OnceLock<Pid> = std::sync::OnceLock::new();
        *OWN_PID.get_or_init(process_table::own_pid)
    }

    fn parent_pid(&self) -> Pid {
        process_table::parent_pid()
    }

    fn own_uid(&self) -> u32 {
        // Fixed for the process's life (pidman never changes its user).
        static OWN_UID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        *OWN_UID.get_or_init(process_table::own_uid)
    }

    fn process_state(&self, pid: Pid) -> Result<ProcessState, Error> {
        process_table::state(pid)
    }

    fn inspect(&self, pid: Pid) -> Result<ProcessInfo, Error> {
        process_table::inspect(pid)
    }

    fn snapshot(&self) -> Result<Vec<ProcessEntry>, Error> {
        process_table::snapshot()
    }

    fn send(&self, target: ProcessIdentity, signal: Signal) -> Result<(), Error> {
        signals::send(target, signal)
    }

    fn wait_exit(&self, target: ProcessIdentity, timeout_ms: u64) -> Result<bool, Error> {
        signals::wait_exit(target, timeout_ms)
    }

    fn sockets(&self, port: u16, listening: bool) -> Result<Vec<TcpSocket>, Error> {
        ports::sockets(port, listening)
    }

    fn socket_owner(&self, handle: u64) -> Result<Option<Pid>, Error> {
        ports::owner(handle)
    }

    fn file_owner(&self, path: &str) -> Result<FileOwner, Error> {
        files::owner(path)
    }

    fn try_lock(&self, path: &str, wait_ms: u32) -> Result<Option<Lock>, Error> {
        files::try_lock(path, wait_ms)
    }

    #[cfg(target_os = "wasi")]
    fn file_stat(&self, path: &str) -> Result<FileStat, Error> {
        let stat = crate::wasi_files::stat(path).map_err(|e| fs_error(path, e))?;
        Ok(FileStat {
            kind: kind_of(stat.type_),
            size: stat.size,
        })
    }

    #[cfg(target_os = "wasi")]
    fn read_file(&self, path: &str, limit: usize) -> Result<FileRead, Error> {
        use crate::wit_wasi::wasi::filesystem::types::DescriptorType;
        let (stat, bytes) =
            crate::wasi_files::read(path, limit as u64).map_err(|e| fs_error(path, e))?;
        if stat.type_ != DescriptorType::RegularFile {
            // The policy looked first (`file_stat`); this is what was opened.
            return Err(Error::Invalid(format!(
                "{path} is not a regular file, so not a PID file"
            )));
        }
        let modified_ms = stat.data_modification_timestamp.map_or(0, |t| {
            t.seconds * 1_000 + u64::from(t.nanoseconds) / 1_000_000
        });
        Ok(FileRead { bytes, modified_ms })
    }

    #[cfg(not(target_os = "wasi"))]
    fn file_stat(&self, path: &str) -> Result<FileStat, Error> {
        let meta = fs::symlink_metadata(path).map_err(|e| io_error(path, e))?;
        Ok(FileStat {
            kind: FileKind::of(&meta.file_type()),
            size: meta.len(),
        })
    }

    #[cfg(not(target_os = "wasi"))]
    fn read_file(&self, path: &str, limit: usize) -> Result<FileRead, Error> {
        let file = open_no_follow(path).map_err(|e| io_error(path, e))?;
        let meta = file.metadata().map_err(|e| io_error(path, e))?;
        if !meta.is_file() {
            // The policy looked first (`file_stat`); this is what was opened.
            return Err(Error::Invalid(format!(
                "{path} is not a regular file, so not a PID file"
            )));
        }
        // One read into a buffer of the limit's size (a PID file fits; a
        // longer file is cut at the limit), then reads only until EOF.
        let mut bytes = vec![0u8; limit];
        let mut len = 0;
        while len < limit {
            match read_at(&file, &mut bytes[len..], len) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(path, e)),
            }
            if len as u64 >= meta.len() {
                break;
            }
        }
        bytes.truncate(len);
        let modified_ms = meta.modified().map(millis_since_epoch).unwrap_or(0);
        Ok(FileRead { bytes, modified_ms })
    }

    fn write_file_atomic(&self, path: &str, temp: &str, contents: &[u8]) -> Result<(), Error> {
        let dir = match path.rsplit_once('/') {
            Some(("", _)) => "/",
            Some((dir, _)) => dir,
            None => return Err(Error::Invalid(format!("{path} has no parent directory"))),
        };
        let written = (|| {
            // O_CREAT|O_EXCL: never opens an existing file (another writer's,
            // whose name is unique to it) or a symlink.
            let mut file = match create_new(temp) {
                // The directory is made only when missing (one call less in
                // the usual case).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    create_dirs(dir)?;
                    create_new(temp)?
                }
                other => other?,
            };
            file.write_all(contents).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot write {temp} ({e}; a full disk?)"))
            })?;
            file.sync_all()?;
            // Closed before the rename: Windows renames no open file.
            drop(file);
            self.log(Level::Debug, &format!("temporary file written: {temp}"));
            fs::rename(temp, path)?;
            // The rename is durable once the directory is synced. Windows
            // syncs no directory (it refuses the handle: access denied, or
            // unsupported); NTFS journals the rename itself.
            match File::open(dir).and_then(|d| d.sync_all()) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported
                    ) =>
                {
                    Ok(())
                }
                other => other,
            }
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(temp);
            return Err(io_error(path, e));
        }
        Ok(())
    }

    fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), Error> {
        open_for_rewrite(path)
            .and_then(|mut file| file.write_all(contents))
            .map_err(|e| io_error(path, e))
    }

    fn create_dir_all(&self, dir: &str) -> Result<(), Error> {
        create_dirs(dir).map_err(|e| io_error(dir, e))
    }

    fn random_u64(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        // WASI's random source seeds std's hasher keys; each `RandomState`
        // takes fresh ones.
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    }

    fn list_dir(&self, dir: &str) -> Result<Vec<String>, Error> {
        fs::read_dir(dir)
            .and_then(|entries| {
                entries
                    .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .map_err(|e| io_error(dir, e))
    }

    fn remove_file(&self, path: &str) -> Result<(), Error> {
        fs::remove_file(path).map_err(|e| match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                Error::Invalid(format!("{path} is a directory, not a PID file"))
            }
            _ => io_error(path, e),
        })
    }

    fn sleep_ms(&self, ms: u64) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }

    fn now_ms(&self) -> u64 {
        signals::clock_ms()
    }

    fn log(&self, level: Level, message: &str) {
        if level as u8 >= LEAST_LEVEL.load(Ordering::Relaxed) {
            log::emit(level, message);
        }
    }
}

#[cfg(not(target_os = "wasi"))]
fn read_at(file: &File, buf: &mut [u8], offset: usize) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset as u64)
}

/// `mkdir -p` on a string path: what `fs::create_dir_all` does, without
/// linking `Path`'s component machinery into the plugin.
fn create_dirs(dir: &str) -> io::Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match dir.rsplit_once('/') {
                Some((parent, _)) if !parent.is_empty() => create_dirs(parent)?,
                _ => return Err(e),
            }
            match fs::create_dir(dir) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                other => other,
            }
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// `open(2)` through wasi-libc directly, never following a symlink at
/// `path` (`O_NOFOLLOW`: ELOOP instead). std's `OpenOptions` asks for
/// rights that some hosts (jco's Node shim) refuse.
#[cfg(target_os = "wasi")]
fn open_raw(path: &str, flags: libc::c_int) -> io::Result<File> {
    use std::os::fd::FromRawFd;
    let c_path = std::ffi::CString::new(path)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: a valid NUL-terminated path for the call's duration; a
    // non-negative result is a fresh descriptor we own.
    let fd = unsafe { libc::open(c_path.as_ptr(), flags | libc::O_NOFOLLOW, 0o644) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// A file that must not exist yet (`O_EXCL`: never another writer's), for
/// writing.
#[cfg(target_os = "wasi")]
fn create_new(path: &str) -> io::Result<File> {
    open_raw(path, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)
}

/// For writing from its start: created if missing, truncated.
#[cfg(target_os = "wasi")]
fn open_for_rewrite(path: &str) -> io::Result<File> {
    open_raw(path, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)
}

// Natively the guest only runs unit tests, which use the fake host.
#[cfg(not(target_os = "wasi"))]
fn open_no_follow(path: &str) -> io::Result<File> {
    File::open(path)
}

#[cfg(not(target_os = "wasi"))]
fn create_new(path: &str) -> io::Result<File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(not(target_os = "wasi"))]
fn open_for_rewrite(path: &str) -> io::Result<File> {
    fs::File::create(path)
}

#[cfg(not(target_os = "wasi"))]
fn millis_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The kind of a WASI descriptor type.
#[cfg(target_os = "wasi")]
fn kind_of(kind: crate::wit_wasi::wasi::filesystem::types::DescriptorType) -> FileKind {
    use crate::wit_wasi::wasi::filesystem::types::DescriptorType;
    match kind {
        DescriptorType::RegularFile => FileKind::Regular,
        DescriptorType::Directory => FileKind::Directory,
        DescriptorType::SymbolicLink => FileKind::Symlink,
        _ => FileKind::Special,
    }
}

/// Map a `wasi:filesystem` error to the WIT error, naming the path (as
/// [`io_error`] does for the same errors through `std`).
#[cfg(target_os = "wasi")]
fn fs_error(path: &str, e: crate::wit_wasi::wasi::filesystem::types::ErrorCode) -> Error {
    use crate::wit_wasi::wasi::filesystem::types::ErrorCode;
    match e {
        ErrorCode::NoEntry => Error::NotFound,
        ErrorCode::Loop => {
            Error::Untrusted(format!("{path} is a symlink; pidman never follows one"))
        }
        ErrorCode::Access | ErrorCode::NotPermitted => {
            Error::PermissionDenied(format!("{path}: {}", e.message()))
        }
        _ => Error::Io(format!("{path}: {}", e.message())),
    }
}

/// Map a WASI I/O error to the WIT error, naming the path.
fn io_error(path: &str, e: io::Error) -> Error {
    #[cfg(target_os = "wasi")]
    if e.raw_os_error() == Some(libc::ELOOP) {
        return Error::Untrusted(format!("{path} is a symlink; pidman never follows one"));
    }
    match e.kind() {
        io::ErrorKind::NotFound => Error::NotFound,
        io::ErrorKind::PermissionDenied => Error::PermissionDenied(format!("{path}: {e}")),
        _ => Error::Io(format!("{path}: {e}")),
    }
}
