"""pidman for Python: Bengal's PID-manager API, decided by the pidman plugin
component (the same `.wasm` the Rust host runs), loaded with wasmtime-py.

    from pathlib import Path
    from pidman_wasm import PIDManager

    pid_file = PIDManager.get_pid_file(Path.cwd())
    stale = PIDManager.check_stale_pid(pid_file)
    if stale:
        PIDManager.kill_stale_process(stale)
    with PIDManager.acquire(pid_file):
        serve()  # the PID file names this process until the block ends

The plugin ships inside the package; `$PIDMAN_WASM` names another build.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Union

from ._runtime import GuestError, HostLock, PIDManError, Plugin, PluginTrap

__all__ = [
    "Claim",
    "Cleared",
    "GuestError",
    "LineageEntry",
    "PIDFileHeld",
    "PIDManError",
    "PIDManager",
    "Plugin",
    "PluginTrap",
    "PortDescription",
    "PortHolder",
    "Preflight",
    "TreeMember",
    "backend_name",
    "plugin_path",
    "resolve",
]

PathLike = Union[str, "os.PathLike[str]"]


def _backend_class() -> tuple[str, Callable[[], Any]]:
    """The real backend of this system, chosen once at import:
    `$PIDMAN_PY_BACKEND` (`linux` or `psutil`), else /proc on Linux and
    psutil on macOS, Windows and the rest. Only the chosen one is imported
    (the Linux one touches Linux-only APIs)."""
    choice = os.environ.get("PIDMAN_PY_BACKEND") or (
        "linux" if sys.platform.startswith("linux") else "psutil")
    if choice == "linux":
        if sys.platform == "linux":
            from .linux import LinuxBackend

            return choice, LinuxBackend
        raise ImportError("PIDMAN_PY_BACKEND=linux: the Linux backend runs on Linux only")
    if choice == "psutil":
        from .portable import PsutilBackend

        return choice, PsutilBackend
    raise ImportError(f"PIDMAN_PY_BACKEND={choice!r}: the backends are 'linux' and 'psutil'")


_BACKEND_NAME, _Backend = _backend_class()


def backend_name() -> str:
    """Which real backend this process uses: "linux" or "psutil"."""
    return _BACKEND_NAME


# --- arguments -----------------------------------------------------------
# wasmtime-py lowers a Python int into a WIT u16/u32/u64 modulo its size
# (port 70000 would be port 4464), so every number is checked here first.

MAX_U32 = (1 << 32) - 1
#: The longest timeout, in seconds: what a u32 of milliseconds holds
#: (about 49.7 days).
MAX_TIMEOUT_S = MAX_U32 / 1000


def _integer(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return int(value)


def _pid(value: object, what: str = "pid") -> int:
    """A PID argument: an int from 0 to 2^32-1 (the plugin refuses 0 and
    anything past the largest PID itself, with its own reason)."""
    pid = _integer(value, what)
    if not 0 <= pid <= MAX_U32:
        raise ValueError(f"{what} {pid} is out of range (0 to {MAX_U32})")
    return pid


def _port(value: object) -> int:
    """A TCP port argument: an int from 1 to 65535."""
    port = _integer(value, "port")
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range (1 to 65535)")
    return port


def _timeout_ms(value: object) -> int:
    """A timeout in seconds (int or float, finite, 0 to MAX_TIMEOUT_S) as
    whole milliseconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError(f"timeout must be a finite number of seconds, not {value}")
    if not 0 <= seconds <= MAX_TIMEOUT_S:
        raise ValueError(f"timeout {value} s is out of range (0 to {MAX_TIMEOUT_S} s)")
    return int(seconds * 1000)


def _warn(message: str, *args: object) -> None:
    """A warning on the `pidman` logger (imported only when there is one to
    give: `logging` costs a fresh process more than a check does)."""
    import logging

    logging.getLogger("pidman").warning(message, *args)


def plugin_path() -> str:
    """The plugin component: `$PIDMAN_WASM`, else the one in this package."""
    override = os.environ.get("PIDMAN_WASM")
    if override:
        return override
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "pidman.wasm")


def resolve(pid_file: PathLike) -> tuple[str, str]:
    """(the directory to preopen, the PID file's path as the plugin sees it):
    the file's directory, or while it does not exist its nearest existing
    ancestor, so that the plugin can create it."""
    absolute = os.path.abspath(pid_file)
    missing = [os.path.basename(absolute)]
    d = os.path.dirname(absolute)
    while not os.path.isdir(d):
        missing.append(os.path.basename(d))
        d = os.path.dirname(d)
    grant = os.path.realpath(d)
    return grant, os.path.join(grant, *reversed(missing))


