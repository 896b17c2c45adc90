//! The two file reads of every check, on `wasi:filesystem` directly: a
//! path's stat (`stat-at`) and a whole small file (`open-at`, `stat`,
//! `read`). Through `std::fs`, wasi-libc also asks for a metadata hash
//! beside every stat and for the type of every file it opens: each one
//! more call across the host and one more `statx` there.
//!
//! Paths are the absolute ones the policy speaks; each is resolved against
//! the preopened directory (the grant) that holds it, as wasi-libc does.

use std::cell::RefCell;

use crate::wit_wasi::wasi::filesystem::preopens;
use crate::wit_wasi::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorStat, DescriptorType, ErrorCode, OpenFlags, PathFlags,
};

thread_local! {
    /// The preopens, asked for once per instance.
    static PREOPENS: RefCell<Option<Vec<(Descriptor, String)>>> = const { RefCell::new(None) };
}

/// `f` with the preopened directory that holds `path` and `path` relative
/// to it; `None` when no preopen holds it (WASI would answer "not found").
fn beneath<T>(path: &str, f: impl FnOnce(&Descriptor, &str) -> T) -> Option<T> {
    PREOPENS.with(|cell| {
        let mut cell = cell.borrow_mut();
        let preopens = cell.get_or_insert_with(preopens::get_directories);
        let (dir, rest) = preopens
            .iter()
            .filter_map(|(dir, name)| {
                let base = name.trim_end_matches('/');
                let rest = path.strip_prefix(base)?.strip_prefix('/')?;
                Some((dir, base.len(), rest))
            })
            .max_by_key(|&(_, len, _)| len)
            .map(|(dir, _, rest)| (dir, rest))?;
        Some(f(dir, rest))
    })
}

/// `stat-at` of `path` itself (a symlink is not followed).
pub fn stat(path: &str) -> Result<DescriptorStat, ErrorCode> {
    beneath(path, |dir, rest| dir.stat_at(PathFlags::empty(), rest))
        .unwrap_or(Err(ErrorCode::NoEntry))
}

/// The file at `path` (never through a symlink): its stat, then at most
/// `limit` bytes of it, read in as few calls as it takes.
pub fn read(path: &str, limit: u64) -> Result<(DescriptorStat, Vec<u8>), ErrorCode> {
    let file = beneath(path, |dir, rest| {
        dir.open_at(
            PathFlags::empty(),
            rest,
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
    })
    .unwrap_or(Err(ErrorCode::NoEntry))?;
    let stat = file.stat()?;
    if stat.type_ != DescriptorType::RegularFile {
        return Ok((stat, Vec::new()));
    }
    let mut bytes = Vec::new();
    while (bytes.len() as u64) < limit {
        let (chunk, end) = file.read(limit - bytes.len() as u64, bytes.len() as u64)?;
        bytes.extend_from_slice(&chunk);
        if end || chunk.is_empty() || bytes.len() as u64 >= stat.size {
            break;
        }
    }
    Ok((stat, bytes))
}
