//! The precompiled-component cache. A cached entry is native code that the
//! host maps and runs, so it is trusted only as far as the place it comes
//! from: it is loaded only from a directory owned by the running user and
//! writable by nobody else, only from a regular file owned by that user and
//! writable by nobody else, and only after its checksum matches. Entries
//! are written under unique temporary names (`O_EXCL`, mode 0600) and
//! renamed into place, so two writers (threads or processes) never publish
//! each other's code under their own key.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The trailer after the compiled bytes: CRC-32 (4), length (8), magic (8).
const MAGIC: &[u8; 8] = b"pidmanC1";
const TRAILER: usize = 4 + 8 + 8;

/// The largest entry read back (a compiled plugin is about a megabyte).
const MAX_ENTRY_BYTES: u64 = 64 << 20;

/// `$PIDMAN_CACHE_DIR`, else `$XDG_CACHE_HOME/pidman`, else
/// `~/.cache/pidman` (on Windows `%LOCALAPPDATA%\pidman`); none when there
/// is no such place.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PIDMAN_CACHE_DIR") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    if cfg!(windows) {
        let base = std::env::var_os("LOCALAPPDATA").filter(|d| !d.is_empty())?;
        return Some(PathBuf::from(base).join("pidman"));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("pidman"))
}

use crate::capabilities::files;

/// The cache directory, made (mode 0700) when missing, if it is safe to
/// use; else why not.
pub fn trusted_dir(dir: &Path) -> Result<&Path, String> {
    if !dir.exists() {
        if let Some(parent) = dir.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = files::create_private_dir(dir);
    }
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    match files::not_private(dir, &meta) {
        Some(why) => Err(format!("{} is {why}", dir.display())),
        None => Ok(dir),
    }
}

/// Whether the entry at `path` is there, trusted and intact: checked by
/// streaming it through a small buffer, so that the caller can map the file
/// itself (a copy of the whole entry costs a page fault per page).
pub fn verify(path: &Path) -> bool {
    let Ok(mut file) = files::guarded(OpenOptions::new().read(true)).open(path) else {
        return false;
    };
    let Ok(meta) = file.metadata() else {
        return false;
    };
    if !meta.is_file() || meta.len() > MAX_ENTRY_BYTES || files::not_private(path, &meta).is_some()
    {
        return false;
    }
    let Some(body) = (meta.len() as usize).checked_sub(TRAILER) else {
        return false;
    };
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = body;
    while left > 0 {
        let want = left.min(buf.len());
        if file.read_exact(&mut buf[..want]).is_err() {
            return false;
        }
        hasher.update(&buf[..want]);
        left -= want;
    }
    let mut trailer = [0u8; TRAILER];
    if file.read_exact(&mut trailer).is_err() {
        return false;
    }
    let crc = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
    let len = u64::from_le_bytes(trailer[4..12].try_into().expect("8 bytes"));
    &trailer[12..] == MAGIC && len == body as u64 && hasher.finalize() == crc
}

/// Store `compiled` at `path`: best effort (a cache that cannot be written
/// only costs a compile next time).
pub fn write(path: &Path, compiled: &[u8]) {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let temp = dir.join(format!(
        ".{}.{}.{}.{nanos:x}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let written = files::private(files::guarded(
        OpenOptions::new().write(true).create_new(true),
    ))
    .open(&temp)
    .and_then(|mut file: File| {
        file.write_all(compiled)?;
        file.write_all(&crc32fast::hash(compiled).to_le_bytes())?;
        file.write_all(&(compiled.len() as u64).to_le_bytes())?;
        file.write_all(MAGIC)
    })
    .and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_a_flipped_bit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.cwasm");
        write(&path, b"native code");
        assert!(verify(&path));
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"native code"));
        bytes[3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(!verify(&path), "corrupt");
        std::fs::write(&path, b"short").unwrap();
        assert!(!verify(&path), "truncated");
    }

    /// Unix modes (Windows: the entry's owner, checked by the files
    /// capability's own tests).
    #[cfg(unix)]
    #[test]
    fn others_writable_entries_and_directories_are_refused() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.cwasm");
        write(&path, b"code");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!verify(&path), "a world-writable entry");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            trusted_dir(dir.path()).is_err(),
            "a world-writable directory"
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(trusted_dir(dir.path()).is_ok());
        let made = dir.path().join("new/cache");
        assert!(trusted_dir(&made).is_ok());
        let mode = std::fs::metadata(&made).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700, "made private");
    }

    #[test]
    fn concurrent_writers_never_share_a_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8u8)
            .map(|i| {
                let path = dir.path().join(format!("{}.cwasm", i % 2));
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        write(&path, &vec![i % 2; 4096]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for key in 0..2u8 {
            let path = dir.path().join(format!("{key}.cwasm"));
            assert!(verify(&path), "intact");
            let bytes = std::fs::read(&path).unwrap();
            let bytes = &bytes[..bytes.len() - TRAILER];
            assert!(
                bytes.iter().all(|&b| b == key),
                "key {key} holds its own code"
            );
        }
    }
}
