"""The real capabilities through psutil: the backend of macOS and Windows
(and of Linux under `PIDMAN_PY_BACKEND=psutil`, so that the test suite
runs it there). Mechanism only; the host's own rules (the grant, the
signal floor) are applied by the runtime before a request gets here.

- Processes: psutil's process table. The start token is the start time in
  microseconds as psutil reports it (10 ms steps on Linux, 1 us on macOS,
  100 ns on Windows, all below a microsecond's rounding); a process is a
  zombie when its state says so and no thread is left.
- Signals: psutil, after the start-token check (psutil checks it again
  itself before it signals); the wait polls with a short backoff (a zombie
  has ended). On Windows `term` and `kill` both terminate the process,
  `cont` resumes it.
- Ports: `psutil.net_connections`; where the system allows that only to
  an administrator (macOS), each readable process's own sockets.
- Locks: `fcntl.flock` on Unix; on Windows `msvcrt.locking` of one byte at
  2^62 (beyond the data: the claimant record in the lock file stays
  readable and writable), released explicitly.
- Files (`owner`, the lock file): on Unix resolved beneath the granted
  directory, following no symlink on the way (_files.py); on Windows, which
  has no dir_fd, the grant's path check alone.
- Windows has no uids: the caller's "uid" is a fixed number, every file is
  reported as the caller's (mode 0644, 0444 when read-only), a socket as
  the caller's, a process with no uid."""

from __future__ import annotations

import os
import signal
import stat as S
import sys
import time
from typing import Any, NamedTuple, Optional

import psutil

from ._files import BENEATH, lstat_beneath, open_lock_beneath
from ._runtime import MAX_PID, GuestError

WINDOWS = sys.platform == "win32"
# The caller's "uid" on Windows (accounts are SIDs there): not 0, which
# would read as root.
WINDOWS_UID = 1000
# The byte a Windows lock takes: beyond any data.
LOCK_OFFSET = 1 << 62


class _Row(NamedTuple):
    """A TCP socket as pidman reads it."""

    family: int
    laddr: Any
    status: str
    pid: Optional[int]


def _error(what: str, e: BaseException) -> GuestError:
    if isinstance(e, (psutil.NoSuchProcess, ProcessLookupError, FileNotFoundError)):
        return GuestError("not-found")
    if isinstance(e, (psutil.AccessDenied, PermissionError)):
        return GuestError("permission-denied", f"{what}: {e}")
    return GuestError("io", f"{what}: {e}")


def _token(p: psutil.Process) -> int:
    """The start token: the start time in microseconds."""
    return round(p.create_time() * 1_000_000)


def _zombie(p: psutil.Process) -> bool:
    """Ended, waiting to be reaped: its state says so and no thread is left
    (on Linux the state is the main thread's, `Z` while other threads of a
    threaded server still run)."""
    try:
        if p.status() != psutil.STATUS_ZOMBIE:
            return False
    except psutil.ZombieProcess:
        return True
    try:
        return p.num_threads() <= 1
    except psutil.Error:
        return True


def _process(pid: int) -> psutil.Process:
    """The process `pid`: not-found when there is none, or when `pid` is
    the id of a thread (psutil's `pid_exists` tells a thread from a PID on
    Linux; elsewhere thread ids are no PIDs)."""
    if not 0 < pid <= MAX_PID:
        raise GuestError("not-found")
    try:
        p = psutil.Process(pid)
    except psutil.NoSuchProcess as e:
        # A process /proc hides from this user (Linux `hidepid`) is not
        # gone: kill(pid, 0) still tells it runs (EPERM), as the Rust host
        # tells it.
        if not WINDOWS:
            try:
                os.kill(pid, 0)
            except PermissionError:
                raise GuestError("permission-denied",
                                 f"PID {pid} runs, but /proc hides it from this user") from None
            except OSError:
                pass
        raise _error(f"PID {pid}", e)
    except psutil.Error as e:
        raise _error(f"PID {pid}", e)
    if sys.platform.startswith("linux") and not psutil.pid_exists(pid):
        if os.path.exists(f"/proc/{pid}"):
            raise GuestError("invalid", f"{pid} is a thread id, not a process")
        raise GuestError("not-found")
    return p


def _other_threads(p: psutil.Process) -> list[psutil.Process]:
    """On Linux, the threads of `p` but its main one, each as /proc shows
    a thread (psutil reads /proc/<tid> as it reads a process): where a
    threaded server's main thread has ended, its command line and its
    descriptors are read through them."""
    if not sys.platform.startswith("linux"):
        return []
    found = []
    try:
        for t in p.threads():
            if t.id != p.pid:
                try:
                    found.append(psutil.Process(t.id))
                except psutil.Error:
                    continue
    except psutil.Error:
        pass
    return found


