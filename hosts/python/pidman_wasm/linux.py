"""The real capabilities on Linux: /proc, pidfds, flock. Mechanism only,
with the Rust host's reading of /proc (host/src/capabilities/
process_table/linux.rs): the uid is the real one from `status`, a thread
id is not a process, a process /proc hides (`hidepid`) is alive and
unreadable, one that exits while it is read is not found, and an empty
argument is an argument."""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
import time

# Linux only (mypy checks the rest of this module for Linux alone).
assert sys.platform == "linux", "pidman_wasm.linux is the Linux backend"

import fcntl  # noqa: E402
from typing import Any, NamedTuple, Optional

from ._files import lstat_beneath, open_lock_beneath
from ._runtime import MAX_PID, GuestError

_HZ = os.sysconf("SC_CLK_TCK")


def _boot_ms() -> int:
    return int(time.time() * 1000) - int(time.clock_gettime(time.CLOCK_BOOTTIME) * 1000)


def _os_error(what: str, e: OSError) -> GuestError:
    if isinstance(e, FileNotFoundError) or isinstance(e, ProcessLookupError):
        return GuestError("not-found")
    if isinstance(e, PermissionError):
        return GuestError("permission-denied", f"{what}: {e.strerror}")
    return GuestError("io", f"{what}: {e}")


class _Stat(NamedTuple):
    """The fields of /proc/<pid>/stat pidman reads."""

    name: str
    state: str
    parent: int
    group: int
    session: int
    ticks: int
    threads: int


def _parse_stat(raw: bytes) -> _Stat:
    """One /proc/<pid>/stat line: the name between the first `(` and the
    last `)` (decoded lossily: a name need not be UTF-8), then the fields
    after it: 3 state, 4 ppid, 5 pgrp, 6 session, 20 threads, 22 start time
    in clock ticks."""
    text = raw.decode("utf-8", "replace")
    close = text.rindex(")")
    fields = text[close + 1:].split()
    return _Stat(text[text.index("(") + 1: close], fields[0], int(fields[1]), int(fields[2]),
                 int(fields[3]), int(fields[19]), int(fields[17]))


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _stat(pid: int) -> _Stat:
    raw = _read(f"/proc/{pid}/stat")
    try:
        return _parse_stat(raw)
    except (ValueError, IndexError):
        # An empty or cut line: the process is being reaped.
        raise FileNotFoundError(f"/proc/{pid}/stat")


class _Status(NamedTuple):
    """The fields of /proc/<pid>/status pidman reads."""

    #: The process (thread group) the id belongs to: the id itself for a
    #: process, another for a thread that does not lead its process.
    tgid: int
    #: The real user id: the first of `Uid:`'s four (not the owner of
    #: /proc/<pid>, which is the effective one, or root for a process that
    #: is not dumpable).
    uid: int
    #: Exited: `State` Z or X and one thread left.
    zombie: bool


def _parse_status(text: str) -> _Status:
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    threads = int(fields["Threads"])
    state = fields["State"][:1]
    return _Status(int(fields["Tgid"]), int(fields["Uid"].split()[0]),
                   state in ("Z", "X", "x") and threads <= 1)


def _status(pid: int) -> _Status:
    raw = _read(f"/proc/{pid}/status")
    try:
        return _parse_status(raw.decode("utf-8", "replace"))
    except (ValueError, KeyError, IndexError):
        raise FileNotFoundError(f"/proc/{pid}/status")


def parse_cmdline(raw: bytes) -> list[str]:
    """A command line as the kernel keeps it: arguments each ended by a
    NUL. Empty arguments are arguments (`bengal "" serve` is not `bengal
    serve`); a rewritten one may lack the final NUL."""
    if not raw:
        return []
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0")]


def _cmdline(proc_dir: str) -> list[str]:
    """The command line in `proc_dir`; empty where it is hidden."""
    try:
        return parse_cmdline(_read(f"{proc_dir}/cmdline"))
    except PermissionError:
        return []


def _state(st: _Stat) -> str:
    """Exited: `Z` or `X`, the main thread's state, and no thread left. A
    process whose main thread has ended while others run (every threaded
    server for a moment while it exits) still runs and holds its port."""
    return "zombie" if st.state in ("Z", "X") and st.threads <= 1 else "running"


