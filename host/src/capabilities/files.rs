//! `files`: what plain WASI cannot say, for paths inside the one directory
//! the plugin was granted (the gate's grant (`gate.rs`), checked before these
//! run): ownership (`lstat`) and exclusive advisory locks (`flock` on a
//! lock file opened with `O_NOFOLLOW | O_CLOEXEC`, so that no child
//! process inherits it).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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
        .map_err(|e| super::io_error(&path.display().to_string(), &e))?;
    Ok(FileOwner {
        uid: meta.uid(),
        mode: meta.mode() & 0o7777,
        symlink: meta.file_type().is_symlink(),
    })
}

/// Take the lock on `path`, polling for at most `wait_ms`.
pub fn try_lock(path: &Path, wait_ms: u32) -> Result<Option<LockFile>, Error> {
    let shown = path.display().to_string();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        // O_NONBLOCK: a FIFO or device planted at the path never blocks the
        // open; anything but a regular file is refused below.
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => {
                Error::Untrusted(format!("{shown} is a symlink; pidman never follows one"))
            }
            _ => super::io_error(&shown, &e),
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
            Err((_, e)) => return Err(super::errno_error(&format!("lock {shown}"), e)),
        }
    }
}
