"""The compiled-component cache, with the Rust host's rules: an entry is
native code, so it is trusted only as far as where it comes from. It is
loaded only from a directory owned by the running user and writable by
nobody else (made 0700), only from a regular file owned by that user and
writable by nobody else, and only when its CRC-32 trailer matches; entries
are written under unique temporary names (O_EXCL, 0600) and renamed into
place."""

from __future__ import annotations

import os
import stat
import struct
import sys
import zlib
from pathlib import Path
from typing import Optional

MAGIC = b"pidmanP1"
TRAILER = struct.Struct("<IQ8s")  # CRC-32, length, magic
MAX_ENTRY_BYTES = 64 << 20


def default_dir() -> Optional[Path]:
    """$PIDMAN_CACHE_DIR, else $XDG_CACHE_HOME/pidman, else ~/.cache/pidman."""
    explicit = os.environ.get("PIDMAN_CACHE_DIR")
    if explicit is not None:
        return Path(explicit) if explicit else None
    base = os.environ.get("XDG_CACHE_HOME") or (
        os.path.join(os.environ["HOME"], ".cache") if "HOME" in os.environ else None)
    return Path(base) / "pidman" if base else None


def _untrusted(st: os.stat_result) -> Optional[str]:
    # (Windows keeps ACLs, not uids: the user's own profile directory is
    # where the cache lives there.)
    if sys.platform != "win32" and st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}, not {os.geteuid()}"
    if st.st_mode & 0o022:
        return f"writable by others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def trusted_dir(directory: Path) -> Optional[Path]:
    """The cache directory, made 0700 when missing, if it is safe to use."""
    try:
        if not directory.exists():
            directory.parent.mkdir(parents=True, exist_ok=True)
            directory.mkdir(mode=0o700, exist_ok=True)
        st = os.stat(directory)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or _untrusted(st):
        return None
    return directory


def key(wasm: bytes, runtime_tag: str) -> str:
    """The entry's name: the component's checksums and length, and the
    runtime's identity. (A name, not a seal: what is loaded is checked by
    its own CRC; zlib's sums spare a fresh process importing hashlib.)"""
    tag = runtime_tag.encode()
    sums = (zlib.crc32(wasm), zlib.adler32(wasm), len(wasm), zlib.crc32(tag), zlib.adler32(tag))
    return "py-" + "-".join(f"{n:x}" for n in sums) + ".cwasm"


def read(path: Path) -> Optional[bytes]:
    """The compiled bytes at `path`, if there, trusted and intact."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_ENTRY_BYTES or _untrusted(st):
            return None
        data = f.read(MAX_ENTRY_BYTES + 1)
    if len(data) < TRAILER.size:
        return None
    body, trailer = data[:-TRAILER.size], data[-TRAILER.size:]
    crc, length, magic = TRAILER.unpack(trailer)
    if magic != MAGIC or length != len(body) or zlib.crc32(body) != crc:
        return None
    return body


def write(path: Path, compiled: bytes) -> None:
    """Store `compiled` at `path`; best effort (a miss only costs a compile)."""
    import tempfile

    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(compiled)
            f.write(TRAILER.pack(zlib.crc32(compiled), len(compiled), MAGIC))
        os.replace(temp, path)
    except OSError:
        try:
            os.unlink(temp)
        except OSError:
            pass