def _threads_cmdline(p: psutil.Process) -> list[str]:
    """The command line of a process whose main thread has ended (its own
    reads empty), from another of its threads."""
    for t in _other_threads(p):
        try:
            argv = t.cmdline()
        except psutil.Error:
            continue
        if argv:
            return list(argv)
    return []


def _main_exited_owners() -> dict[tuple[Any, str], int]:
    """Linux: the TCP sockets of processes whose main thread has ended
    (psutil finds no owner for them: /proc/<pid>/fd is empty), by (local
    address, status), read through their other threads."""
    owners: dict[tuple[Any, str], int] = {}
    for p in psutil.process_iter():
        try:
            if p.status() != psutil.STATUS_ZOMBIE or p.num_threads() <= 1:
                continue
        except psutil.Error:
            continue
        for t in _other_threads(p):
            try:
                listing = t.net_connections(kind="tcp")
            except psutil.Error:
                continue
            for c in listing:
                owners.setdefault((c.laddr, c.status), p.pid)
            break
    return owners


class PsutilBackend:
    """The process table, signals, ports, file owners and locks, through
    psutil and the standard library."""

    def __init__(self) -> None:
        # The sockets of the last `sockets` call: a handle is an index.
        self._sockets: list[Optional[int]] = []

    def own_pid(self) -> int:
        return os.getpid()

    def parent_pid(self) -> int:
        return os.getppid()

    def own_uid(self) -> int:
        return _own_uid()

    def state(self, pid: int) -> str:
        try:
            p = _process(pid)
        except GuestError as e:
            if e.kind == "not-found":
                return "gone"
            if e.kind == "permission-denied":
                return "running"  # EPERM is not death
            raise
        try:
            return "zombie" if _zombie(p) else "running"
        except psutil.NoSuchProcess:
            return "gone"
        except psutil.AccessDenied:
            return "running"

    def inspect(self, pid: int) -> dict[str, Any]:
        p = _process(pid)
        try:
            with p.oneshot():
                zombie = _zombie(p)
                try:
                    argv = [] if zombie else p.cmdline()
                except (psutil.AccessDenied, psutil.ZombieProcess):
                    argv = []
                if not argv and not zombie:
                    argv = _threads_cmdline(p)
                created = p.create_time()
                uid = _real_uid(p)
                parent = p.ppid()
                name = p.name()
        except psutil.Error as e:
            raise _error(f"PID {pid}", e)
        group, session = _group_session(pid)
        return {
            "pid": pid, "name": name, "argv": list(argv),
            "start_time_ms": int(created * 1000), "start_token": round(created * 1_000_000),
            "uid": uid, "state": "zombie" if zombie else "running", "parent": parent,
            "group": group, "session": session,
        }

    def snapshot(self) -> list[dict[str, Any]]:
        entries = []
        for p in psutil.process_iter():
            try:
                with p.oneshot():
                    entry = {"pid": p.pid, "parent": p.ppid(), "group": 0,
                             "start_token": _token(p),
                             "state": "zombie" if _zombie(p) else "running"}
            except psutil.Error:
                continue  # gone meanwhile, or unreadable
            entry["group"] = _group_session(p.pid, session=False)[0]
            entries.append(entry)
        return entries

    def _identified(self, pid: int, token: int) -> psutil.Process:
        p = _process(pid)
        try:
            if _token(p) != token:
                raise GuestError("changed")
        except psutil.Error as e:
            raise _error(f"PID {pid}", e)
        return p

    def send(self, pid: int, token: int, sig: str) -> None:
        p = self._identified(pid, token)
        try:
            if WINDOWS:
                if sig == "cont":
                    p.resume()
                else:
                    p.kill()  # TerminateProcess, for `term` as for `kill`
            else:
                p.send_signal(_SIGNALS[sig])
        except psutil.Error as e:
            raise _error(f"signal PID {pid}", e)

    def wait_exit(self, pid: int, token: int, timeout_ms: int) -> bool:
        deadline = time.monotonic() + timeout_ms / 1000
        pause = 0.001
        while True:
            try:
                p = self._identified(pid, token)
                if _zombie(p):
                    return True
            except GuestError as e:
                if e.kind == "invalid":
                    raise
                if e.kind != "permission-denied":
                    return True  # gone, or another process has its PID now
            except psutil.NoSuchProcess:
                return True
            except psutil.AccessDenied:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)

    def clock_ms(self) -> int:
        """The clock `wait_exit` runs on: monotonic milliseconds."""
        return time.monotonic_ns() // 1_000_000

    def _connections(self) -> list[_Row]:
        try:
            rows = [_Row(c.family, c.laddr, c.status, c.pid)
                    for c in psutil.net_connections(kind="tcp")]
        except psutil.AccessDenied:
            pass
        else:
            if any(r.pid is None for r in rows) and sys.platform.startswith("linux"):
                owners = _main_exited_owners()
                rows = [r if r.pid is not None else r._replace(pid=owners.get((r.laddr, r.status)))
                        for r in rows]
            return rows
        # Only an administrator may list every socket here: each readable
        # process's own (another user's sockets stay unseen).
        found: list[_Row] = []
        for p in psutil.process_iter():
            try:
                listing = p.net_connections(kind="tcp")
            except psutil.Error:
                continue
            found.extend(_Row(c.family, c.laddr, c.status, p.pid) for c in listing)
        return found

    def sockets(self, port: int, listening: bool) -> list[dict[str, Any]]:
        import socket

        found = []
        self._sockets = []
        own = self.own_uid()
        for conn in self._connections():
            if not conn.laddr or conn.laddr.port != port:
                continue
            is_listen = conn.status == psutil.CONN_LISTEN
            if is_listen != listening:
                continue
            uid = own
            if conn.pid is not None:
                try:
                    uid = _real_uid(psutil.Process(conn.pid)) or own
                except psutil.Error:
                    pass
            self._sockets.append(conn.pid)
            found.append({
                "ipv6": conn.family == socket.AF_INET6, "local_address": conn.laddr.ip,
                "state": "listen" if is_listen else (
                    "established" if conn.status == psutil.CONN_ESTABLISHED else "other"),
                "uid": uid, "handle": len(self._sockets),
            })
        return found

    def socket_owner(self, handle: int) -> Optional[int]:
        if 1 <= handle <= len(self._sockets):
            return self._sockets[handle - 1]
        return None

    def file_owner(self, path: str) -> dict[str, Any]:
        if BENEATH:
            # Resolved beneath the grant: no symlink followed on the way.
            st = lstat_beneath(path, _error)
        else:
            # Windows (no dir_fd): the grant's path check alone; a directory
            # symlink or junction inside the grant is followed here.
            try:
                st = os.lstat(path)
            except OSError as e:
                raise _error(path, e)
        if WINDOWS:
            mode = 0o444 if not st.st_mode & S.S_IWRITE else 0o644
            return {"uid": WINDOWS_UID, "mode": mode, "symlink": S.S_ISLNK(st.st_mode)}
        return {"uid": st.st_uid, "mode": st.st_mode & 0o7777, "symlink": S.S_ISLNK(st.st_mode)}

    def try_lock(self, path: str, wait_ms: int) -> Optional[int]:
        fd = open_lock_beneath(path, _error) if BENEATH else self._open_lock(path)
        deadline = time.monotonic() + wait_ms / 1000
        while True:
            try:
                _lock(fd)
                return fd
            except OSError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return None
                time.sleep(0.001)

    @staticmethod
    def _open_lock(path: str) -> int:
        """The lock file where paths cannot be resolved beneath a directory
        (Windows, which has no dir_fd): a plain open, with the grant's path
        check alone. The last step is refused when it is a symlink; a
        directory symlink or junction on the way is followed (Unix resolves
        beneath the grant instead: _files.open_lock_beneath, which also
        locks a lock file this user may not write read-only)."""
        if os.path.islink(path):
            raise GuestError("untrusted", f"{path} is a symbolic link; pidman never follows one")
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) \
            | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOINHERIT", 0) \
            | getattr(os, "O_BINARY", 0)
        try:
            return os.open(path, flags, 0o644)
        except OSError as e:
            raise _error(path, e)

    def release(self, held: int) -> None:
        """Release the lock explicitly, then close it."""
        try:
            _unlock(held)
        finally:
            os.close(held)

    def forget(self, held: int) -> None:
        """A forked child's copy of a lock its parent holds: closed, never
        unlocked (the lock is the parent's)."""
        os.close(held)


if sys.platform == "win32":
    import msvcrt

    # The WIT `signal` cases; Windows has none of them (see `send`).
    _SIGNALS: dict[str, int] = {}

    def _own_uid() -> int:
        return WINDOWS_UID

    def _real_uid(p: psutil.Process) -> Optional[int]:
        return None  # accounts are SIDs

    def _group_session(pid: int, session: bool = True) -> tuple[int, int]:
        return 0, 0  # no process groups nor sessions

    def _lock(fd: int) -> None:
        os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    # The WIT `signal` enum, case by case: an unknown case is a KeyError (a
    # trap), never some other signal.
    _SIGNALS = {"term": signal.SIGTERM, "kill": signal.SIGKILL, "cont": signal.SIGCONT}

    def _own_uid() -> int:
        return os.geteuid()

    def _real_uid(p: psutil.Process) -> Optional[int]:
        return int(p.uids().real)

    def _group_session(pid: int, session: bool = True) -> tuple[int, int]:
        """Its process group and (with `session`) its session; 0 where it
        cannot be read."""
        try:
            return os.getpgid(pid), os.getsid(pid) if session else 0
        except OSError:
            return 0, 0

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
