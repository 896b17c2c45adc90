"""The plugin's paths, resolved beneath the granted directory, as the Rust
host does (host/src/capabilities/files/unix.rs): each directory on the way
is opened from the one before with `O_NOFOLLOW | O_DIRECTORY` (`O_PATH`
where there is one), and the file itself is looked at (`fstatat`) or
opened (`openat`) relative to the last. The grant's path is canonical, so a
symlink met on the way was planted inside the grant (or swapped in since):
it is refused (`untrusted`), never followed. The runtime has already
checked the path against the grant, step by step (`_runtime.granted`);
this closes what that check cannot: where the OS call goes.

Shared by the real backends (linux.py, portable.py). Windows has no
`dir_fd` (`os.supports_dir_fd` lacks `os.open` there): `BENEATH` is false,
and the psutil backend keeps its plain `lstat` and `O_NOFOLLOW`-less open
there, with the grant's path check alone (a directory symlink or junction
inside the grant is not caught on Windows)."""

from __future__ import annotations

import errno
import os
import stat as S
from typing import Callable

from ._runtime import GuestError

# Whether paths can be resolved beneath a directory here (every Unix).
BENEATH = os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd

_O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK: int = getattr(os, "O_NONBLOCK", 0)
# Linux: O_PATH opens a directory for lookups alone (no read permission
# needed, as a path walk needs none); elsewhere read-only.
_WALK: int = (getattr(os, "O_PATH", 0) or os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0) \
    | _O_NOFOLLOW | _O_CLOEXEC
# A symlink where O_NOFOLLOW or O_DIRECTORY forbids one (O_PATH with
# O_NOFOLLOW opens a symlink itself, which O_DIRECTORY then refuses).
_SYMLINK = (errno.ELOOP, errno.ENOTDIR)


def _untrusted(path: str) -> GuestError:
    return GuestError("untrusted", f"{path} is a symlink; pidman never follows one")


def open_parent(path: str, os_error: Callable[[str, OSError], GuestError]) -> tuple[int, str]:
    """The directory that holds the absolute `path` (an open descriptor the
    caller closes), opened one step at a time from `/` with no symlink
    followed, and the last step's name. A symlink or anything but a
    directory on the way is `untrusted`, naming it; any other failure is
    `os_error(path, e)` (a missing directory: `not-found`)."""
    parent, _, name = path.rpartition("/")
    if not path.startswith("/") or not name:
        raise GuestError("invalid", f"{path} names no file below /")
    fd = os.open("/", _WALK)
    try:
        for step in parent.split("/"):
            if not step:
                continue  # the root, already open (the grant allows no `..`)
            try:
                inner = os.open(step, _WALK, dir_fd=fd)
            except OSError as e:
                if e.errno in _SYMLINK:
                    raise GuestError("untrusted", f"{step} on the way to {path} is a symlink or"
                                     " not a directory; pidman never follows one")
                raise os_error(path, e)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd, name


def lstat_beneath(path: str, os_error: Callable[[str, OSError], GuestError]) -> os.stat_result:
    """`lstat` of `path`, resolved beneath its directories."""
    fd, name = open_parent(path, os_error)
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError as e:
        raise os_error(path, e)
    finally:
        os.close(fd)


def open_lock_beneath(path: str, os_error: Callable[[str, OSError], GuestError]) -> int:
    """The lock file `path` opened read-write (created, mode 0644, if
    missing) relative to its directory, resolved beneath its directories,
    with `O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC` (a symlink
    at the path is `untrusted`; a FIFO or device planted there never blocks
    the open). A lock file this user may not write (root's leftover, mode
    0644) is opened read-only, as the Rust host does: flock needs no write
    access, and the plugin then says what it cannot record there. Anything
    but a regular file is `invalid`."""
    fd, name = open_parent(path, os_error)
    base = _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC
    try:
        try:
            lock = os.open(name, base | os.O_RDWR | os.O_CREAT, 0o644, dir_fd=fd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise _untrusted(path)
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS) or not _exists(name, fd):
                raise os_error(path, e)
            try:
                lock = os.open(name, base | os.O_RDONLY, dir_fd=fd)
            except OSError as e2:
                if e2.errno == errno.ELOOP:
                    raise _untrusted(path)
                raise os_error(path, e2)
    finally:
        os.close(fd)
    if not S.S_ISREG(os.fstat(lock).st_mode):
        os.close(lock)
        raise GuestError("invalid", f"{path} is not a regular file, so not a lock file")
    return lock


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except OSError:
        return False

