//! `files`: what plain WASI cannot say, for paths inside the one directory
//! the plugin was granted (the gate's grant (`gate.rs`), checked before
//! these run): who owns a file, and an exclusive lock that no child
//! process inherits. One implementation per OS:
//!
//! - `unix` (Linux and macOS): `lstat`; `flock`.
//! - `windows`: the owner's SID (mapped to a "uid", see there); a
//!   byte-range lock (`LockFileEx`) beyond the end of the lock file.
//!
//! Both also give the host's other modules the safe ways to open a path
//! that someone else may have planted (the cache, the plugin file).

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;