class PIDFileHeld(PIDManError):
    """`acquire` found the PID file claimed: `holder` is the live server's
    PID (None while another pidman is in the middle of a claim)."""

    def __init__(self, pid_file: str, holder: Optional[int]):
        who = f"live server {holder}" if holder is not None else "another pidman"
        super().__init__(f"{pid_file} is held by {who}")
        self.pid_file = pid_file
        self.holder = holder


class Claim:
    """A claimed PID file: it names `pid` and its lock is held until
    `release()` (or the end of the `with` block), which removes the file if
    it still names `pid`.

    A claim belongs to the process that took it: in a forked child,
    `release()` (and leaving the `with` block) does nothing, and the
    parent's claim stays whole. It does not depend on the plugin instance
    that took it: one that trapped or was dropped since does not matter."""

    def __init__(self, pid_file: str, grant: str, lock: HostLock, pid: int,
                 plugin: Plugin):
        self.pid_file = pid_file
        self.pid = pid
        self._grant = grant
        self._lock: Optional[HostLock] = lock
        self._plugin = plugin
        self._owner = os.getpid()
        self._mutex = threading.Lock()

    @property
    def held(self) -> bool:
        """Whether this process still holds the claim."""
        return (self._lock is not None and self._owner == os.getpid()
                and self._plugin.holds_lock(self._lock))

    def release(self) -> bool:
        """End the claim: remove the file (if it still names the PID) and
        release the lock. Returns whether the file was removed. Once only;
        in a forked child, nothing (the claim is the parent's)."""
        with self._mutex:
            lock, self._lock = self._lock, None
        if lock is None or self._owner != os.getpid():
            return False
        try:
            return bool(self._plugin.call(_Backend(), self._grant, "release", lock,
                                          self.pid_file, self.pid))
        except PluginTrap:
            # The plugin could not decide about the file: the lock is let
            # go all the same (the file, if it still names the PID, is a
            # dead claimant's once this process exits).
            self._plugin.drop_lock(lock)
            raise

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class TreeMember(NamedTuple):
    """One process of a server's tree: the server, or a descendant (or a
    member of the process group its claim recorded)."""

    pid: int
    #: Its start token: the member is this very process, not a later one
    #: with the same PID.
    start_token: int
    #: Its parent's PID, as the snapshot read it.
    parent: int
    command: str


class LineageEntry(NamedTuple):
    """One process of a port holder's ancestry."""

    pid: int
    command: str
    #: "other", "bengal" (a Bengal serve process) or "claimed" (the server
    #: the PID file's claim names).
    role: str


class PortHolder(NamedTuple):
    """The process holding a port, and the processes above it."""

    #: Whether it listens (else it holds another socket on the port).
    listening: bool
    #: The holder first, then its parents, nearest first, up to the
    #: topmost that is a server pidman acts on (else up to init).
    lineage: list[LineageEntry]
    #: The claimed server, now gone, whose process group the holder
    #: belongs to (an orphan of `pidman run`'s server): its PID.
    orphan_of: Optional[int]


class PortDescription(NamedTuple):
    """Who holds a port (`describe_port`)."""

    port: int
    #: "free", "held" (by `holder`) or "unknown" (by a process of `uid`
    #: that cannot be seen).
    state: str
    holder: Optional[PortHolder]
    uid: Optional[int]


class Preflight(NamedTuple):
    """The dev-server start check's answer."""

    pid_file: str
    #: "clear", "stale-server" or "port-busy".
    verdict: str
    #: The live server in the way (from the PID file or the port), if any.
    server_pid: Optional[int]
    server_command: Optional[str]
    #: Whether that server is claimed by a running pidman (managed).
    claimed: bool
    #: The program on the port when it is not the server: (PID, command);
    #: PID None when it is another user's and cannot be seen.
    port_holder: Optional[tuple[Optional[int], str]]
    #: The tree stopping the server would stop, the server first (empty
    #: when there is no server).
    tree: list[TreeMember] = []
    #: The process group the server's claim recorded, if any.
    server_group: Optional[int] = None
    #: "unchecked", "free", "held-by-server", "held-by-other" or
    #: "held-by-unknown".
    port: str = "unchecked"
    #: Who holds the port, with its ancestry, when a visible process does.
    holder: Optional[PortHolder] = None
    #: The plugin's own record of the server, which `clear_stale` hands
    #: back to it (None when there is no server).
    server_record: Any = None


