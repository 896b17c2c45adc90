"""pidman's Python package side by side with Bengal's own PID manager and
with the Rust host, per decision, in one run, on this machine (issue 20:
the ratios, and how many times each decision crosses from the plugin into
Python).

Bengal's module is `bengal/server/pid_manager.py` from the pinned bengal
wheel on PyPI (`bench/bengal_module.py`), with its Python 3.14
`except A, B:` lines written `except (A, B):` so that it runs on this
interpreter; psutil installed, as its users have it. Everything runs under
the interpreter's real path (never a shell shim such as pyenv's). Run it
with the virtualenv that has pidman-wasm's dependencies (hosts/test.sh makes
target/python-venv), the package from the source tree and the plugin built:

    PYTHONPATH=hosts/python PIDMAN_WASM=target/wasm32-wasip2/guest/pidman_guest.wasm \
        target/python-venv/bin/python bench/python_compare.py

The Rust host cannot be called in process from Python: its column is the
CLI, `target/release/pidman`, started afresh for every decision (a process
start each, timed the same way as `/bin/true`, the floor), and, for the one
decision `cargo bench` measures, the in-process number docs/speed.md
records (not measured by this script).

Crossings are counted in a separate pass (so that the counting costs the
timed runs nothing): a second `Plugin`, whose host imports are registered
through a wrapper that counts and times each callback wasmtime-py makes
into Python, split into its parts (the import's types, which the package
keeps after a callback's first call; lifting the arguments; pidman's
callback; lowering the result), the same steps as the package's own
callback entry (`pidman_wasm._runtime._reuse_types`).
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bengal_module import BENGAL, bengal_module

ROOT = Path(__file__).resolve().parents[1]
RUST_CLI = ROOT / "target" / "release" / "pidman"
FIXTURE = ROOT / "tests" / "fixtures" / "bengal"
# docs/speed.md, `cargo bench -p pidman --bench plugin` in bench/compare.sh's
# last recorded run: a warm check of a live server's file, in process.
RUST_IN_PROCESS_US = {"check_stale_pid, live Bengal server": (46.3, 35.6)}

# BENCH_QUICK=1: a smoke test of the script (numbers not worth reporting).
SCALE = 10 if os.environ.get("BENCH_QUICK") else 1
ROUNDS_COLD = 30 // SCALE
ROUNDS_RUST = 60 // SCALE
ROUNDS_WARM = 2000 // SCALE
ROUNDS_DEAD = 600 // SCALE
ROUNDS_PORT = 300 // SCALE
ROUNDS_PORT_BENGAL = 60 // SCALE


def median_us(times: list) -> float:
    return statistics.median(times) * 1e6


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def spawn_ms(argv: list, rounds: int, prepare=None, env=None) -> float:
    """Median ms of starting `argv` and waiting for it (output discarded),
    `prepare` run untimed before each."""
    times = []
    for _ in range(rounds):
        if prepare:
            prepare()
        start = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def warm_us(call, rounds: int, expect, prepare=None) -> float:
    """Median us of one in-process call (`prepare` untimed before each)."""
    times = []
    for _ in range(rounds):
        if prepare:
            prepare()
        start = time.perf_counter()
        found = call()
        times.append(time.perf_counter() - start)
        assert expect(found), found
    return median_us(times)


# --- counting the crossings --------------------------------------------------


class Crossings:
    """Counts (and times, by part) the callbacks wasmtime-py makes into
    Python for the imports of the plugins built while it is installed."""

    def __init__(self) -> None:
        self.calls: Counter = Counter()
        self.parts: Counter = Counter()  # seconds by part
        self.backend: Counter = Counter()

    def reset(self) -> None:
        self.calls.clear()
        self.parts.clear()
        self.backend.clear()

    def install(self) -> None:
        from wasmtime import _ffi as ffi
        from wasmtime.component import _linker
        from wasmtime.component._enter import catch_exceptions
        from wasmtime.component._types import FuncType

        from pidman_wasm._runtime import _import_types

        me = self
        names: dict = {}
        add_instance, add_func = _linker.LinkerInstance.add_instance, _linker.LinkerInstance.add_func
        add_resource = _linker.LinkerInstance.add_resource

        def instance(self, name):
            inst = add_instance(self, name)
            inst._bench_iface = name.split("/")[-1].split("@")[0]
            return inst

        def func(self, name, body):
            # Registered as it is: the package keeps its callbacks' types on them.
            names[id(body)] = f"{getattr(self, '_bench_iface', '')}.{name}"
            return add_func(self, name, body)

        def resource(self, name, ty, dtor):
            full = f"{getattr(self, '_bench_iface', '')}.{name}.drop"
            def counted(store, rep):
                me.calls[full] += 1
                start = time.perf_counter()
                try:
                    return dtor(store, rep)
                finally:
                    me.parts["callback"] += time.perf_counter() - start
            return add_resource(self, name, ty, counted)

        # The package's `func_impl`, with its parts timed.
        @ffi.wasmtime_component_func_callback_t
        def func_impl(idx, context, ty_raw, args, nargs, results, nresults):
            entered = time.perf_counter()

            def run(store):
                t0 = time.perf_counter()
                body = _linker.FUNCTIONS.get(idx or 0)
                param_tys, result_ty = _import_types(body, ty_raw, store, FuncType)
                t1 = time.perf_counter()
                pyargs = [ty.convert_from_c(args[i]) for i, ty in enumerate(param_tys)]
                t2 = time.perf_counter()
                result = body(store, *pyargs)
                t3 = time.perf_counter()
                if result_ty is not None:
                    result_ty.convert_to_c(store, result, results)
                t4 = time.perf_counter()
                me.calls[names.get(id(body), "?")] += 1
                me.parts["types"] += t1 - t0
                me.parts["lift args"] += t2 - t1
                me.parts["callback"] += t3 - t2
                me.parts["lower result"] += t4 - t3
            out = catch_exceptions(context, run)
            me.parts["whole crossing (in Python)"] += time.perf_counter() - entered
            return out

        _linker.LinkerInstance.add_instance = instance
        _linker.LinkerInstance.add_func = func
        _linker.LinkerInstance.add_resource = resource
        _linker.func_impl = func_impl

    def backend_of(self, backend_class):
        me = self

        class Counting:
            def __init__(self) -> None:
                self._inner = backend_class()

            def __getattr__(self, name):
                attr = getattr(self._inner, name)
                if not callable(attr):
                    return attr
                def counted(*args, **kwargs):
                    me.backend[name] += 1
                    return attr(*args, **kwargs)
                return counted
        return Counting


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="pidman-bench-"))
    bengal_module(work)
    env = {k: v for k, v in os.environ.items()}
    env["PYTHONPATH"] = os.pathsep.join([str(work), env.get("PYTHONPATH", "")])
    env["PIDMAN_CACHE_DIR"] = str(work / "cache")
    os.environ["PIDMAN_CACHE_DIR"] = env["PIDMAN_CACHE_DIR"]
    project = work / "project"
    project.mkdir()
    pid_file = project / ".bengal.pid"
    sys.path.insert(0, str(work))
    import bengal_pid_manager  # noqa: E402
    import pidman_wasm  # noqa: E402
    from pidman_wasm import PIDManager  # noqa: E402
    B = bengal_pid_manager.PIDManager
    rows = []  # (decision, bengal us, pidman us, rust cli ms, rust in-process)

    # 1. A fresh interpreter: import, then the first check of a dead PID.
    def rewrite_dead():
        pid_file.write_text(str(dead_pid()))
    floor_py = spawn_ms([sys.executable, "-c", "pass"], ROUNDS_COLD, env=env)
    bengal_cold = spawn_ms([sys.executable, "-c",
                            "import sys; from pathlib import Path; import bengal_pid_manager as m; "
                            "m.PIDManager.check_stale_pid(Path(sys.argv[1]))", str(pid_file)],
                           ROUNDS_COLD, rewrite_dead, env)
    pidman_cold = spawn_ms([sys.executable, "-c",
                            "import sys; from pidman_wasm import PIDManager; "
                            "PIDManager.check_stale_pid(sys.argv[1])", str(pid_file)],
                           ROUNDS_COLD, rewrite_dead, env)
    subprocess.run([str(RUST_CLI), "--root", str(project), "path"], env=env,
                   stdout=subprocess.DEVNULL)  # its compiled plugin into the cache
    floor_true = spawn_ms(["/bin/true"], ROUNDS_RUST, env=env)
    rust_dead = spawn_ms([str(RUST_CLI), "--root", str(project), "check"], ROUNDS_RUST,
                         rewrite_dead, env)

    server = subprocess.Popen([sys.executable, str(FIXTURE), "serve"], stdout=subprocess.PIPE)
    listener = subprocess.Popen([sys.executable, str(FIXTURE), "serve", "--port", "0"],
                                stdout=subprocess.PIPE)
    other = subprocess.Popen(["sleep", "600"])
    try:
        assert server.stdout.readline().startswith(b"ready")
        assert listener.stdout.readline().startswith(b"ready")
        port = listener_port(listener.pid)
        live = server.pid
        dead = dead_pid()

        def write_live():
            pid_file.write_text(str(live))

        def write_dead():
            pid_file.write_text(str(dead))

        gone = lambda found: found is None and not pid_file.exists()  # noqa: E731
        decisions = [
            # name, bengal call, pidman call, expect, prepare, rounds, rust argv
            ("check_stale_pid, live Bengal server",
             lambda: B.check_stale_pid(pid_file), lambda: PIDManager.check_stale_pid(pid_file),
             lambda f: f == live, None, ROUNDS_WARM, ["--root", str(project), "check"]),
            ("check_stale_pid, dead PID (file removed)",
             lambda: B.check_stale_pid(pid_file), lambda: PIDManager.check_stale_pid(pid_file),
             gone, write_dead, ROUNDS_DEAD, ["--root", str(project), "check"]),
            ("is_bengal_process, live Bengal server",
             lambda: B.is_bengal_process(live), lambda: PIDManager.is_bengal_process(live),
             lambda f: f is True, None, ROUNDS_WARM, ["is-bengal", str(live)]),
            ("is_bengal_process, another program (sleep)",
             lambda: B.is_bengal_process(other.pid), lambda: PIDManager.is_bengal_process(other.pid),
             lambda f: f is False, None, ROUNDS_WARM, ["is-bengal", str(other.pid)]),
            ("get_process_on_port, one listener",
             lambda: B.get_process_on_port(port), lambda: PIDManager.get_process_on_port(port),
             lambda f: f == listener.pid, None, ROUNDS_PORT, ["port", str(port)]),
        ]
        for name, bengal_call, pidman_call, expect, prepare, rounds, rust_args in decisions:
            if prepare is None:
                write_live()
            b_rounds = min(rounds, ROUNDS_PORT_BENGAL) if "port" in name else rounds
            pidman_call()  # this directory's instance made, untimed
            bengal_us = warm_us(bengal_call, b_rounds, expect, prepare)
            pidman_us = warm_us(pidman_call, rounds, expect, prepare)
            rust_ms = spawn_ms([str(RUST_CLI)] + rust_args, ROUNDS_RUST, prepare, env)
            rows.append((name, bengal_us, pidman_us, rust_ms, RUST_IN_PROCESS_US.get(name)))

        # 2. The crossings of each decision, in a plugin of their own.
        crossings = Crossings()
        crossings.install()
        plugin = pidman_wasm.Plugin(pidman_wasm.plugin_path())
        Backend = crossings.backend_of(pidman_wasm._Backend)
        grant, path = pidman_wasm.resolve(pid_file)
        cwd = os.path.realpath(os.getcwd())
        counted = [
            ("check_stale_pid, live Bengal server", write_live, grant, "check-stale-pid", (path,)),
            ("check_stale_pid, dead PID (file removed)", write_dead, grant, "check-stale-pid", (path,)),
            ("is_bengal_process, live Bengal server", None, cwd, "is-bengal-process", (live,)),
            ("is_bengal_process, another program (sleep)", None, cwd, "is-bengal-process", (other.pid,)),
            ("get_process_on_port, one listener", None, cwd, "get-process-on-port", (port,)),
        ]
        per = {}
        for name, prepare, g, export, args in counted:
            if prepare:
                prepare()
            plugin.call(Backend(), g, export, *args)  # the instance made, untimed
            n = 200 // SCALE
            crossings.reset()
            total = 0.0
            for _ in range(n):
                if prepare:
                    prepare()
                start = time.perf_counter()
                plugin.call(Backend(), g, export, *args)
                total += time.perf_counter() - start
            per[name] = ({k: v / n for k, v in crossings.calls.items()},
                         {k: v / n * 1e6 for k, v in crossings.parts.items()},
                         {k: v / n for k, v in crossings.backend.items()}, total / n * 1e6)
    finally:
        for p in (server, listener, other):
            p.kill()
            p.wait()

    # 3. The exports' own side: what each call of an export asks for its
    # types (Func.__call__ -> Func.type), which the package keeps on the Func.
    session = plugin._idle[grant][-1]
    f = session.func("check-stale-pid")
    start = time.perf_counter()
    for _ in range(1000):
        fty = f.type(session.store)
        fty.params, fty.result  # noqa: B018
    export_types_us = (time.perf_counter() - start) / 1000 * 1e6

    print(f"machine: {os.uname().machine}, Linux {os.uname().release}, {os.cpu_count()} cores; "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"python: {os.path.realpath(sys.executable)} ({sys.version.split()[0]}), "
          f"{BENGAL} + psutil, wasmtime-py {wasmtime_version()}, backend {pidman_wasm.backend_name()}")
    print(f"plugin: {pidman_wasm.plugin_path()}")
    print()
    print("| decision | Bengal's module | pidman-wasm | pidman-wasm / Bengal | Rust CLI, a process "
          "start each | pidman-wasm / Rust CLI | Rust in process (docs/speed.md) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| fresh interpreter: import + first check_stale_pid (dead PID) | {bengal_cold:.1f} ms "
          f"| {pidman_cold:.1f} ms | {pidman_cold / bengal_cold:.2f}x | {rust_dead:.2f} ms "
          f"| {pidman_cold / rust_dead:.1f}x | |")
    for name, bengal_us, pidman_us, rust_ms, in_process in rows:
        ip = (f"{in_process[0]} us plugin, {in_process[1]} us native "
              f"({pidman_us / in_process[0]:.0f}x)") if in_process else ""
        print(f"| warm {name} | {fmt_us(bengal_us)} | {fmt_us(pidman_us)} "
              f"| {pidman_us / bengal_us:.2f}x | {rust_ms:.2f} ms "
              f"| {pidman_us / 1000 / rust_ms:.2f}x | {ip} |")
    print(f"\nfloors, the same way: `/bin/true` {floor_true:.2f} ms, `python -c pass` "
          f"{floor_py:.1f} ms")
    print("\n| decision (warm) | crossings into Python | which | backend calls "
          "| per crossing, in Python | of which: types, lift, callback, lower | decision total "
          "(counting on) |")
    print("|---|---|---|---|---|---|---|")
    for name, (calls, parts, backend, total) in per.items():
        n = sum(calls.values())
        which = ", ".join(f"{k} {v:g}" for k, v in sorted(calls.items()))
        bcalls = ", ".join(f"{k} {v:g}" for k, v in sorted(backend.items()))
        whole = parts.get("whole crossing (in Python)", 0)
        split = " / ".join(f"{parts.get(k, 0) / max(n, 1):.0f}"
                           for k in ("types", "lift args", "callback", "lower result"))
        print(f"| {name} | {n:g} | {which} | {bcalls} | {whole / max(n, 1):.0f} us "
              f"| {split} us | {total:.0f} us ({whole / total:.0%} in crossings) |")
    print(f"\nan export's types, as each call asks for them (Func.type + params + result, kept "
          f"on the Func): {export_types_us:.1f} us")


def fmt_us(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us >= 10000 else f"{us:.0f} us"


def listener_port(pid: int) -> int:
    """The TCP port `pid` listens on (read from /proc, loopback only)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                return int(fields[1].split(":")[-1], 16)
    raise RuntimeError(f"{pid} listens on no TCP port")


def wasmtime_version() -> str:
    try:
        from importlib.metadata import version
        return version("wasmtime")
    except Exception:
        return "?"


if __name__ == "__main__":
    main()
    # wasmtime-py's objects, freed during interpreter teardown after its
    # native library's module is gone, print tracebacks: skip the teardown.
    sys.stdout.flush()
    os._exit(0)
