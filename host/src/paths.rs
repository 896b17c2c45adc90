//! Turning the paths a user gives into the one directory the plugin is
//! granted and the absolute path it sees.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

/// An existing directory, canonical.
pub fn resolve_dir(dir: &Path) -> Result<PathBuf> {
    let canonical = dir
        .canonicalize()
        .with_context(|| format!("cannot use {} as the project root", dir.display()))?;
    if !canonical.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    Ok(canonical)
}

/// (the directory to grant, the PID file's absolute path inside it): the
/// file's directory when it exists, else its nearest existing ancestor. The
/// file name itself is never resolved (a symlink there is the plugin's to
/// refuse).
pub fn resolve_file(file: &Path) -> Result<(PathBuf, PathBuf)> {
    let absolute = if file.is_absolute() {
        file.to_path_buf()
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")?
            .join(file)
    };
    let mut normal = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    let Some(name) = normal.file_name().map(ToOwned::to_owned) else {
        bail!("{} does not name a file", file.display());
    };
    let mut missing = vec![name];
    let mut dir = normal
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| "/".into());
    while !dir.is_dir() {
        if dir.exists() {
            bail!("{} is not a directory", dir.display());
        }
        missing.push(dir.file_name().map(ToOwned::to_owned).unwrap_or_default());
        dir = dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| "/".into());
    }
    let grant = resolve_dir(&dir)?;
    let pid_file = missing
        .iter()
        .rev()
        .fold(grant.clone(), |path, part| path.join(part));
    utf8(&pid_file)?;
    Ok((grant, pid_file))
}

/// (the directory to grant, the project root's absolute path inside it):
/// the root itself when it exists; else its nearest existing ancestor, so
/// that a missing root is a missing PID file (nothing to check, nothing to
/// remove), as a missing directory in `--pid-file` is.
pub fn resolve_root(root: &Path) -> Result<(PathBuf, PathBuf)> {
    if root.exists() {
        let root = resolve_dir(root)?;
        return Ok((root.clone(), root));
    }
    resolve_file(root)
}

/// A path as UTF-8, which the WIT strings need.
pub fn utf8(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))
}
