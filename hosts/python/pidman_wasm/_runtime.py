"""Load the pidman plugin component with wasmtime-py and bind its imports
to a backend (the real OS, or a simulated world). The plugin decides; this
module only converts values and forwards calls, and applies the host's own
rules whatever the plugin asks and whatever the backend: the one directory
the plugin may touch (`granted`), the processes it may never signal
(`signal_refusal`), and the time a call may take.

Threads: a wasmtime store may be entered by one thread at a time, and an
instance never by a call made while it is already on the stack. So each
call takes an instance of its own from a pool (one per directory, reused
across calls, made anew while all are busy): any number of threads call at
once, and a backend's callback may itself call pidman, without a lock held
across a call into the plugin. The state of a call (its backend, its
grant, its deadline) lives on the calling thread, where its callbacks run.

Fork: wasmtime's WASI runs file operations on a process-wide tokio thread
pool, whose threads do not survive `fork`: a child's first file operation
through the parent's copy of the library waits forever for a thread that
is not there. A forked child therefore loads a private copy of wasmtime's
native library (its own runtime) and makes new instances from it; the
parent's are left untouched (see `_fresh_wasmtime`)."""

from __future__ import annotations

import itertools
import os
import stat
import sys
import threading
import time
import weakref
from collections import OrderedDict
from pathlib import Path
from types import ModuleType
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
# The largest PID a system has (`pid_t` is an i32): beyond it, a number is
# never a process's PID, and the host refuses to signal it.
MAX_PID = (1 << 31) - 1
# The WIT `log.level` cases, least first: what `Plugin.log_level` accepts
# (or None: no message at all).
LOG_LEVELS = ("debug", "info", "warn")
DEFAULT_LOG_LEVEL = "warn"


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
    """The plugin trapped (a bug; out of fuel, memory or time), or the
    host's backend failed under it: no decision was made, and its instance
    is dropped (the next call makes a new one)."""


# --- the host's own rules ------------------------------------------------


def granted(grant_dir: str, path: str, itself: bool = False) -> str:
    """`path` when it names an entry below the granted directory (absolute,
    compared component by component, no `.` or `..` steps: `/proj-other/x`
    is not below `/proj`); with `itself`, the granted directory too (whose
    owner the plugin may look at). Else the WIT `denied` error."""
    parts = path.split("/")
    plain = path.startswith("/") and not any(p in ("", ".", "..") for p in parts[1:])
    base = [p for p in grant_dir.split("/") if p]
    inside = [p for p in parts[1:]] if plain else []
    if plain and inside[:len(base)] == base and (len(inside) > len(base) or itself):
        return path
    raise GuestError("denied", f"{path} is outside the directory granted to the plugin"
                     f" ({grant_dir})")


def signal_refusal(pid: int, own: int, parent: int, own_uid: int,
                   owner: Optional[int]) -> Optional[str]:
    """Why the host refuses to signal `pid` (whose real uid is `owner`,
    when known), whatever the plugin asks: PID 0 (a process group), PID 1,
    itself, its parent, a number beyond any PID and, unless the host runs
    as root, another user's process. (The Rust host's `gate::signal_refusal`.)"""
    if pid == 0:
        return "PID 0 is a process group, not a process"
    if pid == 1:
        return "PID 1 is the init process"
    if pid == own:
        return f"PID {pid} is pidman itself"
    if pid == parent:
        return f"PID {pid} is pidman's parent (the caller)"
    if pid > MAX_PID:
        return f"{pid} is not a PID"
    if owner is not None and own_uid != 0 and owner != own_uid:
        return (f"PID {pid} belongs to uid {owner}, and pidman (uid {own_uid}) signals only"
                " its own user's processes")
    return None


# --- values --------------------------------------------------------------


def record(rt: ModuleType, **fields: Any) -> Any:
    """A WIT record of the component module `rt`; field names in Python
    style become kebab-case."""
    r = rt.Record()
    for name, value in fields.items():
        setattr(r, name.replace("_", "-"), value)
    return r


