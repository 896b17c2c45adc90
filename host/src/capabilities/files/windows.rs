//! Files on Windows.
//!
//! Accounts are SIDs there, not uids. pidman's "uid" for an account is its
//! SID's last sub-authority (the relative id, RID), and the host's own is
//! `process_table::own_uid`. A file owned by the host's own account
//! reports that RID; one owned by SYSTEM or the Administrators group (the
//! owner an elevated process gives its files) reports 0, root's place, so
//! that it is trusted as root's files are on Unix; any other owner reports
//! its RID, or `u32::MAX` when that RID happens to equal ours.
//!
//! Windows keeps ACLs, not permission bits: a file is reported with mode
//! 0644 (0444 when read-only). The ACL's other entries are not read, so a
//! PID file that others may write through an ACL is not detected there.
//!
//! The lock is `LockFileEx`, exclusive, on one byte at 2^62: beyond the
//! data, so the claimant record in the lock file stays readable and
//! writable through other handles while it is held. (std's `File::lock`
//! locks the whole range, which would refuse those reads and writes.)
//! Files are opened without following a reparse point (a symlink is opened
//! as itself and refused) and are not inherited by children (std's
//! default).

use std::fs::{File, Metadata, OpenOptions};
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::AsRawHandle;
use std::path::Path;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{ERROR_LOCK_VIOLATION, HLOCAL, LocalFree};
use windows_sys::Win32::Security::Authorization::{GetSecurityInfo, SE_FILE_OBJECT};
use windows_sys::Win32::Security::{
    EqualSid, IsWellKnownSid, OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID,
    WinBuiltinAdministratorsSid, WinLocalSystemSid,
};
use windows_sys::Win32::Storage::FileSystem::{
    FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT, LOCKFILE_EXCLUSIVE_LOCK,
    LOCKFILE_FAIL_IMMEDIATELY, LockFileEx, READ_CONTROL, UnlockFileEx,
};
use windows_sys::Win32::System::IO::OVERLAPPED;

use crate::bindings::bengal::pid_manager::files::FileOwner;
use crate::bindings::bengal::pid_manager::types::Error;
use crate::capabilities::io_error;
use crate::capabilities::process_table::windows::{rid, with_own_sid};

/// Where the lock byte is: far beyond any PID file's data.
const LOCK_OFFSET: u64 = 1 << 62;

/// A held lock: the open lock file with its lock byte locked. Dropping it
/// unlocks the byte (`UnlockFileEx`) before the handle closes: Windows
/// releases a lock left to the close only "when the system gets to it",
/// so a claim released and taken again at once could find it busy. The
/// process's exit releases it too.
pub struct LockFile {
    file: File,
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let mut at = lock_byte();
        // SAFETY: a handle we own, whose byte we locked; a valid OVERLAPPED.
        unsafe { UnlockFileEx(self.file.as_raw_handle(), 0, 1, 0, &mut at) };
    }
}

/// The OVERLAPPED naming the lock byte, at `LOCK_OFFSET`.
fn lock_byte() -> OVERLAPPED {
    let mut at = OVERLAPPED::default();
    at.Anonymous.Anonymous.Offset = LOCK_OFFSET as u32;
    at.Anonymous.Anonymous.OffsetHigh = (LOCK_OFFSET >> 32) as u32;
    at
}

/// The "uid" of the account `sid`, as the module's doc says.
///
/// # Safety
/// `sid` must point to a valid SID.
unsafe fn account_uid(sid: PSID) -> u32 {
    // SAFETY: the caller's valid SID.
    unsafe {
        if IsWellKnownSid(sid, WinLocalSystemSid) != 0
            || IsWellKnownSid(sid, WinBuiltinAdministratorsSid) != 0
        {
            return 0;
        }
        let own = with_own_sid(|own| EqualSid(own, sid) != 0);
        let uid = rid(sid);
        match own {
            Some(true) => uid,
            _ if uid == crate::capabilities::process_table::own_uid() => u32::MAX,
            _ => uid,
        }
    }
}

