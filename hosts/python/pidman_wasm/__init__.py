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

import os
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

from ._runtime import GuestError, PIDManError, Plugin, PluginTrap
from .linux import LinuxBackend

__all__ = [
    "Claim",
    "GuestError",
    "PIDFileHeld",
    "PIDManError",
    "PIDManager",
    "Plugin",
    "PluginTrap",
    "Preflight",
    "plugin_path",
    "resolve",
]

PathLike = Union[str, "os.PathLike[str]"]


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
    it still names `pid`."""

    def __init__(self, pid_file: str, grant: str, lock: Any, pid: int):
        self.pid_file = pid_file
        self.pid = pid
        self._grant = grant
        self._lock = lock

    def release(self) -> bool:
        """End the claim: remove the file (if it still names the PID) and
        release the lock. Returns whether the file was removed."""
        lock, self._lock = self._lock, None
        if lock is None:
            return False
        return bool(PIDManager._plugin_call(self._grant, "release", lock, self.pid_file, self.pid))

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


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


class PIDManager:
    """Bengal's PID-manager API with Bengal's names and return types, and
    the claim a Python server needs to hold its PID file."""

    _plugin: Optional[Plugin] = None

    @classmethod
    def _plugin_instance(cls) -> Plugin:
        if cls._plugin is None:
            cls._plugin = Plugin(plugin_path())
        return cls._plugin

    @classmethod
    def _plugin_call(cls, grant: str, export: str, *args: object) -> Any:
        return cls._plugin_instance().call(LinuxBackend(), grant, export, *args)

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
        return bool(cls._call(None, "is-bengal-process", pid))

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
        """SIGTERM, wait up to `timeout` seconds, SIGKILL: True once gone."""
        try:
            cls._call(None, "kill-stale-process", pid, int(timeout * 1000))
            return True
        except GuestError as e:
            _warn("pidman: PID %s not stopped: %s", pid, e)
            return False

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
        owner = cls._call(None, "get-process-on-port", port)
        if owner.tag in ("listener", "holder"):
            return owner.payload  # type: ignore[no-any-return]
        if owner.tag == "unknown":
            _warn("pidman: port %s is in use by a process of uid %s that cannot be seen",
                        port, owner.payload)
        return None

    # --- holding the file --------------------------------------------------

    @classmethod
    def acquire(cls, pid_file: PathLike, pid: Optional[int] = None) -> Claim:
        """Claim `pid_file` for `pid` (default: this process) unless a live
        server holds it (PIDFileHeld). Use the claim as a context manager:
        the lock is held, and the file names the PID, until it ends."""
        pid = os.getpid() if pid is None else pid
        grant, path = resolve(pid_file)
        claim = cls._plugin_call(grant, "acquire", path, pid)
        # wasmtime-py leaves the `claim` variant untagged: a held claim is
        # its `holder` record, a granted one the lock resource.
        if hasattr(claim, "pid"):
            raise PIDFileHeld(path, claim.pid)
        return Claim(path, grant, claim, pid)

    @classmethod
    def remove(cls, pid_file: PathLike) -> bool:
        """Clean shutdown: remove `pid_file` unless it names another live
        server (GuestError `denied`, and the file is kept)."""
        return bool(cls._call(pid_file, "remove-pid-file", None))

    @classmethod
    def preflight(cls, pid_file: PathLike, port: Optional[int] = None) -> Preflight:
        """The dev-server start check: a stale server from `pid_file`, else a
        Bengal server listening on `port`; and who holds `port`."""
        report = cls._call(pid_file, "preflight", port)
        server = report.server
        holder = None
        if report.port.tag == "held-by-other":
            holder = (report.port.payload.pid, report.port.payload.command)
        elif report.port.tag == "held-by-unknown":
            holder = (None, f"a process of uid {report.port.payload}")
        return Preflight(
            pid_file=getattr(report, "pid-file"),
            verdict=report.verdict,
            server_pid=server.identity.pid if server is not None else None,
            server_command=server.command if server is not None else None,
            claimed=bool(server is not None and server.claimed),
            port_holder=holder,
        )