def _start_ticker(engine: Any) -> None:
    """Advance `engine`'s epoch every EPOCH_TICK_S, for the process's life
    (a thread does not survive `fork`: a child starts its own)."""
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


def _log_level(value: object) -> Optional[str]:
    """`value` as a `log_level`: one of LOG_LEVELS, or None (no message);
    ValueError for anything else (wasmtime-py would lower any string, and
    the plugin trap on it)."""
    if value is None or (isinstance(value, str) and value in LOG_LEVELS):
        return value
    raise ValueError(f"log_level must be one of {', '.join(map(repr, LOG_LEVELS))} or None,"
                     f" not {value!r}")


def _unwrap(value: Any, rt: ModuleType) -> Any:
    """An export's `result<T, error>` as T, raising GuestError for an error.
    (wasmtime-py tags a result only when its cases' Python types overlap.)"""
    if isinstance(value, rt.Variant):
        if value.tag == "ok":
            return value.payload
        if value.tag == "err":
            value = value.payload
        raise GuestError(value.tag, value.payload)
    return value


class HostLock(int):
    """A lock the plugin handed to its caller (a claim's): the host's own
    handle for it, good in any instance of the plugin, so that a claim
    outlives the instance that took it."""


MAX_PLUGIN_BYTES = 16 << 20
# Directories whose idle instances are kept (least recently used first out),
# and idle instances kept per directory (more are made while all are busy).
MAX_SESSIONS = 16
MAX_IDLE_PER_DIR = 4
_DEFAULT: Any = object()


def _runtime_tag() -> str:
    """What a compiled component depends on besides itself: wasmtime-py's
    native library (its path, size and time change with every install) and
    the engine's configuration. (Always the installed library's, also in a
    child running a private copy of it: the same bytes.)"""
    from wasmtime import _ffi

    st = os.stat(_ffi.filename)
    return f"{_ffi.filename}:{st.st_size}:{st.st_mtime_ns}:fuel,epoch"


def _read_plugin(path: str) -> bytes:
    """A plugin file: a regular file (opened without blocking: a FIFO cannot
    hang the caller) of at most MAX_PLUGIN_BYTES."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise PIDManError(f"the plugin {path} is not a regular file")
        if st.st_size > MAX_PLUGIN_BYTES:
            raise PIDManError(f"the plugin {path} is over {MAX_PLUGIN_BYTES >> 20} MiB")
        return f.read(MAX_PLUGIN_BYTES + 1)


def _load(wt: ModuleType, rt: ModuleType, engine: Any, wasm_path: str,
          cache_dir: Any) -> Any:
    """Compile the plugin, or deserialize its compiled form from the cache."""
    wasm = _read_plugin(wasm_path)
    directory = _cache.default_dir() if cache_dir is _DEFAULT else cache_dir
    directory = _cache.trusted_dir(Path(directory)) if directory else None
    if directory is None:
        return rt.Component(engine, wasm)
    entry = directory / _cache.key(wasm, _runtime_tag())
    compiled = _cache.read(entry)
    if compiled is not None:
        try:
            return rt.Component.deserialize(engine, compiled)
        except wt.WasmtimeError:
            pass
    component = rt.Component(engine, wasm)
    _cache.write(entry, bytes(component.serialize()))
    return component


# --- wasmtime-py's shared state --------------------------------------------


class _PerThreadSet:
    """A set of its own for each thread. wasmtime-py 50 lowers an untagged
    variant through one module-wide scratch set (`case_test_cache`:
    cleared, filled, read): two threads lowering at once read each other's
    and fail ("value not valid for this variant"). This stands in for it."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _set(self) -> set[type]:
        found: Optional[set[type]] = getattr(self._local, "set", None)
        if found is None:
            found = self._local.set = set()
        return found

    def clear(self) -> None:
        self._set().clear()

    def add(self, item: type) -> None:
        self._set().add(item)

    def __iter__(self) -> Any:
        return iter(self._set())

    def __len__(self) -> int:
        return len(self._set())