class Cleared(NamedTuple):
    """What `clear_stale` did."""

    #: How the server itself ended: "already-gone", "terminated" or
    #: "killed".
    outcome: str
    #: Every member of its tree and how it ended: (PID, command, outcome),
    #: the server first.
    members: list[tuple[int, str, str]]
    #: The port afterwards, as in `Preflight.port`.
    port: str


def _tree_member(member: Any) -> TreeMember:
    return TreeMember(member.identity.pid, getattr(member.identity, "start-token"),
                      member.parent, member.command)


def _port_holder(holder: Any) -> PortHolder:
    orphan = getattr(holder, "orphan-of")
    return PortHolder(
        listening=bool(holder.listening),
        lineage=[LineageEntry(e.pid, e.command, e.role) for e in holder.lineage],
        orphan_of=orphan.pid if orphan is not None else None,
    )


def _status_holder(status: Any) -> Optional[PortHolder]:
    """The port-holder a port status carries (held by the server or by
    another program), if any."""
    if status.tag in ("held-by-server", "held-by-other"):
        return _port_holder(status.payload)
    return None


class PIDManager:
    """Bengal's PID-manager API with Bengal's names and return types, and
    the claim a Python server needs to hold its PID file."""

    _plugin: Optional[Plugin] = None
    _plugin_lock = threading.Lock()

    @classmethod
    def _plugin_instance(cls) -> Plugin:
        plugin = cls._plugin
        if plugin is None:
            with cls._plugin_lock:
                if cls._plugin is None:
                    cls._plugin = Plugin(plugin_path())
                plugin = cls._plugin
        return plugin

    @classmethod
    def _plugin_call(cls, grant: str, export: str, *args: object) -> Any:
        return cls._plugin_instance().call(_Backend(), grant, export, *args)

    @classmethod
    def _call(cls, pid_file: Optional[PathLike], export: str, *args: object) -> Any:
        if pid_file is None:
            return cls._plugin_call(os.path.realpath(os.getcwd()), export, *args)
        grant, path = resolve(pid_file)
        return cls._plugin_call(grant, export, path, *args)

    # --- the seed's API --------------------------------------------------

    @staticmethod
    def get_pid_file(project_root: PathLike) -> Path:
        """`<project_root>/.bengal.pid`."""
        return Path(project_root) / ".bengal.pid"

    @classmethod
    def is_bengal_process(cls, pid: int) -> bool:
        """Whether `pid` runs a Bengal serve command (False when unreadable)."""
        return bool(cls._call(None, "is-bengal-process", _pid(pid)))

    @classmethod
    def check_stale_pid(cls, pid_file: PathLike) -> Optional[int]:
        """The PID of the live server that owns `pid_file`, or None; a file
        that cannot be a live server's is removed. A file pidman will not
        read (a FIFO, another user's, over 64 bytes) is kept, with a warning."""
        try:
            return cls._call(pid_file, "check-stale-pid")  # type: ignore[no-any-return]
        except GuestError as e:
            _warn("pidman: cannot check %s: %s", pid_file, e)
            return None

    @classmethod
    def kill_stale_process(cls, pid: int, timeout: float = 5.0) -> bool:
        """SIGTERM to `pid` and its whole tree (the root first), wait up to
        `timeout` seconds, SIGKILL the survivors: True once all are gone."""
        pid, timeout_ms = _pid(pid), _timeout_ms(timeout)
        try:
            cls._call(None, "kill-stale-process", pid, timeout_ms)
            return True
        except GuestError as e:
            _warn("pidman: PID %s not stopped: %s", pid, e)
            return False

    @classmethod
    def plan_stop(cls, pid: int) -> list[TreeMember]:
        """The tree `kill_stale_process(pid)` would stop now, the root
        first; nothing is signalled. Empty when `pid` does not run;
        GuestError where the kill would be refused."""
        return [_tree_member(m) for m in cls._call(None, "plan-stop", _pid(pid))]

    @classmethod
    def write_pid_file(cls, pid_file: PathLike) -> None:
        """Write this process's PID to `pid_file`, atomically (a warning,
        and nothing lost, when it cannot)."""
        try:
            cls._call(pid_file, "write-pid-file", os.getpid())
        except GuestError as e:
            _warn("pidman: could not write PID file %s: %s", pid_file, e)

    @classmethod
    def get_process_on_port(cls, port: int) -> Optional[int]:
        """The PID listening on TCP `port` (else holding a socket on it)."""
        port = _port(port)
        owner = cls._call(None, "get-process-on-port", port)
        if owner.tag in ("listener", "holder"):
            return owner.payload  # type: ignore[no-any-return]
        if owner.tag == "unknown":
            _warn("pidman: port %s is in use by a process of uid %s that cannot be seen",
                        port, owner.payload)
        return None

    @classmethod
    def describe_port(cls, port: int, pid_file: Optional[PathLike] = None) -> PortDescription:
        """Who holds TCP `port`, with the holder's ancestry; with `pid_file`,
        the server its claim names is recognised too (role "claimed")."""
        port = _port(port)
        if pid_file is None:
            described = cls._call(None, "describe-port", port, None)
        else:
            grant, path = resolve(pid_file)
            described = cls._plugin_call(grant, "describe-port", port, path)
        # wasmtime-py leaves this variant untagged: free is None, unknown
        # the uid, held the port-holder record.
        if described is None:
            return PortDescription(port, "free", None, None)
        if isinstance(described, int):
            return PortDescription(port, "unknown", None, described)
        return PortDescription(port, "held", _port_holder(described), None)

    # --- holding the file --------------------------------------------------

    @classmethod
    def acquire(cls, pid_file: PathLike, pid: Optional[int] = None) -> Claim:
        """Claim `pid_file` for `pid` (default: this process) unless a live
        server holds it (PIDFileHeld). Use the claim as a context manager:
        the lock is held, and the file names the PID, until it ends."""
        pid = os.getpid() if pid is None else _pid(pid)
        grant, path = resolve(pid_file)
        plugin = cls._plugin_instance()
        claim = plugin.call(_Backend(), grant, "acquire", path, pid)
        # wasmtime-py leaves the `claim` variant untagged: a held claim is
        # its `holder` record, a granted one the lock (as the host's handle).
        if hasattr(claim, "pid"):
            raise PIDFileHeld(path, claim.pid)
        return Claim(path, grant, claim, pid, plugin)

    @classmethod
    def remove(cls, pid_file: PathLike) -> bool:
        """Clean shutdown: remove `pid_file` unless it names another live
        server (GuestError `denied`, and the file is kept)."""
        return bool(cls._call(pid_file, "remove-pid-file", None))

    @classmethod
    def preflight(cls, pid_file: PathLike, port: Optional[int] = None) -> Preflight:
        """The dev-server start check: a stale server from `pid_file`, else
        the server above the process holding `port` (the topmost Bengal or
        claimed process of its ancestry); its tree; and who holds `port`."""
        report = cls._call(pid_file, "preflight", None if port is None else _port(port))
        server = report.server
        holder = None
        if report.port.tag == "held-by-other":
            top = report.port.payload.lineage[0]
            holder = (top.pid, top.command)
        elif report.port.tag == "held-by-unknown":
            holder = (None, f"a process of uid {report.port.payload}")
        return Preflight(
            pid_file=getattr(report, "pid-file"),
            verdict=report.verdict,
            server_pid=server.identity.pid if server is not None else None,
            server_command=server.command if server is not None else None,
            claimed=bool(server is not None and server.claimed),
            port_holder=holder,
            tree=[_tree_member(m) for m in server.tree] if server is not None else [],
            server_group=server.group if server is not None else None,
            port=report.port.tag,
            holder=_status_holder(report.port),
            server_record=server,
        )

    @classmethod
    def clear_stale(cls, report: Preflight, port: Optional[int] = None,
                    timeout: float = 5.0) -> Cleared:
        """Stop the server `preflight` found (`report`) and its tree as it
        is now (only while the server is still that very process), remove
        the PID file if it names it, and look at `port` again. GuestError
        `changed` when the PID is another process's now; ValueError when
        `report` names no server."""
        if report.server_record is None:
            raise ValueError(f"the preflight of {report.pid_file} found no server to clear")
        port = None if port is None else _port(port)
        timeout_ms = _timeout_ms(timeout)
        grant, path = resolve(report.pid_file)
        cleared = cls._plugin_call(grant, "clear-stale", path, report.server_record, port,
                                   timeout_ms)
        stopped = cleared.stopped
        return Cleared(
            outcome=stopped.outcome,
            members=[(m.pid, m.command, m.outcome) for m in stopped.members],
            port=cleared.port.tag,
        )
