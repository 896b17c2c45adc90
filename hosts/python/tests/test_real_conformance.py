"""The real-backend conformance scenarios (tests/conformance/real.json)
through the Python host: real processes, files, locks and loopback sockets,
the plugin's exports called directly (at the level of the WIT, not the
convenience API, which turns some errors into warnings), each decided as
the Rust host decides it. Run once per real backend (conftest.py's
`real_backend`: /proc and psutil on Linux).

Everything a scenario starts is stopped and reaped at its end; only PIDs
the test started are signalled."""

import ctypes
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import pidman_wasm
from pidman_wasm import GuestError, PIDManager

if not sys.platform.startswith("linux"):
    pytest.skip("the real-backend scenarios are Linux's", allow_module_level=True)

# The repository this test file lives in (not the installed package's).
REPO = Path(__file__).resolve().parents[3]
SCENARIOS = REPO / "tests" / "conformance" / "real.json"
FIXTURE = REPO / "tests" / "fixtures" / "bengal"
NOBODY = 65534
ROOT = os.geteuid() == 0


def load():
    return json.loads(SCENARIOS.read_text())


def usable_by_others(path):
    """Whether a user other than the owner may run `path` (every directory
    on the way searchable, the file executable, by others)."""
    real = Path(os.path.realpath(path))
    if not real.exists() or not os.stat(real).st_mode & stat.S_IXOTH:
        return False
    return all(os.stat(d).st_mode & stat.S_IXOTH for d in real.parents)


def python_for(user):
    """A Python interpreter `user` may run: this one, else python3 on the
    PATH or the system's."""
    candidates = [sys.executable, shutil.which("python3"), "/usr/bin/python3"]
    for c in candidates:
        if c and (user is None or usable_by_others(c)):
            return c
    pytest.skip(f"no Python interpreter that uid {user} may run")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def state_of(pid):
    """The state letter of /proc/<pid>/stat (None when gone)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat_line[stat_line.rindex(")") + 2]


def wait_for(predicate, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def read_line(proc, timeout=15.0):
    """The first line `proc` prints (its "ready"), within `timeout`."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"{proc.args!r} printed nothing in {timeout} s")
    line = proc.stdout.readline().decode()
    if not line:
        raise AssertionError(f"{proc.args!r} exited before it was ready")
    return line.split()


THREAD_SERVER = (
    "import os, threading, time\n"
    "def sleeper(): time.sleep(120)\n"
    "t = threading.Thread(target=sleeper, daemon=True)\n"
    "t.start()\n"
    "while t.native_id is None: time.sleep(0.001)\n"
    "print('ready', os.getpid(), t.native_id, flush=True)\n"
    "time.sleep(120)\n")

ZOMBIE_PARENT = (
    "import signal, subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, sys.argv[1], 'serve', '--exit'])\n"
    "def stop(*_):\n"
    "    child.wait()\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "print('ready', child.pid, flush=True)\n"
    "time.sleep(120)\n")

LOCK_HOLDER = (
    "import fcntl, sys, time\n"
    "f = open(sys.argv[1], 'a')\n"
    "fcntl.flock(f, fcntl.LOCK_EX)\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n")