def probe(pid: int) -> str:
    """Whether `pid` exists, asked of the kernel without reading about it:
    `kill(pid, 0)`, for which EPERM means alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        return "running"
    return "running"


def _thread_of(tid: int, tgid: int) -> GuestError:
    return GuestError("invalid", f"{tid} is a thread of process {tgid}, not a process")


def _unreadable(pid: int, e: OSError) -> GuestError:
    """/proc could not tell about `pid`: a missing entry may be a process
    that ended meanwhile (not found), or a live one /proc hides from this
    user (`hidepid`: alive, unreadable), which `kill(pid, 0)` tells."""
    if isinstance(e, (FileNotFoundError, ProcessLookupError, PermissionError)):
        if probe(pid) == "gone":
            return GuestError("not-found")
        return GuestError("permission-denied", f"PID {pid} runs, but /proc hides it from this user")
    return _os_error(f"PID {pid}", e)


# The WIT `signal` enum, case by case: an unknown case is a KeyError (a
# trap), never some other signal.
SIGNALS = {"term": signal.SIGTERM, "kill": signal.SIGKILL, "cont": signal.SIGCONT}


class LinuxBackend:
    """The process table, signals, ports, file owners and locks on Linux.
    The host's own rules (the grant, the signal floor) are applied by the
    runtime before a request gets here."""

    def __init__(self) -> None:
        self._boot = _boot_ms()

    def own_pid(self) -> int:
        return os.getpid()

    def parent_pid(self) -> int:
        return os.getppid()

    def own_uid(self) -> int:
        return os.geteuid()

    def state(self, pid: int) -> str:
        """Running, zombie or gone, from /proc/<pid>/status (which also
        tells a thread id from a PID); a missing or hidden entry is asked
        of the kernel."""
        if not 0 < pid <= MAX_PID:
            return "gone"
        try:
            st = _status(pid)
        except OSError:
            return probe(pid)
        if st.tgid != pid:
            raise _thread_of(pid, st.tgid)
        return "zombie" if st.zombie else "running"

    def inspect(self, pid: int) -> dict[str, Any]:
        if not 0 < pid <= MAX_PID:
            raise GuestError("not-found")
        try:
            st = _stat(pid)
            status = _status(pid)
            argv = _cmdline(f"/proc/{pid}")
        except OSError as e:
            raise _unreadable(pid, e)
        if status.tgid != pid:
            raise _thread_of(pid, status.tgid)
        zombie = _state(st) == "zombie" or status.zombie
        if not argv and not zombie:
            # A process whose main thread has ended shows an empty command
            # line there; its other threads share the same memory.
            try:
                tids = [t for t in os.listdir(f"/proc/{pid}/task") if t != str(pid)]
            except OSError:
                tids = []
            for tid in tids:
                try:
                    argv = _cmdline(f"/proc/{pid}/task/{tid}")
                except OSError:  # the thread ended meanwhile
                    continue
                if argv:
                    break
        return {
            "pid": pid, "name": st.name, "argv": argv,
            "start_time_ms": self._boot + st.ticks * 1000 // _HZ, "start_token": st.ticks,
            "uid": status.uid, "state": "zombie" if zombie else "running", "parent": st.parent,
            "group": st.group, "session": st.session,
        }

    def snapshot(self) -> list[dict[str, Any]]:
        """Every process in /proc (its numeric entries are thread-group
        leaders only), one stat read each; a process gone mid-read is left
        out."""
        try:
            names = os.listdir("/proc")
        except OSError as e:
            raise _os_error("/proc", e)
        entries = []
        for name in names:
            if not name.isdigit():
                continue
            try:
                st = _stat(int(name))
            except OSError:
                continue
            entries.append({"pid": int(name), "parent": st.parent, "group": st.group,
                            "start_token": st.ticks, "state": _state(st)})
        return entries

    def _pidfd(self, pid: int, token: int) -> int:
        """A pidfd for `pid`, checked to be the process with `token`."""
        try:
            tgid = _status(pid).tgid
        except OSError:
            tgid = pid  # gone (pidfd_open says so), or hidden
        if tgid != pid:
            raise _thread_of(pid, tgid)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise GuestError("not-found")
        except OSError as e:
            if e.errno == errno.EINVAL:  # pidfd_open refuses a thread id
                raise GuestError("invalid", f"{pid} is a thread id, not a process")
            raise _os_error(f"PID {pid}", e)
        try:
            ticks = _stat(pid).ticks
        except OSError:
            os.close(fd)
            raise GuestError("not-found")
        if ticks != token:
            os.close(fd)
            raise GuestError("changed")
        return fd

    def send(self, pid: int, token: int, sig: str) -> None:
        fd = self._pidfd(pid, token)
        try:
            signal.pidfd_send_signal(fd, SIGNALS[sig])
        except OSError as e:
            raise _os_error(f"signal PID {pid}", e)
        finally:
            os.close(fd)

    def wait_exit(self, pid: int, token: int, timeout_ms: int) -> bool:
        try:
            fd = self._pidfd(pid, token)
        except GuestError as e:
            if e.kind == "invalid":
                raise
            return True  # gone, or another process has its PID now
        try:
            try:
                if _state(_stat(pid)) == "zombie":
                    return True
            except OSError:
                return True
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(timeout_ms))
        finally:
            os.close(fd)

    def clock_ms(self) -> int:
        """The clock `wait_exit` runs on: monotonic milliseconds."""
        return time.monotonic_ns() // 1_000_000

    def sockets(self, port: int, listening: bool) -> list[dict[str, Any]]:
        found = []
        for path, ipv6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
            try:
                with open(path) as f:
                    lines = f.read().splitlines()[1:]
            except FileNotFoundError:
                continue
            for line in lines:
                fields = line.split()
                address, hexport = fields[1].split(":")
                if int(hexport, 16) != port or (fields[3] == "0A") != listening:
                    continue
                import ipaddress  # only on a port lookup: a fresh check need not pay for it

                raw = bytes.fromhex(address)
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.append({
                    "ipv6": ipv6, "local_address": str(ipaddress.ip_address(words)),
                    "state": "listen" if fields[3] == "0A" else ("established" if fields[3] == "01" else "other"),
                    "uid": int(fields[7]), "handle": int(fields[9]),
                })
        return found

    def socket_owner(self, handle: int) -> Optional[int]:
        if handle == 0:
            return None
        wanted = f"socket:[{handle}]"

        def holds(fds: str) -> Optional[bool]:
            """Whether the table holds it; None for a table with nothing."""
            names = os.listdir(fds)
            for fd in names:
                try:
                    if os.readlink(f"{fds}/{fd}") == wanted:
                        return True
                except OSError:
                    continue
            return False if names else None

        # Processes with no descriptors: kernel threads, and those whose
        # main thread has ended while other threads run on with the table.
        empty = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                held = holds(f"/proc/{entry}/fd")
            except OSError:
                continue
            if held:
                return int(entry)
            if held is None:
                empty.append(entry)
        for entry in empty:
            try:
                for tid in os.listdir(f"/proc/{entry}/task"):
                    if tid != entry and holds(f"/proc/{entry}/task/{tid}/fd"):
                        return int(entry)
            except OSError:
                continue
        return None

    def file_owner(self, path: str) -> dict[str, Any]:
        # Resolved beneath the grant: no symlink followed on the way (_files).
        st = lstat_beneath(path, _os_error)
        import stat as S
        return {"uid": st.st_uid, "mode": st.st_mode & 0o7777, "symlink": S.S_ISLNK(st.st_mode)}

    def try_lock(self, path: str, wait_ms: int) -> Optional[int]:
        # Opened beneath the grant, never through a symlink, never blocking
        # on a FIFO or device, read-only for a lock file this user may not
        # write (root's leftover): see _files.open_lock_beneath.
        fd = open_lock_beneath(path, _os_error)
        deadline = time.monotonic() + wait_ms / 1000
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return None
                time.sleep(0.001)

    def release(self, held: int) -> None:
        """Release the lock explicitly (a descriptor copy a forked child
        still has cannot keep it), then close it."""
        try:
            fcntl.flock(held, fcntl.LOCK_UN)
        finally:
            os.close(held)

    def forget(self, held: int) -> None:
        """A forked child's copy of a lock its parent holds: closed, never
        unlocked (the lock is the parent's)."""
        os.close(held)
