"""pidman for Python: Bengal's seed PID-manager API, decided by the same
pidman plugin component that the Rust host runs (loaded with wasmtime-py).

    from pidman_wasm import PIDManager
    pid_file = PIDManager.get_pid_file(project_root)
    stale = PIDManager.check_stale_pid(pid_file)
    if stale:
        PIDManager.kill_stale_process(stale)
    PIDManager.write_pid_file(pid_file)

The plugin is the file named by $PIDMAN_WASM (a `pidman_guest.wasm` build).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Union

from ._runtime import GuestError, Plugin, PluginTrap
from .linux import LinuxBackend

__all__ = ["PIDManager", "GuestError", "PluginTrap", "Plugin", "resolve"]


def resolve(pid_file: "PathLike") -> tuple[str, str]:
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

log = logging.getLogger("pidman")
PathLike = Union[str, "os.PathLike[str]"]


class PIDManager:
    """The seed's static API, with the seed's names."""

    _plugin: Optional[Plugin] = None

    @classmethod
    def _plugin_instance(cls) -> Plugin:
        if cls._plugin is None:
            wasm = os.environ.get("PIDMAN_WASM")
            if not wasm:
                raise RuntimeError("set PIDMAN_WASM to the pidman plugin (pidman_guest.wasm)")
            cls._plugin = Plugin(wasm)
        return cls._plugin

    @classmethod
    def _call(cls, pid_file: Optional[PathLike], export: str, *args: object) -> object:
        if pid_file is None:
            grant = os.path.realpath(os.getcwd())
            return cls._plugin_instance().call(LinuxBackend(), grant, export, *args)
        grant, path = resolve(pid_file)
        return cls._plugin_instance().call(LinuxBackend(), grant, export, path, *args)

    @staticmethod
    def get_pid_file(project_root: PathLike) -> Path:
        return Path(project_root) / ".bengal.pid"

    @classmethod
    def is_bengal_process(cls, pid: int) -> bool:
        return bool(cls._call(None, "is-bengal-process", pid))

    @classmethod
    def check_stale_pid(cls, pid_file: PathLike) -> Optional[int]:
        try:
            return cls._call(pid_file, "check-stale-pid")  # type: ignore[return-value]
        except GuestError as e:
            log.warning("pidman: cannot check %s: %s", pid_file, e)
            return None

    @classmethod
    def kill_stale_process(cls, pid: int, timeout: float = 5.0) -> bool:
        try:
            cls._call(None, "kill-stale-process", pid, int(timeout * 1000))
            return True
        except GuestError as e:
            log.warning("pidman: PID %s not stopped: %s", pid, e)
            return False

    @classmethod
    def write_pid_file(cls, pid_file: PathLike) -> None:
        cls._call(pid_file, "write-pid-file", None)

    @classmethod
    def get_process_on_port(cls, port: int) -> Optional[int]:
        owner = cls._call(None, "get-process-on-port", port)
        if owner.tag in ("listener", "holder"):  # type: ignore[attr-defined]
            return owner.payload  # type: ignore[attr-defined]
        if owner.tag == "unknown":  # type: ignore[attr-defined]
            log.warning("pidman: port %s is in use by a process of uid %s that cannot be seen",
                        port, owner.payload)  # type: ignore[attr-defined]
        return None
