"""Load the pidman plugin component with wasmtime-py and bind its imports
to a backend (the real OS, or a simulated world). The plugin decides; this
module only converts values and forwards calls."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import wasmtime
from wasmtime import component as c

from . import _cache

PACKAGE = "bengal:pid-manager/{}@0.1.0"
LOCK_TYPE = 1
FUEL_PER_CALL = 1_000_000_000
MEMORY_LIMIT = 64 << 20
# The wall-clock budget of a call (plus the call's own timeout, for the
# exports that take one), as the Rust host's default; guest code is
# interrupted by an epoch deadline, blocking imports are clamped to what is
# left. (A WASI sleep inside wasmtime cannot be clamped from Python.)
DEFAULT_BUDGET_S = 10.0
EPOCH_TICK_S = 0.01
# The position of the timeout argument (ms) of the exports that take one.
TIMEOUT_ARG = {"kill-stale-process": 1, "clear-stale": 3}


class PIDManError(Exception):
    """Anything pidman could not do; the two kinds below say why."""


class GuestError(PIDManError):
    """The plugin's answer was an error: a case of the WIT `error` variant
    (`kind` is its name: `denied`, `invalid`, `untrusted`, `io`, ...). The
    operation had no effect beyond what the message says."""

    def __init__(self, kind: str, message: Optional[str] = None):
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind = kind
        self.message = message


class PluginTrap(PIDManError):
    """The plugin trapped (a bug; out of fuel, memory or time): no decision
    was made, and its instance is dropped (the next call makes a new one)."""


def record(**fields: Any) -> c.Record:
    """A WIT record; field names in Python style become kebab-case."""
    r = c.Record()
    for name, value in fields.items():
        setattr(r, name.replace("_", "-"), value)
    return r


def _start_ticker(engine: wasmtime.Engine) -> None:
    """Advance `engine`'s epoch every EPOCH_TICK_S, for the process's life."""
    def tick() -> None:
        while True:
            time.sleep(EPOCH_TICK_S)
            engine.increment_epoch()
    threading.Thread(target=tick, name="pidman-epoch", daemon=True).start()


def _trap_cause(text: str) -> str:
    """One line for a trap: wasmtime's cause ("all fuel consumed ..."), not
    the backtrace's heading."""
    if "interrupt" in text:
        return "the plugin ran past its time budget and was stopped"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Caused by:" in lines and lines.index("Caused by:") + 1 < len(lines):
        return lines[lines.index("Caused by:") + 1]
    return lines[-1] if lines else "the plugin trapped"


def _answer(call: Callable[[], Any]) -> Any:
    """A backend's result as a WIT `result`: a GuestError becomes the
    `error` variant's case."""
    try:
        return call()
    except GuestError as e:
        return c.Variant(e.kind, e.message)


def _unwrap(value: Any) -> Any:
    """An export's `result<T, error>` as T, raising GuestError for an error.
    (wasmtime-py tags a result only when its cases' Python types overlap.)"""
    if isinstance(value, c.Variant):
        if value.tag == "ok":
            return value.payload
        if value.tag == "err":
            value = value.payload
        raise GuestError(value.tag, value.payload)
    return value


MAX_PLUGIN_BYTES = 16 << 20
MAX_SESSIONS = 16
_DEFAULT: Any = object()


def _runtime_tag() -> str:
    """What a compiled component depends on besides itself: wasmtime-py's
    native library (its path, size and time change with every install) and
    the engine's configuration."""
    from wasmtime import _ffi

    st = os.stat(_ffi.filename)
    return f"{_ffi.filename}:{st.st_size}:{st.st_mtime_ns}:fuel,epoch"


