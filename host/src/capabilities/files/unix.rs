//! Files on the Unix systems (Linux and macOS): ownership and mode from
//! `lstat`, and exclusive advisory locks (`flock` on a lock file opened
//! with `O_NOFOLLOW | O_CLOEXEC`, so that no child process inherits it).
//!
//! The plugin's paths are resolved beneath the granted directory: each
//! directory on the way is opened from the one before, never following a
//! symlink ([`open_parent`]), and the file itself relative to the last. The
//! grant's path is canonical, so a symlink met on the way was planted
//! inside the grant (or swapped in since), and leads nowhere.

use std::ffi::{CStr, CString};
use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
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

/// The directory that holds the absolute `path`, opened one component at
/// a time from `/` with `O_NOFOLLOW | O_DIRECTORY` (a symlink or anything
/// but a directory on the way is refused, `untrusted`), and the last
/// component's name.
fn open_parent(path: &Path) -> Result<(OwnedFd, CString), Error> {
    let shown = path.display().to_string();
    let name = path
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{shown} names no file")))?;
    let name = CString::new(name.as_bytes())
        .map_err(|_| Error::Invalid(format!("{shown} holds a NUL byte")))?;
    let parent = path
        .parent()
        .filter(|p| p.is_absolute())
        .ok_or_else(|| Error::Invalid(format!("{shown} is not an absolute path")))?;
    // Linux: O_PATH opens a directory for lookups alone (no read
    // permission needed, as a path walk needs none).
    #[cfg(target_os = "linux")]
    const WALK: libc::c_int = libc::O_PATH;
    #[cfg(not(target_os = "linux"))]
    const WALK: libc::c_int = libc::O_RDONLY;
    let flags = WALK | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let mut dir = open_at(libc::AT_FDCWD, c"/", flags, &shown)?;
    for component in parent.components() {
        let std::path::Component::Normal(step) = component else {
            continue; // the root, already open (the grant allows no `..`)
        };
        let step = CString::new(step.as_bytes())
            .map_err(|_| Error::Invalid(format!("{shown} holds a NUL byte")))?;
        dir = open_at(dir.as_raw_fd(), &step, flags, &shown).map_err(|e| match e {
            Error::Untrusted(_) => Error::Untrusted(format!(
                "{} on the way to {shown} is a symlink or not a directory; pidman never \
                 follows one",
                step.to_string_lossy()
            )),
            other => other,
        })?;
    }
    Ok((dir, name))
}

/// `openat(dir, name, flags)`; ELOOP and ENOTDIR (a symlink where
/// `O_NOFOLLOW` or `O_DIRECTORY` forbids one) are `untrusted`.
fn open_at(dir: RawFd, name: &CStr, flags: libc::c_int, shown: &str) -> Result<OwnedFd, Error> {
    open_at_raw(dir, name, flags).map_err(|e| refusal(shown, &e))
}

/// `openat(dir, name, flags)` (mode 0644 for a file it creates).
fn open_at_raw(dir: RawFd, name: &CStr, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    // SAFETY: a valid C string and descriptor; a non-negative result is a
    // descriptor we own.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags, 0o644 as libc::c_uint) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A failed open as the plugin sees it.
fn refusal(shown: &str, e: &std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ELOOP | libc::ENOTDIR) => {
            Error::Untrusted(format!("{shown} is a symlink; pidman never follows one"))
        }
        _ => crate::capabilities::io_error(shown, e),
    }
}

/// `lstat` of `path`, resolved beneath its directories.
pub fn owner(path: &Path) -> Result<FileOwner, Error> {
    let shown = path.display().to_string();
    let (dir, name) = open_parent(path)?;
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: a valid descriptor and C string; `stat` is filled on success.
    let done = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            stat.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if done != 0 {
        return Err(crate::capabilities::io_error(
            &shown,
            &std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: filled by the successful call above.
    let stat = unsafe { stat.assume_init() };
    // `mode_t` is a u32 on Linux and a u16 on macOS.
    #[allow(clippy::useless_conversion)]
    let (mode, kind) = (
        u32::from(stat.st_mode),
        u32::from(stat.st_mode & libc::S_IFMT),
    );
    #[allow(clippy::useless_conversion)]
    let symlink = kind == u32::from(libc::S_IFLNK);
    Ok(FileOwner {
        uid: stat.st_uid,
        mode: mode & 0o7777,
        symlink,
    })
}

/// Take the lock on `path`, polling for at most `wait_ms`. A lock file
/// this user may read but not write (one `sudo pidman` left) is locked
/// through a read-only descriptor: `flock` needs no write access, so the
/// user's checks and changes still work (a claim, which records itself in
/// the file, is refused by the plugin, naming the file and the fix).
pub fn try_lock(path: &Path, wait_ms: u32) -> Result<Option<LockFile>, Error> {
    let shown = path.display().to_string();
    let (dir, name) = open_parent(path)?;
    // O_NONBLOCK: a FIFO or device planted at the path never blocks the
    // open; anything but a regular file is refused below.
    let base = libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
    let open = |write: bool| {
        let flags = if write {
            base | libc::O_RDWR | libc::O_CREAT
        } else {
            base | libc::O_RDONLY
        };
        open_at_raw(dir.as_raw_fd(), &name, flags)
    };
    let file = open(true)
        .or_else(|e| match e.raw_os_error() {
            Some(libc::EACCES | libc::EPERM | libc::EROFS) if owner(path).is_ok() => open(false),
            _ => Err(e),
        })
        .map(File::from)
        .map_err(|e| refusal(&shown, &e))?;
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