def _thread_safe(rt: ModuleType) -> None:
    """Make wasmtime-py's component module `rt` safe to use from several
    threads at once (see `_PerThreadSet`)."""
    types = sys.modules.get(rt.__name__ + "._types") or getattr(rt, "_types", None)
    if types is not None and isinstance(getattr(types, "case_test_cache", None), set):
        setattr(types, "case_test_cache", _PerThreadSet())


# wasmtime-py 50 rebuilds an import's types on every call into Python, and
# then, lowering the result, rebuilds each nested type as often as it asks
# about it: a record's fields and a variant's cases are new Python objects,
# one ctypes call per field or case, on every callback (for `inspect`'s
# `result<process-info, error>`, about 120 us of a crossing's 210). A type
# never changes, and every call of one of pidman's callbacks has the same
# type: both are worked out once and kept.


#: The attribute of a `Func` that keeps its type (`_reuse_types`): set (to
#: None until the first call) on the package's own exports only.
KEEP_TYPE = "_pidman_type"


class _HostFunc:
    """A callback pidman gives a plugin's linker. That linker instantiates
    only its plugin's component (a forked child makes a new linker, with
    new callbacks), so every call of it has the same WIT type: the patched
    `func_impl` keeps the types of its first call here (`types`)."""

    __slots__ = ("body", "types")

    def __init__(self, body: Callable[..., Any]):
        self.body = body
        #: (the parameters' types, the result's type or None), once known.
        self.types: Optional[tuple[list[Any], Any]] = None

    def __call__(self, *args: Any) -> Any:
        return self.body(*args)


def _import_types(func: Any, ty_raw: Any, store: Any, func_type: Any) -> tuple[list[Any], Any]:
    """(the parameters' types, the result's type or None) of a call of the
    host function `func`, whose type wasmtime passed as `ty_raw`: kept from
    the first call for pidman's own callbacks, rebuilt for any other's (as
    wasmtime-py does). `func_type` is wasmtime-py's FuncType class."""
    if isinstance(func, _HostFunc) and func.types is not None:
        return func.types
    with func_type._from_ptr(ty_raw, owner=store) as fty:
        types = ([ty for _, ty in fty.params], fty.result)
    if isinstance(func, _HostFunc):
        func.types = types  # a race stores equal values: no lock needed
    return types