def _read_plugin(path: str) -> bytes:
    """A plugin file: a regular file (opened without blocking: a FIFO cannot
    hang the caller) of at most MAX_PLUGIN_BYTES."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise PIDManError(f"the plugin {path} is not a regular file")
        if st.st_size > MAX_PLUGIN_BYTES:
            raise PIDManError(f"the plugin {path} is over {MAX_PLUGIN_BYTES >> 20} MiB")
        return f.read(MAX_PLUGIN_BYTES + 1)


def _load(engine: wasmtime.Engine, wasm_path: str, cache_dir: Any) -> c.Component:
    """Compile the plugin, or deserialize its compiled form from the cache."""
    wasm = _read_plugin(wasm_path)
    directory = _cache.default_dir() if cache_dir is _DEFAULT else cache_dir
    directory = _cache.trusted_dir(Path(directory)) if directory else None
    if directory is None:
        return c.Component(engine, wasm)
    entry = directory / _cache.key(wasm, _runtime_tag())
    compiled = _cache.read(entry)
    if compiled is not None:
        try:
            return c.Component.deserialize(engine, compiled)
        except wasmtime.WasmtimeError:
            pass
    component = c.Component(engine, wasm)
    _cache.write(entry, bytes(component.serialize()))
    return component


class _Session:
    """One instance of the plugin, with the one directory it may use."""

    def __init__(self, store: wasmtime.Store, instance: Any, manager: Any):
        self.store = store
        self.instance = instance
        self.manager = manager
        self.funcs: dict[str, Any] = {}

    def func(self, export: str) -> Any:
        found = self.funcs.get(export)
        if found is None:
            index = self.instance.get_export_index(self.store, export, self.manager)
            found = self.funcs[export] = self.instance.get_func(self.store, index)
        return found


class Plugin:
    """One compiled plugin (compiled once, through the cache) and one
    instance of it per directory it may use: the instance is kept across
    calls, and dropped when it traps."""

    def __init__(self, wasm_path: str, cache_dir: Any = _DEFAULT):
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        self.engine = wasmtime.Engine(config)
        self.component = _load(self.engine, wasm_path, cache_dir)
        self.linker = c.Linker(self.engine)
        self.linker.add_wasip2()
        self.backend: Any = None
        self.budget_s = DEFAULT_BUDGET_S
        self._deadline = float("inf")
        _start_ticker(self.engine)
        self.grant_dir = "/nonexistent"
        self._locks: dict[int, Any] = {}
        self._next_lock = 1
        self._sessions: dict[str, _Session] = {}
        self.log: list[str] = []
        self._define()

    def _define(self) -> None:
        root = self.linker.root()
        b = lambda: self.backend  # noqa: E731 - the backend of the current call
        with root.add_instance(PACKAGE.format("process-table")) as i:
            i.add_func("own-pid", lambda s: b().own_pid())
            i.add_func("parent-pid", lambda s: b().parent_pid())
            i.add_func("own-uid", lambda s: b().own_uid())
            i.add_func("state", lambda s, pid: _answer(lambda: b().state(pid)))
            i.add_func("inspect", lambda s, pid: _answer(lambda: record(**b().inspect(pid))))
            i.add_func("snapshot", lambda s: _answer(
                lambda: [record(**entry) for entry in b().snapshot()]))
        with root.add_instance(PACKAGE.format("signals")) as i:
            i.add_func("send", lambda s, target, sig: _answer(
                lambda: b().send(target.pid, getattr(target, "start-token"), sig)))
            i.add_func("wait-exit", lambda s, target, ms: _answer(
                lambda: b().wait_exit(target.pid, getattr(target, "start-token"), self._clamp(ms))))
            i.add_func("clock-ms", lambda s: b().clock_ms())
        with root.add_instance(PACKAGE.format("ports")) as i:
            i.add_func("sockets", lambda s, port, listening: _answer(
                lambda: [record(**sock) for sock in b().sockets(port, listening)]))
            # result<option<pid>, error> is untagged in wasmtime-py and cannot
            # carry an error: an unreadable owner is "not visible" (none).
            i.add_func("owner", lambda s, handle: self._quiet(lambda: b().socket_owner(handle)))
        with root.add_instance(PACKAGE.format("files")) as i:
            i.add_resource("lock", c.ResourceType.host(LOCK_TYPE), self._release)
            i.add_func("owner", lambda s, path: _answer(
                lambda: record(**b().file_owner(self._granted(path)))))
            i.add_func("try-lock", lambda s, path, wait_ms: self._try_lock(path, wait_ms))
        with root.add_instance(PACKAGE.format("log")) as i:
            i.add_func("emit", lambda s, level, message: self.log.append(f"{level}: {message}"))

    @staticmethod
    def _quiet(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except GuestError:
            return None

    def _clamp(self, ms: int) -> int:
        """A wait of `ms`, clamped to what is left of the call's budget."""
        left = max(0.0, self._deadline - time.monotonic())
        return int(min(ms, left * 1000))

    def _granted(self, path: str) -> str:
        """`path` when it names an entry below the granted directory
        (absolute, no `.` or `..` steps); else the WIT `denied` error."""
        parts = path.split("/")
        plain = path.startswith("/") and not any(p in ("", ".", "..") for p in parts[1:])
        if plain and path.startswith(self.grant_dir + "/"):
            return path
        raise GuestError("denied", f"{path} is outside the directory granted to the plugin"
                         f" ({self.grant_dir})")

    def _try_lock(self, path: str, wait_ms: int) -> Any:
        # Same untagged-result limit as `owner`: a lock that cannot be taken
        # for any reason (outside the grant included) is reported as held by
        # someone the lock does not name, so the plugin changes nothing.
        try:
            held = self.backend.try_lock(self._granted(path), self._clamp(wait_ms))
        except GuestError:
            return None
        if held is None:
            return None
        rep = self._next_lock
        self._next_lock += 1
        self._locks[rep] = held
        return c.ResourceHost.own(rep, LOCK_TYPE)

    def _release(self, store: Any, rep: int) -> None:
        held = self._locks.pop(rep, None)
        if held is not None:
            self.backend.release(held)

    def _session(self, grant_dir: str) -> _Session:
        session = self._sessions.get(grant_dir)
        if session is None:
            if len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
            store = wasmtime.Store(self.engine)
            store.set_limits(memory_size=MEMORY_LIMIT)
            wasi = wasmtime.WasiConfig()
            wasi.preopen_dir(grant_dir, grant_dir)
            store.set_wasi(wasi)
            store.set_fuel(FUEL_PER_CALL)
            store.set_epoch_deadline(max(1, int(self.budget_s / EPOCH_TICK_S)))
            instance = self.linker.instantiate(store, self.component)
            manager = instance.get_export_index(store, PACKAGE.format("manager"))
            session = self._sessions[grant_dir] = _Session(store, instance, manager)
        return session

    def call(self, backend: Any, grant_dir: str, export: str, *args: Any) -> Any:
        """Call `export` of the manager interface on `backend`, in the
        instance for `grant_dir`, unwrapping its result (GuestError for the
        error variant, PluginTrap for a trap, which also drops the instance)."""
        self.backend = backend
        self.grant_dir = grant_dir.rstrip("/") or "/"
        self.log = []
        own = args[TIMEOUT_ARG[export]] if export in TIMEOUT_ARG else None
        budget = self.budget_s + (own or 0) / 1000
        self._deadline = time.monotonic() + budget
        try:
            session = self._session(grant_dir)
            store = session.store
            store.set_fuel(FUEL_PER_CALL)
            store.set_epoch_deadline(max(1, int(budget / EPOCH_TICK_S)))
            func = session.func(export)
            result = func(store, *args)
            func.post_return(store)
        except wasmtime.WasmtimeError as e:
            self._sessions.pop(grant_dir, None)
            raise PluginTrap(_trap_cause(str(e))) from e
        return _unwrap(result)
