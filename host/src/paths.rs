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

/// A path as the plugin sees it: UTF-8 (the WIT's strings), rooted at `/`
/// with `/` between components, as WASI's paths are (the guest's standard
/// library resolves only such paths against its preopened directory, and
/// the plugin's own rules, a file's directory or its lock's name, split on
/// `/` alone). On Unix, the path itself. On Windows, `C:\x` is `/C:/x` (the
/// verbatim prefix `canonicalize` adds is dropped: `\\?\C:\x` is `/C:/x`)
/// and a share `\\host\share\x` (or `\\?\UNC\host\share\x`) is
/// `//host/share/x`.
pub fn to_guest(path: &Path) -> Result<String> {
    let text = utf8(path)?;
    if !cfg!(windows) {
        return Ok(text.to_owned());
    }
    let text = text.replace('/', "\\");
    let guest = if let Some(share) = text
        .strip_prefix(r"\\?\UNC\")
        .or_else(|| text.strip_prefix(r"\\").filter(|t| !t.starts_with('?')))
    {
        format!("//{share}")
    } else {
        format!("/{}", text.strip_prefix(r"\\?\").unwrap_or(&text))
    };
    Ok(guest.replace('\\', "/"))
}

/// A path the plugin named, as this OS writes it: the inverse of
/// [`to_guest`] (on Windows, `/C:/x` is `C:\x`; Windows itself takes
/// either slash).
pub fn from_guest(path: &str) -> PathBuf {
    if !cfg!(windows) {
        return PathBuf::from(path);
    }
    let native = match path.strip_prefix('/') {
        Some(rest) if !rest.starts_with('/') => rest,
        _ => path,
    };
    PathBuf::from(native.replace('/', "\\"))
}

/// A path as UTF-8, which the WIT strings need.
pub fn utf8(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_sees_slashes_and_no_verbatim_prefix() {
        if cfg!(windows) {
            for (native, guest, back) in [
                (
                    r"\\?\C:\Users\me\proj",
                    "/C:/Users/me/proj",
                    r"C:\Users\me\proj",
                ),
                (r"\\?\UNC\srv\share\p", "//srv/share/p", r"\\srv\share\p"),
                (r"\\srv\share\p", "//srv/share/p", r"\\srv\share\p"),
                (
                    r"C:/proj\.bengal.pid",
                    "/C:/proj/.bengal.pid",
                    r"C:\proj\.bengal.pid",
                ),
                (r"\\?\D:\", "/D:/", r"D:\"),
            ] {
                assert_eq!(to_guest(Path::new(native)).unwrap(), guest, "{native}");
                assert_eq!(from_guest(guest), PathBuf::from(back), "{guest}");
            }
        } else {
            let path = Path::new("/home/me/a\\b/.bengal.pid");
            assert_eq!(to_guest(path).unwrap(), "/home/me/a\\b/.bengal.pid");
            assert_eq!(from_guest("/home/me/x"), PathBuf::from("/home/me/x"));
        }
    }
}