def _memoized(getter: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`getter`, a type's property or method without arguments, computed
    once per type object and kept on it. A list comes back as a copy each
    time (a caller may change its own list)."""
    key = f"_pidman_{getter.__name__}"

    def memo(self: Any) -> Any:
        try:
            value = self.__dict__[key]
        except KeyError:
            value = getter(self)
            if isinstance(value, list):
                value = tuple(value)
            self.__dict__[key] = value  # a race stores equal values
        return list(value) if isinstance(value, tuple) else value
    return memo


# What wasmtime-py's types compute through ctypes on every use: each
# class's properties (and `_tagged`, whether a variant lowers tagged).
_MEMOIZED = {
    "RecordType": ("fields",),
    "TupleType": ("elements",),
    "ListType": ("element",),
    "VariantType": ("cases",),
    "OptionType": ("payload",),
    "ResultType": ("ok", "err"),
    "VariantLikeType": ("_tagged",),
    "FuncType": ("params", "result"),
}


def _reuse_types(rt: ModuleType) -> None:
    """Make wasmtime-py's component module `rt` keep what it works out about
    types instead of rebuilding it on every callback: its types' structure
    (`_MEMOIZED`) and, for pidman's callbacks, the import's types (its
    `func_impl`, which every callback enters, replaced by the same steps
    with `_import_types`), and the type of each of the package's exports
    (`Func.type`, which every call of an export asks for, kept on the `Func`
    `_Session.func` marks: a function's type never changes, and the package
    keeps its `Func`s). Results are unchanged: the
    same types, the same conversions. (A wasmtime-py laid out otherwise is
    left as it is.)"""
    try:
        linker, types = rt._linker, rt._types
        func_cls = rt._func.Func
        func_type_of = func_cls.__dict__["type"]
        found = []
        for name, members in _MEMOIZED.items():
            cls = getattr(types, name)
            found += [(cls, member, cls.__dict__[member]) for member in members]
        functions, func_type = linker.FUNCTIONS, linker.FuncType
        catch_exceptions = linker.catch_exceptions
        make_callback = linker.ffi.wasmtime_component_func_callback_t
    except (AttributeError, KeyError):
        return
    for cls, member, original in found:
        is_property = isinstance(original, property)
        memo = _memoized(original.fget if is_property else original)
        setattr(cls, member, property(memo) if is_property else memo)

    # Only for the package's own exports (`_Session.func` marks them, and
    # never closes their type): any other `Func` gets a new type each time,
    # as wasmtime-py gives it, which its caller may close.
    def kept_type(self: Any, store: Any) -> Any:
        if KEEP_TYPE not in self.__dict__:
            return func_type_of(self, store)
        found = self.__dict__[KEEP_TYPE]
        if found is None:
            found = self.__dict__[KEEP_TYPE] = func_type_of(self, store)
        return found
    func_cls.type = kept_type

    # wasmtime-py's `func_impl`, with the types from `_import_types`.
    def func_impl(idx: Any, context: Any, ty_raw: Any, args: Any, nargs: int,
                  results: Any, nresults: int) -> Any:
        def run(store: Any) -> None:
            func = functions.get(idx or 0)
            param_tys, result_ty = _import_types(func, ty_raw, store, func_type)
            assert len(param_tys) == nargs
            assert nresults == (0 if result_ty is None else 1)
            result = func(store, *[ty.convert_from_c(args[i]) for i, ty in enumerate(param_tys)])
            if result_ty is None:
                assert result is None
            else:
                result_ty.convert_to_c(store, result, results)
        return catch_exceptions(context, run)

    # `LinkerInstance.add_func` registers whatever `func_impl` is now.
    linker.func_impl = make_callback(func_impl)


def _patch(rt: ModuleType) -> None:
    """wasmtime-py's component module `rt` made safe for threads and spared
    rebuilding types (the installed one at import, a forked child's private
    copy when it loads)."""
    _thread_safe(rt)
    _reuse_types(rt)


# --- a private wasmtime for a forked child ----------------------------------

_WASMTIME_LOCK = threading.Lock()
# The wasmtime this process runs plugins with: the installed one until a
# fork, then the child's private copy (made on its first call).
_wasmtime: Optional[tuple[ModuleType, ModuleType]] = (wasmtime, c)
_patch(c)
# What a child must never free: the parent's plugin objects, whose
# destructors would run through the parent's runtime.
_PARENTS_OBJECTS: list[Any] = []


def _fresh_wasmtime() -> tuple[ModuleType, ModuleType]:
    """wasmtime-py once more, over a private copy of its native library: a
    library file loaded again under another name is a second instance of
    it, with its own (fresh) process-wide state. The copy is made in a
    private temporary directory and removed once loaded; the modules are
    kept out of `sys.modules`, where the installed wasmtime stays."""
    import importlib
    import shutil
    import tempfile

    source = os.path.dirname(os.path.abspath(wasmtime.__file__))
    temp = tempfile.mkdtemp(prefix="pidman-wasmtime-")
    ours = [k for k in sys.modules if k == "wasmtime" or k.startswith("wasmtime.")]
    saved = {k: sys.modules[k] for k in ours}
    try:
        # copytree keeps the times: the compiled bytecode stays valid.
        shutil.copytree(source, os.path.join(temp, "wasmtime"))
        for k in ours:
            del sys.modules[k]
        sys.path.insert(0, temp)
        try:
            wt = importlib.import_module("wasmtime")
            rt = importlib.import_module("wasmtime.component")
            _patch(rt)
        finally:
            sys.path.remove(temp)
            for k in [k for k in sys.modules if k == "wasmtime" or k.startswith("wasmtime.")]:
                del sys.modules[k]
            sys.modules.update(saved)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return wt, rt


def _current_wasmtime() -> tuple[ModuleType, ModuleType]:
    global _wasmtime
    with _WASMTIME_LOCK:
        if _wasmtime is None:
            _wasmtime = _fresh_wasmtime()
        return _wasmtime


# --- calls ---------------------------------------------------------------


class _Call:
    """One call under way on this thread: what its callbacks act on."""

    def __init__(self, backend: Any, grant_dir: str, deadline: float,
                 log_level: Optional[str]):
        self.backend = backend
        self.grant_dir = grant_dir
        self.deadline = deadline
        #: The least level of message this call keeps (None: none), as the
        #: plugin was told before the call.
        self.log_level = log_level
        self.log: list[str] = []
        #: An exception of the backend that trapped the call.
        self.failure: Optional[BaseException] = None


class _Session:
    """One instance of the plugin, with the one directory it may use. One
    call at a time uses it."""

    def __init__(self, store: Any, instance: Any, manager: Any):
        self.store = store
        self.instance = instance
        self.manager = manager
        self.funcs: dict[str, Any] = {}
        #: The least level of message this instance sends (its
        #: `set-log-level`, which it keeps for its life). A new instance
        #: sends every message until told otherwise (the WIT's rule): what
        #: "debug" asks for, so a plugin that wants "debug" never calls it.
        self.log_level: Optional[str] = "debug"

    def func(self, export: str) -> Any:
        found = self.funcs.get(export)
        if found is None:
            index = self.instance.get_export_index(self.store, export, self.manager)
            found = self.funcs[export] = self.instance.get_func(self.store, index)
            found.__dict__[KEEP_TYPE] = None  # its type is kept (`_reuse_types`)
        return found

    def exports(self, export: str) -> bool:
        """Whether the plugin has `export` (an older one may lack a newer
        export, such as `set-log-level`)."""
        return (export in self.funcs
                or self.instance.get_export_index(self.store, export, self.manager) is not None)


_PLUGINS: "weakref.WeakSet[Plugin]" = weakref.WeakSet()


class Plugin:
    """One compiled plugin (compiled once, through the cache) and a pool of
    instances of it per directory it may use: an instance is kept across
    calls, one call at a time, and dropped when it traps. Safe to call from
    any number of threads, from a backend's callback, and after `fork`.

    `log` is what the plugin logged during the last call (on any thread),
    as "level: message" lines; only messages of at least `log_level`
    ("debug", "info" or "warn"; None: none at all; default "warn"). The
    plugin is told the level (`set-log-level`) and sends nothing below it:
    a message it would send costs a call into Python (tens of
    microseconds). Telling an instance costs one such call, made only when
    the level differs from what that instance was last told."""

    def __init__(self, wasm_path: str, cache_dir: Any = _DEFAULT,
                 log_level: Optional[str] = DEFAULT_LOG_LEVEL):
        self.wasm_path = wasm_path
        self.cache_dir = cache_dir
        self.budget_s = DEFAULT_BUDGET_S
        self.log_level = log_level
        self.log: list[str] = []
        self._local = threading.local()
        self._mutex = threading.Lock()
        # The locks the plugin holds through this host, by handle: (the
        # backend that took it, the backend's lock). Any instance may
        # release one (a claim outlives the instance that took it).
        self._locks: dict[int, tuple[Any, Any]] = {}
        self._next_lock = itertools.count(1)
        self._idle: "OrderedDict[str, list[_Session]]" = OrderedDict()
        self._build(*_current_wasmtime())
        _PLUGINS.add(self)

    @property
    def log_level(self) -> Optional[str]:
        """The least level of message kept in `log`: "debug", "info",
        "warn", or None for none (ValueError for anything else). Takes
        effect from the next call, in every instance."""
        return self._log_level

    @log_level.setter
    def log_level(self, value: Optional[str]) -> None:
        self._log_level = _log_level(value)

    def _build(self, wt: ModuleType, rt: ModuleType) -> None:
        """Engine, component and linker, in wasmtime `wt` (module) and `rt`
        (its component module)."""
        self.wt, self.rt = wt, rt
        config = wt.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        self.engine = wt.Engine(config)
        self.component = _load(wt, rt, self.engine, self.wasm_path, self.cache_dir)
        self.linker = rt.Linker(self.engine)
        self.linker.add_wasip2()
        self._define()
        _start_ticker(self.engine)
        self._pid = os.getpid()

    def _after_fork_in_child(self) -> None:
        """The child of a fork: none of the parent's instances (nor its
        runtime) is used again; the locks the parent holds stay the
        parent's (the child's copies of their descriptors are closed,
        never unlocked: an unlock would drop the parent's)."""
        _PARENTS_OBJECTS.append((self.engine, self.component, self.linker, self._idle))
        self._idle = OrderedDict()
        self._mutex = threading.Lock()
        self._local = threading.local()
        for backend, held in self._locks.values():
            forget = getattr(backend, "forget", None)
            if forget is not None:
                try:
                    forget(held)
                except Exception:
                    pass
        self._locks = {}
        self._pid = -1  # rebuilt on the next call

    def _ensure_process(self) -> None:
        if self._pid != os.getpid():
            with self._mutex:
                if self._pid != os.getpid():
                    self._build(*_current_wasmtime())

    # --- the imports --------------------------------------------------

    def _call(self) -> _Call:
        """The call under way on this thread (the innermost, when a
        callback called pidman again)."""
        return self._local.stack[-1]  # type: ignore[no-any-return]

    def _define(self) -> None:
        root = self.linker.root()
        b = self._backend  # the backend of the current call
        answer, guard = self._answer, self._guard
        with root.add_instance(PACKAGE.format("process-table")) as i:
            i.add_func("own-pid", guard(lambda s: b().own_pid()))
            i.add_func("parent-pid", guard(lambda s: b().parent_pid()))
            i.add_func("own-uid", guard(lambda s: b().own_uid()))
            i.add_func("state", answer(lambda s, pid: b().state(pid)))
            i.add_func("inspect", answer(lambda s, pid: self._record(**b().inspect(pid))))
            i.add_func("snapshot", answer(lambda s: [self._record(**entry)
                                                     for entry in b().snapshot()]))
        with root.add_instance(PACKAGE.format("signals")) as i:
            i.add_func("send", answer(lambda s, target, sig: self._send(target, sig)))
            i.add_func("wait-exit", answer(lambda s, target, ms: b().wait_exit(
                target.pid, getattr(target, "start-token"), self._clamp(ms))))
            i.add_func("clock-ms", guard(lambda s: b().clock_ms()))
        with root.add_instance(PACKAGE.format("ports")) as i:
            i.add_func("sockets", answer(lambda s, port, listening: [
                self._record(**sock) for sock in b().sockets(port, listening)]))
            # result<option<pid>, error> is untagged in wasmtime-py and cannot
            # carry an error: an unreadable owner is "not visible" (none).
            i.add_func("owner", guard(lambda s, handle: self._quiet(
                lambda: b().socket_owner(handle))))
        with root.add_instance(PACKAGE.format("files")) as i:
            i.add_resource("lock", self.rt.ResourceType.host(LOCK_TYPE), self._release)
            i.add_func("owner", answer(lambda s, path: self._record(**b().file_owner(
                granted(self._call().grant_dir, path, itself=True)))))
            i.add_func("try-lock", guard(lambda s, path, wait_ms: self._try_lock(path, wait_ms)))
        with root.add_instance(PACKAGE.format("log")) as i:
            i.add_func("emit", guard(lambda s, level, message: self._emit(level, message)))

    def _backend(self) -> Any:
        return self._call().backend

    def _emit(self, level: str, message: str) -> None:
        """`log.emit`: kept when at least the call's level. (The plugin sends
        nothing below it once told; this holds `log` to its meaning for a
        plugin that sends more.)"""
        call = self._call()
        least = call.log_level
        if least is not None and LOG_LEVELS.index(level) >= LOG_LEVELS.index(least):
            call.log.append(f"{level}: {message}")

    def _record(self, **fields: Any) -> Any:
        return record(self.rt, **fields)

    def _guard(self, body: Callable[..., Any]) -> Callable[..., Any]:
        """A callback that never lets a Python exception through wasmtime
        (whose record of the last one is process-wide, so another thread's
        call could raise it): the exception is kept on the call, which
        traps and raises PluginTrap from it."""
        def callback(*args: Any) -> Any:
            try:
                return body(*args)
            except Exception as e:
                self._call().failure = e
                raise self.wt.WasmtimeError(f"the host failed: {e!r}")
        return _HostFunc(callback)

    def _answer(self, body: Callable[..., Any]) -> Callable[..., Any]:
        """A callback whose result is a WIT `result`: a GuestError becomes
        the `error` variant's case."""
        def callback(*args: Any) -> Any:
            try:
                return body(*args)
            except GuestError as e:
                return self.rt.Variant(e.kind, e.message)
        return self._guard(callback)

    @staticmethod
    def _quiet(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except GuestError:
            return None

    def _clamp(self, ms: int) -> int:
        """A wait of `ms`, clamped to what is left of the call's budget."""
        left = max(0.0, self._call().deadline - time.monotonic())
        return int(min(ms, left * 1000))

    def _send(self, target: Any, sig: str) -> None:
        """`signals.send`, past the host's floor (whatever the backend)."""
        backend = self._call().backend
        own_uid = backend.own_uid()
        owner = None
        if own_uid != 0:  # the owner matters only to a caller that is not root
            try:
                owner = backend.inspect(target.pid).get("uid")
            except GuestError:
                owner = None
        why = signal_refusal(target.pid, backend.own_pid(), backend.parent_pid(), own_uid, owner)
        if why:
            raise GuestError("denied", f"the host refuses to signal: {why}")
        backend.send(target.pid, getattr(target, "start-token"), sig)

    def _try_lock(self, path: str, wait_ms: int) -> Any:
        # Same untagged-result limit as `owner`: a lock that cannot be taken
        # for any reason (outside the grant included) is reported as held by
        # someone the lock does not name, so the plugin changes nothing.
        call = self._call()
        try:
            held = call.backend.try_lock(granted(call.grant_dir, path), self._clamp(wait_ms))
        except GuestError:
            return None
        if held is None:
            return None
        rep = next(self._next_lock)
        self._locks[rep] = (call.backend, held)
        return self.rt.ResourceHost.own(rep, LOCK_TYPE)

    def _release(self, store: Any, rep: int) -> None:
        self.drop_lock(rep)

    def drop_lock(self, rep: int) -> bool:
        """Release the lock `rep` through its backend (the plugin dropped
        it, or a claim whose release could not reach the plugin); False
        when it is not held."""
        found = self._locks.pop(rep, None)
        if found is None:
            return False
        backend, held = found
        backend.release(held)
        return True

    def holds_lock(self, rep: int) -> bool:
        return rep in self._locks

    # --- instances and calls -------------------------------------------

    def _new_session(self, grant_dir: str) -> _Session:
        wt = self.wt
        store = wt.Store(self.engine)
        store.set_limits(memory_size=MEMORY_LIMIT)
        wasi = wt.WasiConfig()
        wasi.preopen_dir(grant_dir, grant_dir)
        store.set_wasi(wasi)
        store.set_fuel(FUEL_PER_CALL)
        store.set_epoch_deadline(max(1, int(self.budget_s / EPOCH_TICK_S)))
        instance = self.linker.instantiate(store, self.component)
        manager = instance.get_export_index(store, PACKAGE.format("manager"))
        return _Session(store, instance, manager)

    def _take(self, grant_dir: str) -> Optional[_Session]:
        """An idle instance for `grant_dir`, if there is one."""
        with self._mutex:
            idle = self._idle.get(grant_dir)
            if idle:
                self._idle.move_to_end(grant_dir)
                return idle.pop()
        return None

    def _give_back(self, grant_dir: str, session: _Session) -> None:
        with self._mutex:
            idle = self._idle.setdefault(grant_dir, [])
            self._idle.move_to_end(grant_dir)
            if len(idle) < MAX_IDLE_PER_DIR:
                idle.append(session)
            while len(self._idle) > MAX_SESSIONS:
                self._idle.popitem(last=False)

    def call(self, backend: Any, grant_dir: str, export: str, *args: Any) -> Any:
        """Call `export` of the manager interface on `backend`, in an
        instance for `grant_dir`, unwrapping its result (GuestError for the
        error variant, PluginTrap for a trap, which also drops the
        instance). A `HostLock` argument is lowered as the lock it names;
        a lock in the result comes back as a `HostLock`. An instance last
        told another `log_level` (or a new one, unless the level is
        "debug") is told this one first."""
        self._ensure_process()
        grant_dir = grant_dir.rstrip("/") or "/"
        own = args[TIMEOUT_ARG[export]] if export in TIMEOUT_ARG else None
        budget = self.budget_s + (own or 0) / 1000
        args = tuple(self.rt.ResourceHost.own(int(a), LOCK_TYPE) if isinstance(a, HostLock)
                     else a for a in args)
        ctx = _Call(backend, grant_dir, time.monotonic() + budget, self._log_level)
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        stack.append(ctx)
        session = None
        try:
            session = self._take(grant_dir) or self._new_session(grant_dir)
            store = session.store
            if session.log_level != ctx.log_level:
                self._set_log_level(session, ctx.log_level, budget)
            store.set_fuel(FUEL_PER_CALL)
            store.set_epoch_deadline(max(1, int(budget / EPOCH_TICK_S)))
            func = session.func(export)
            result = func(store, *args)
            func.post_return(store)
            result = self._lift_lock(result, store)
        except self.wt.WasmtimeError as e:
            if ctx.failure is not None:
                raise PluginTrap(f"the host's backend failed: {ctx.failure!r}") from ctx.failure
            raise PluginTrap(_trap_cause(str(e))) from e
        finally:
            stack.pop()
            self.log = ctx.log
        self._give_back(grant_dir, session)
        return _unwrap(result, self.rt)

    @staticmethod
    def _set_log_level(session: _Session, least: Optional[str], budget: float) -> None:
        """Tell `session`'s instance the least level of message to send (a
        call of its own, with the fuel and time of any call); it keeps it
        for its life."""
        if not session.exports("set-log-level"):
            # A plugin from before it: it sends every message, and `_emit`
            # keeps the ones of the level.
            session.log_level = least
            return
        store = session.store
        store.set_fuel(FUEL_PER_CALL)
        store.set_epoch_deadline(max(1, int(budget / EPOCH_TICK_S)))
        func = session.func("set-log-level")
        func(store, least)  # option<enum>: None, or the case's name
        func.post_return(store)
        session.log_level = least

    def _lift_lock(self, value: Any, store: Any) -> Any:
        """A lock resource the plugin returned (a granted claim), as the
        host's own handle for it (good in any instance)."""
        if isinstance(value, self.rt.ResourceAny):
            return HostLock(value.to_host(store).rep)
        if isinstance(value, self.rt.ResourceHost):
            return HostLock(value.rep)
        if isinstance(value, self.rt.Variant) and value.tag == "ok":
            return self.rt.Variant("ok", self._lift_lock(value.payload, store))
        return value


def _after_fork_in_child() -> None:
    """`os.register_at_fork`: the child makes its own runtime and instances
    on its first call (see the module's doc)."""
    global _WASMTIME_LOCK, _wasmtime
    _WASMTIME_LOCK = threading.Lock()
    _wasmtime = None
    for plugin in list(_PLUGINS):
        plugin._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
