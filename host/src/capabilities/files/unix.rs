//! Files on the Unix systems (Linux and macOS): ownership and mode from
//! `lstat`, and exclusive advisory locks (`flock` on a lock file opened
//! with `O_NOFOLLOW | O_CLOEXEC`, so that no child process inherits it).

use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::bindings::bengal::pid_manager::files::FileOwner;
use crate::bindings::bengal::pid_manager::types::Error;

/// A held lock: the open lock file with `flock(LOCK_EX)` on it. Closing it
/// (dropping the resource) releases the lock; so does the exit of the
/// process (the descriptor is close-on-exec: no child keeps it).
pub struct LockFile {
    _lock: Flock<File>,
}

/// `lstat` of `path`.
pub fn owner(path: &Path) -> Result<FileOwner, Error> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| crate::capabilities::io_error(&path.display().to_string(), &e))?;
    Ok(FileOwner {
        uid: meta.uid(),
        mode: meta.mode() & 0o7777,
        symlink: meta.file_type().is_symlink(),
    })
}

/// Take the lock on `path`, polling for at most `wait_ms`. A lock file
/// this user may read but not write (one `sudo pidman` left) is locked
/// through a read-only descriptor: `flock` needs no write access, so the
/// user's checks and changes still work (a claim, which records itself in
/// the file, is refused by the plugin, naming the file and the fix).
pub fn try_lock(path: &Path, wait_ms: u32) -> Result<Option<LockFile>, Error> {
    let shown = path.display().to_string();
    let open = |write: bool| {
        OpenOptions::new()
            .read(true)
            .write(write)
            .create(write)
            .truncate(false)
            .mode(0o644)
            // O_NONBLOCK: a FIFO or device planted at the path never blocks
            // the open; anything but a regular file is refused below.
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
    };
    let file = open(true)
        .or_else(|e| match e.raw_os_error() {
            Some(libc::EACCES | libc::EPERM | libc::EROFS) if path.exists() => open(false),
            _ => Err(e),
        })
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => {
                Error::Untrusted(format!("{shown} is a symlink; pidman never follows one"))
            }
            _ => crate::capabilities::io_error(&shown, &e),
        })?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(Error::Invalid(format!(
            "{shown} is not a regular file, so not a lock file"
        )));
    }
    let deadline = Instant::now() + Duration::from_millis(u64::from(wait_ms));
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(Some(LockFile { _lock: lock })),
            Err((back, Errno::EWOULDBLOCK | Errno::EINTR)) => {
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                file = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((_, e)) => {
                return Err(crate::capabilities::errno_error(
                    &format!("lock {shown}"),
                    e,
                ));
            }
        }
    }
}

/// `opts` made safe for a path someone else may have planted: no symlink
/// followed, no wait on a FIFO or device, not inherited by children.
pub fn guarded(opts: &mut OpenOptions) -> &mut OpenOptions {
    opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
}

/// `opts` that never wait on a FIFO or device (the caller checks for a
/// regular file) and are not inherited by children; symlinks followed.
pub fn nonblocking(opts: &mut OpenOptions) -> &mut OpenOptions {
    opts.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
}

/// `opts` for a file only this user may read or write (mode 0600).
pub fn private(opts: &mut OpenOptions) -> &mut OpenOptions {
    opts.mode(0o600)
}

/// Make `dir`, readable only by this user (mode 0700).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().mode(0o700).create(dir)
}

/// The permission bits of `meta`.
pub fn mode(meta: &Metadata) -> u32 {
    meta.mode() & 0o7777
}

/// Why the file or directory `meta` describes may not hold what only this
/// user may write (native code), if so: another owner, or others' write
/// permission.
pub fn not_private(_path: &Path, meta: &Metadata) -> Option<String> {
    let euid = crate::capabilities::process_table::own_uid();
    if meta.uid() != euid {
        return Some(format!("owned by uid {}, not {euid}", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!("writable by others (mode {:o})", mode(meta)));
    }
    None
}
