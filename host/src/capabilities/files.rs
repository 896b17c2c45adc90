//! `files`: what plain WASI cannot say, for paths inside the one directory
//! the plugin was granted ([`Grant`]): ownership (`lstat`) and exclusive
//! advisory locks (`flock` on a lock file opened with `O_NOFOLLOW`).

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::plugin::bindings::bengal::pid_manager::files::FileOwner;
use crate::plugin::bindings::bengal::pid_manager::types::Error;

/// The directory the plugin may use, and nothing outside it.
#[derive(Debug, Clone)]
pub struct Grant {
    dir: PathBuf,
}

impl Grant {
    /// Grant `dir` (absolute and canonical).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// `path` if it names an entry of the granted directory (or below it),
    /// without `..` steps; else the `denied` error.
    pub fn check<'p>(&self, path: &'p str) -> Result<&'p Path, Error> {
        let p = Path::new(path);
        let plain = p
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if p.is_absolute() && plain && p.starts_with(&self.dir) && p != self.dir {
            Ok(p)
        } else {
            Err(Error::Denied(format!(
                "{path} is outside the directory granted to the plugin ({})",
                self.dir.display()
            )))
        }
    }
}

/// A held lock: the open lock file with `flock(LOCK_EX)` on it. Closing it
/// (dropping the resource) releases the lock; so does the exit of every
/// process that shares the descriptor.
pub struct LockFile {
    lock: Flock<File>,
}

impl LockFile {
    /// The lock file's descriptor, for handing the lock to a child process.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.lock.as_fd()
    }
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
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => {
                Error::Untrusted(format!("{shown} is a symlink; pidman never follows one"))
            }
            _ => super::io_error(&shown, &e),
        })?;
    let deadline = Instant::now() + Duration::from_millis(u64::from(wait_ms));
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(Some(LockFile { lock })),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grant_admits_only_its_directory() {
        let grant = Grant::new(PathBuf::from("/srv/site"));
        assert!(grant.check("/srv/site/.bengal.pid").is_ok());
        assert!(grant.check("/srv/site/run/x.pid").is_ok());
        for outside in [
            "/srv/site",
            "/srv/other/.bengal.pid",
            "/srv/site/../x",
            "relative",
            "/srv/sitex/a",
        ] {
            assert!(
                matches!(grant.check(outside), Err(Error::Denied(_))),
                "{outside}"
            );
        }
    }
}
