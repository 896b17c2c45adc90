"""A simulated world for the conformance scenarios: in-memory processes and
sockets, a virtual clock that `wait-exit` advances, simulated locks. Files
stay real; only their owner is simulated. A process has a parent and a
group; when it exits its children are reparented to init and its sockets
close, unless it is a reloader's `respawn` child, which its parent replaces
(tests/conformance/README.md). Mirrors the Rust host's `pidman::simulated`."""

from __future__ import annotations

import os
import stat as S
import time
from typing import Any, Optional

from ._runtime import GuestError

OWN_PID, PARENT_PID, UID = 4000, 3999, 1000


class SimBackend:
    def __init__(self) -> None:
        self.now_ms = int(time.time() * 1000)
        self.processes: dict[int, dict[str, Any]] = {
            1: self.process(["/sbin/init"], self.now_ms - 86_400_000, 0, parent=0, group=1),
            PARENT_PID: self.process(["bash"], self.now_ms - 600_000, UID, group=PARENT_PID),
            OWN_PID: self.process(["pidman"], self.now_ms - 5, UID, parent=PARENT_PID,
                                  group=PARENT_PID),
        }
        self.sockets_: list[dict[str, Any]] = []
        self.signals: list[tuple[int, str]] = []
        self.locks_held_elsewhere: set[str] = set()
        self.locks: set[str] = set()
        self.file_owners: dict[str, int] = {}
        #: An error every `try_lock` answers (a WIT error case), if any.
        self.lock_error: Optional[str] = None

    @staticmethod
    def process(argv: list[str], start_ms: int, uid: int, zombie: bool = False,
                on_term: Optional[int] = 50, unkillable: bool = False, parent: int = 1,
                group: int = 0, session: int = 0, respawn: bool = False) -> dict[str, Any]:
        """`on_term`: ms until exit after SIGTERM, or None to ignore it.
        `group` 0: the process's own PID (set when it is added). `session`:
        its session (0: unknown; a session leader's is its own PID).
        `respawn`: a reloader's child, which its parent replaces when it
        exits."""
        return {"argv": argv, "start": start_ms, "uid": uid, "zombie": zombie,
                "on_term": on_term, "unkillable": unkillable, "exits_at": None,
                "parent": parent, "group": group, "session": session,
                "respawn": respawn, "termed": False}

    def add(self, pid: int, p: dict[str, Any]) -> None:
        """Add process `pid` (leading its own group unless it has one)."""
        p["group"] = p["group"] or pid
        self.processes[pid] = p

    def _advance(self, to_ms: int) -> None:
        self.now_ms = max(self.now_ms, to_ms)
        due = [(p["exits_at"], pid) for pid, p in self.processes.items()
               if not p["zombie"] and p["exits_at"] is not None and p["exits_at"] <= self.now_ms]
        for _, pid in sorted(due):
            self._exit(pid)

    def _exit(self, pid: int) -> None:
        """Process `pid` exits: a zombie now; its children go to init; its
        sockets close (their slot stays, on port 0: handles are indices),
        or pass to the replacement its parent starts."""
        p = self.processes[pid]
        p["zombie"] = True
        for child in self.processes.values():
            if child["parent"] == pid:
                child["parent"] = 1
        heir = self._respawn(p)
        for s in self.sockets_:
            if s["pid"] == pid:
                if heir is None:
                    s["port"] = 0
                else:
                    s["pid"] = heir

    def _respawn(self, p: dict[str, Any]) -> Optional[int]:
        """The replacement a reloader starts for its exited child `p` (the
        next free PID, same argv, parent, group and session, started now),
        when its parent still runs and was not sent SIGTERM."""
        parent = self.processes.get(p["parent"])
        if not p["respawn"] or p["parent"] == 1 or parent is None or parent["zombie"] \
                or parent["termed"]:
            return None
        heir = max(self.processes) + 1
        self.add(heir, self.process(list(p["argv"]), self.now_ms, p["uid"], on_term=p["on_term"],
                                    parent=p["parent"], group=p["group"],
                                    session=p["session"], respawn=True))
        return heir

    def _identified(self, pid: int, token: int) -> dict[str, Any]:
        p = self.processes.get(pid)
        if p is None:
            raise GuestError("not-found")
        if p["start"] != token:
            raise GuestError("changed")
        return p

    def own_pid(self) -> int:
        return OWN_PID

    def parent_pid(self) -> int:
        return PARENT_PID

    def own_uid(self) -> int:
        return UID

    def state(self, pid: int) -> str:
        p = self.processes.get(pid)
        return "gone" if p is None else ("zombie" if p["zombie"] else "running")

    def inspect(self, pid: int) -> dict[str, Any]:
        p = self.processes.get(pid)
        if p is None:
            raise GuestError("not-found")
        return {"pid": pid, "name": os.path.basename(p["argv"][0]) if p["argv"] else "",
                "argv": [] if p["zombie"] else list(p["argv"]), "start_time_ms": p["start"],
                "start_token": p["start"], "uid": p["uid"],
                "state": "zombie" if p["zombie"] else "running",
                "parent": p["parent"], "group": p["group"], "session": p["session"]}

    def snapshot(self) -> list[dict[str, Any]]:
        return [{"pid": pid, "parent": p["parent"], "group": p["group"], "start_token": p["start"],
                 "state": "zombie" if p["zombie"] else "running"}
                for pid, p in self.processes.items()]

    def send(self, pid: int, token: int, sig: str) -> None:
        if pid in (0, 1, OWN_PID, PARENT_PID):
            raise GuestError("denied", f"the host refuses to signal PID {pid}")
        p = self._identified(pid, token)
        if p["zombie"]:
            raise GuestError("not-found")
        if p["uid"] != UID:
            raise GuestError("denied", f"PID {pid} belongs to uid {p['uid']}")
        self.signals.append((pid, sig))
        if sig == "term":
            p["termed"] = True
            if p["on_term"] is not None:
                p["exits_at"] = self.now_ms + p["on_term"]
        elif sig == "kill" and not p["unkillable"]:
            self._exit(pid)
        # "cont": simulated processes are never stopped.

    def wait_exit(self, pid: int, token: int, timeout_ms: int) -> bool:
        try:
            p = self._identified(pid, token)
        except GuestError:
            return True
        if p["zombie"]:
            return True
        deadline = self.now_ms + timeout_ms
        if p["exits_at"] is not None and p["exits_at"] <= deadline:
            self._advance(p["exits_at"])
            return True
        self._advance(deadline)
        return False

    def clock_ms(self) -> int:
        """The virtual clock, the one `wait_exit` advances."""
        return self.now_ms

    def sockets(self, port: int, listening: bool) -> list[dict[str, Any]]:
        return [{"ipv6": s["ipv6"], "local_address": "::" if s["ipv6"] else "127.0.0.1",
                 "state": "listen" if s["listening"] else "established", "uid": s["uid"],
                 "handle": i + 1}
                for i, s in enumerate(self.sockets_)
                if s["port"] == port and s["listening"] == listening]

    def socket_owner(self, handle: int) -> Optional[int]:
        if 1 <= handle <= len(self.sockets_):
            pid: Optional[int] = self.sockets_[handle - 1]["pid"]
            return pid
        return None

    def file_owner(self, path: str) -> dict[str, Any]:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise GuestError("not-found")
        return {"uid": self.file_owners.get(path, UID), "mode": st.st_mode & 0o7777,
                "symlink": S.S_ISLNK(st.st_mode)}

    def try_lock(self, path: str, wait_ms: int) -> Optional[str]:
        if self.lock_error:
            raise GuestError(self.lock_error, "simulated")
        if path in self.locks_held_elsewhere or path in self.locks:
            return None
        self.locks.add(path)
        return path

    def release(self, held: str) -> None:
        self.locks.discard(held)
