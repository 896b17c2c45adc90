"""The real capabilities on Linux: /proc, pidfds, flock. Mechanism only;
the only rules here are the host's own refusals (PID 0/1, itself, its
parent, other users' processes)."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import time
from typing import Any, NamedTuple, Optional

from ._runtime import GuestError

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


def _stat(pid: int) -> _Stat:
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    try:
        return _parse_stat(raw)
    except (ValueError, IndexError):
        # An empty or cut line: the process is being reaped.
        raise FileNotFoundError(f"/proc/{pid}/stat")


def _cmdline(proc_dir: str) -> list[str]:
    """The command line in `proc_dir`; empty where it is hidden."""
    try:
        with open(f"{proc_dir}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except PermissionError:
        return []


def _state(st: _Stat) -> str:
    """Exited: `Z` or `X`, the main thread's state, and no thread left. A
    process whose main thread has ended while others run (every threaded
    server for a moment while it exits) still runs and holds its port."""
    return "zombie" if st.state in ("Z", "X") and st.threads <= 1 else "running"


# The WIT `signal` enum, case by case: an unknown case is a KeyError (a
# trap), never some other signal.
SIGNALS = {"term": signal.SIGTERM, "kill": signal.SIGKILL, "cont": signal.SIGCONT}


class LinuxBackend:
    def __init__(self) -> None:
        self._boot = _boot_ms()

    def own_pid(self) -> int:
        return os.getpid()

    def parent_pid(self) -> int:
        return os.getppid()

    def own_uid(self) -> int:
        return os.geteuid()

    def state(self, pid: int) -> str:
        try:
            st = _stat(pid)
        except FileNotFoundError:
            return "gone"
        except OSError as e:
            raise _os_error(f"PID {pid}", e)
        return _state(st)

    def inspect(self, pid: int) -> dict[str, Any]:
        try:
            st = _stat(pid)
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError as e:
            raise _os_error(f"PID {pid}", e)
        argv = _cmdline(f"/proc/{pid}")
        if not argv and _state(st) == "running":
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
            "uid": uid, "state": _state(st), "parent": st.parent, "group": st.group,
            "session": st.session,
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

    def _refusal(self, pid: int) -> Optional[str]:
        if pid in (0, 1):
            return f"PID {pid} is never signalled"
        if pid in (os.getpid(), os.getppid()):
            return f"PID {pid} is the host or its parent"
        if os.geteuid() != 0:
            try:
                if os.stat(f"/proc/{pid}").st_uid != os.geteuid():
                    return f"PID {pid} belongs to another user"
            except OSError:
                pass
        return None

    def _pidfd(self, pid: int, token: int) -> int:
        fd = os.pidfd_open(pid)
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
        why = self._refusal(pid)
        if why:
            raise GuestError("denied", why)
        try:
            fd = self._pidfd(pid, token)
        except ProcessLookupError:
            raise GuestError("not-found")
        try:
            signal.pidfd_send_signal(fd, SIGNALS[sig])
        except OSError as e:
            raise _os_error(f"signal PID {pid}", e)
        finally:
            os.close(fd)

    def wait_exit(self, pid: int, token: int, timeout_ms: int) -> bool:
        try:
            fd = self._pidfd(pid, token)
        except (ProcessLookupError, GuestError):
            return True
        try:
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
        try:
            st = os.lstat(path)
        except OSError as e:
            raise _os_error(path, e)
        import stat as S
        return {"uid": st.st_uid, "mode": st.st_mode & 0o7777, "symlink": S.S_ISLNK(st.st_mode)}

    def try_lock(self, path: str, wait_ms: int) -> Optional[int]:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise _os_error(path, e)
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
        os.close(held)