class World:
    """What a scenario set up: its directory, PID file, the process it is
    about (and its PID), its port, and everything to stop afterwards."""

    def __init__(self):
        self.dir = Path(os.path.realpath(tempfile.mkdtemp(prefix="pidman-real-")))
        os.chmod(self.dir, 0o755)  # searchable by uid 65534, for root_only rows
        self.pid_file = self.dir / ".bengal.pid"
        self.pid = None
        self.port = None
        self.proc = None  # the scenario's process, when it is our child
        self.children = []  # everything started, to stop and reap

    def start(self, argv, user=None):
        kwargs = {}
        if user is not None:
            kwargs = {"user": user, "group": user, "extra_groups": []}
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                cwd="/", **kwargs)
        self.children.append(proc)
        return proc, read_line(proc)

    def close(self):
        for proc in reversed(self.children):
            if proc.poll() is None:
                # The zombie's parent reaps its child on SIGTERM; the rest
                # are killed outright.
                proc.send_signal(signal.SIGTERM if proc.args[2] == ZOMBIE_PARENT else signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def arrange(world, s):
    py = python_for(None)
    kind = s["process"]
    port_args = []
    if s["listen"]:
        world.port = free_port()
        port_args = ["--port", str(world.port)]
    elif s["call"] == "port":
        world.port = free_port()
    started_at = time.time()
    if kind == "bengal":
        world.proc, line = world.start([py, str(FIXTURE), "serve", *port_args])
        world.pid = int(line[1])
    elif kind == "other":
        world.proc, line = world.start([py, str(FIXTURE), "build"])
        world.pid = int(line[1])
    elif kind == "dead":
        done = subprocess.Popen(["true"])
        done.wait()  # ran and reaped: no process has its PID now
        world.pid = done.pid
    elif kind == "zombie":
        _, line = world.start([py, "-c", ZOMBIE_PARENT, str(FIXTURE)])
        world.pid = int(line[1])
        wait_for(lambda: state_of(world.pid) == "Z", "the zombie")
    elif kind == "thread":
        world.proc, line = world.start([py, "-c", THREAD_SERVER, "bengal", "serve"])
        world.pid = int(line[2])
    elif kind == "empty-argument":
        world.proc, line = world.start([py, str(FIXTURE), "", "serve"])
        world.pid = int(line[1])
    elif kind == "main-exited":
        world.proc, line = world.start([py, str(FIXTURE), "serve", "--main-exits", *port_args])
        world.pid = int(line[1])
        wait_for(lambda: state_of(world.pid) == "Z", "the main thread's exit")
    elif kind == "hidepid":  # root's server, which the caller (65534) will not see
        os.chown(world.dir, NOBODY, NOBODY)
        world.proc, line = world.start([py, str(FIXTURE), "serve", *port_args])
        world.pid = int(line[1])
    elif kind == "other-user":
        world.proc, line = world.start([python_for(NOBODY), str(FIXTURE), "serve", *port_args],
                                       user=NOBODY)
        world.pid = int(line[1])
    elif kind is not None:
        raise AssertionError(f"unknown process {kind!r}")

    if s["lock"] == "root-leftover":
        os.chown(world.dir, NOBODY, NOBODY)
        lock = Path(f"{world.pid_file}.lock")
        lock.write_text("")
        os.chmod(lock, 0o644)  # root's, read-only to the user

    f = s["pid_file"]
    if f is not None:
        contents = f"{world.pid}\n"
        target = world.pid_file
        if f == "garbage":
            contents = "not a pid\n"
        elif f == "oversize":
            contents = str(world.pid).ljust(100)
        elif f == "symlink":
            target = world.dir / "elsewhere.pid"
            os.symlink(target, world.pid_file)
        if f == "fifo":
            os.mkfifo(world.pid_file)
        else:
            target.write_text(contents)
            if f == "world-writable":
                os.chmod(target, 0o666)
            if s["written"] == "before-start":
                os.utime(target, (started_at - 60, started_at - 60))
        if as_nobody(s) and f != "symlink":
            os.chown(world.pid_file, NOBODY, NOBODY, follow_symlinks=False)

    if s["lock"] == "held":
        world.start([py, "-c", LOCK_HOLDER, f"{world.pid_file}.lock"])


def call(world, s):
    """The scenario's call, as this process: {"ok": value} or
    {"error": kind}."""
    grant, path = str(world.dir), str(world.pid_file)
    op = s["call"]
    invoke = PIDManager._plugin_call
    try:
        if op == "check":
            value = invoke(grant, "check-stale-pid", path)
        elif op == "is-bengal":
            value = bool(invoke(grant, "is-bengal-process", world.pid))
        elif op == "kill":
            invoke(grant, "kill-stale-process", world.pid, 2000)
            value = True
        elif op == "port":
            owner = invoke(grant, "get-process-on-port", world.port)
            if owner.tag in ("listener", "holder"):
                value = owner.payload
            elif owner.tag == "free":
                value = None
            else:
                value = {owner.tag: owner.payload}
        elif op == "acquire-release":
            pid = os.getpid()
            claim = invoke(grant, "acquire", path, pid)
            # wasmtime-py leaves the `claim` variant untagged: a held claim
            # is its `holder` record, a granted one the lock.
            if hasattr(claim, "pid"):
                value = "held"
            else:
                invoke(grant, "release", claim, path, pid)
                value = "claimed"
        elif op == "remove":
            value = bool(invoke(grant, "remove-pid-file", path, None))
        else:
            raise AssertionError(f"unknown call {op!r}")
    except GuestError as e:
        return {"error": e.kind}
    return {"ok": value}


def as_nobody(s):
    """Whether the call is made as uid 65534 (root_only rows)."""
    return s["lock"] == "root-leftover" or s["process"] == "hidepid"


def hide_processes():
    """This process's own mount namespace, with /proc mounted hidepid=2
    (the caller must be single-threaded: a forked child)."""
    libc = ctypes.CDLL(None, use_errno=True)
    ms_rec, ms_private, clone_newns = 0x4000, 0x40000, 0x20000
    for what, ret in (
            ("unshare(CLONE_NEWNS)", lambda: libc.unshare(clone_newns)),
            ("make / private", lambda: libc.mount(b"none", b"/", None, ms_rec | ms_private, None)),
            ("mount /proc hidepid=2", lambda: libc.mount(b"proc", b"/proc", b"proc", 0, b"hidepid=2"))):
        if ret() != 0:
            raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def call_as_nobody(world, s):
    """The call made by a forked child running as uid 65534 (it loads its
    own wasmtime instance: the package's fork rule); for a `hidepid`
    process, in its own mount namespace whose /proc hides other users'
    processes."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        code = 1
        try:
            os.close(read_end)
            if s["process"] == "hidepid":
                hide_processes()
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.environ["PIDMAN_CACHE_DIR"] = ""  # root's cache is not nobody's
            os.write(write_end, json.dumps(call(world, s)).encode())
            code = 0
        except BaseException as e:  # noqa: BLE001 (reported to the parent)
            os.write(write_end, json.dumps({"crash": repr(e)}).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as r:
        answer = r.read()
    os.waitpid(child, 0)
    result = json.loads(answer)
    assert "crash" not in result, result["crash"]
    return result


def expected_value(world, value):
    return world.pid if value == "pid" else value


def process_running(world):
    return world.proc.poll() is None


@pytest.mark.parametrize("s", load(), ids=lambda s: s["name"])
def test_real_scenario(real_backend, s):
    if s["root_only"] and not ROOT:
        pytest.skip("root only")
    world = World()
    try:
        arrange(world, s)
        result = call_as_nobody(world, s) if as_nobody(s) else call(world, s)
        expect = s["expect"]
        wanted = expect["result"]
        if "ok" in wanted:
            wanted = {"ok": expected_value(world, wanted["ok"])}
        assert result == wanted
        if expect["pid_file"] == "kept":
            assert os.path.lexists(world.pid_file), "the PID file was removed"
        elif expect["pid_file"] == "removed":
            assert not os.path.lexists(world.pid_file), "the PID file was kept"
        if expect["process"] == "running":
            time.sleep(0.05)
            assert process_running(world), "the process was stopped"
        elif expect["process"] == "gone":
            wait_for(lambda: not process_running(world), "the process to be gone", 2.0)
    finally:
        world.close()


def test_scenarios_are_well_formed():
    keys = {"name", "process", "listen", "pid_file", "written", "lock", "call", "expect",
            "root_only"}
    scenarios = load()
    assert len({s["name"] for s in scenarios}) == len(scenarios)
    for s in scenarios:
        assert set(s) == keys, s["name"]
        assert set(s["expect"]) == {"result", "pid_file", "process"}, s["name"]