/// The "uid" of the owner of the open file or directory `file`.
fn owner_uid(file: &File, shown: &str) -> Result<u32, Error> {
    let mut owner: PSID = std::ptr::null_mut();
    let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: a handle we own; `owner` points into `descriptor`, which we
    // free after reading it.
    let rc = unsafe {
        GetSecurityInfo(
            file.as_raw_handle(),
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION,
            &mut owner,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut descriptor,
        )
    };
    if rc != 0 {
        let e = std::io::Error::from_raw_os_error(rc as i32);
        return Err(io_error(&format!("read the owner of {shown}"), &e));
    }
    // SAFETY: a valid owner SID inside the descriptor, freed once.
    unsafe {
        let uid = account_uid(owner);
        LocalFree(descriptor as HLOCAL);
        Ok(uid)
    }
}

/// Open `path` as itself (never through a reparse point), to read its
/// owner: a file or a directory.
fn open_for_owner(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .access_mode(READ_CONTROL)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT | FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)
}

/// The owner and mode of `path`, itself (a symlink is not followed).
pub fn owner(path: &Path) -> Result<FileOwner, Error> {
    let shown = path.display().to_string();
    let meta = std::fs::symlink_metadata(path).map_err(|e| io_error(&shown, &e))?;
    let file = open_for_owner(path).map_err(|e| io_error(&shown, &e))?;
    Ok(FileOwner {
        uid: owner_uid(&file, &shown)?,
        mode: mode(&meta),
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
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)
        .map_err(|e| io_error(&shown, &e))?;
    let meta = file.metadata().map_err(|e| io_error(&shown, &e))?;
    if meta.file_type().is_symlink() {
        return Err(Error::Untrusted(format!(
            "{shown} is a symlink; pidman never follows one"
        )));
    }
    if !meta.is_file() {
        return Err(Error::Invalid(format!(
            "{shown} is not a regular file, so not a lock file"
        )));
    }
    let deadline = Instant::now() + Duration::from_millis(u64::from(wait_ms));
    loop {
        let mut at = lock_byte();
        let flags = LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY;
        // SAFETY: a handle we own; a valid OVERLAPPED naming the byte.
        if unsafe { LockFileEx(file.as_raw_handle(), flags, 0, 1, 0, &mut at) } != 0 {
            return Ok(Some(LockFile { file }));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(ERROR_LOCK_VIOLATION as i32) {
            return Err(io_error(&format!("lock {shown}"), &e));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `opts` made safe for a path someone else may have planted: a reparse
/// point (symlink) is opened as itself, not followed.
pub fn guarded(opts: &mut OpenOptions) -> &mut OpenOptions {
    opts.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
}

/// `opts` as they are: opening a path never waits on Windows (named pipes
/// live under `\\.\pipe\`, not among files), and std's handles are not
/// inherited.
pub fn nonblocking(opts: &mut OpenOptions) -> &mut OpenOptions {
    opts
}

/// `opts` for a file only this user should write: Windows gives a new file
/// the ACL its directory passes on (in the user's profile: the user, SYSTEM
/// and the Administrators).
pub fn private(opts: &mut OpenOptions) -> &mut OpenOptions {
    opts
}

/// Make `dir` (it inherits its parent's ACL; see [`private`]).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir(dir)
}

/// The permission bits pidman reports for `meta`.
pub fn mode(meta: &Metadata) -> u32 {
    if meta.permissions().readonly() {
        0o444
    } else {
        0o644
    }
}

/// Why `path` may not hold what only this user may write (native code), if
/// so: an owner other than this account. (ACLs are not read.)
pub fn not_private(path: &Path, _meta: &Metadata) -> Option<String> {
    let shown = path.display().to_string();
    let own = crate::capabilities::process_table::own_uid();
    let file = match open_for_owner(path) {
        Ok(file) => file,
        Err(e) => return Some(format!("unreadable for its owner ({e})")),
    };
    match owner_uid(&file, &shown) {
        Ok(uid) if uid == own => None,
        Ok(uid) => Some(format!("owned by account {uid}, not {own}")),
        Err(_) => Some("of an owner Windows would not tell".into()),
    }
}
