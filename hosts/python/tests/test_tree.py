"""The server is a tree, on real processes: a shell wrapper whose child
listens on loopback is stopped whole through the wrapper's PID. Every test
reaps what it starts, by PID only."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pidman_wasm import PIDManager

# Every test here runs on each real backend (conftest.py), through the
# fixture `real_backend`; LinuxBackend below is the backend under test.
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux processes")


@pytest.fixture(autouse=True)
def _backend(real_backend):
    global LinuxBackend
    LinuxBackend = real_backend
    yield


def free_port():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def listening(port):
    """Whether the port cannot be bound (SO_REUSEADDR: a closed
    connection's remains do not count). Not a connect: with nothing
    listening on an ephemeral port, a connect can meet itself."""
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        probe.close()


def start_token(pid):
    """The start time /proc reports for `pid` (None once it is gone)."""
    try:
        return LinuxBackend().inspect(pid)["start_token"]
    except Exception:
        return None


def gone(pid):
    """Exited: no such process, or a zombie nobody has reaped yet."""
    try:
        return LinuxBackend().state(pid) != "running"
    except Exception:
        return True


@pytest.fixture
def wrapper():
    """`sh -c 'python3 -m http.server ... & wait'`: the shell waits, its
    child listens on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen(
        ["sh", "-c", f"'{sys.executable}' -m http.server --bind 127.0.0.1 {port} & wait"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.port = port
    proc.children = []
    try:
        deadline = time.monotonic() + 20
        while not listening(port):
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield proc
    finally:
        proc.kill()
        proc.wait()
        for pid, token in proc.children:
            if start_token(pid) == token:
                os.kill(pid, signal.SIGKILL)


def test_the_wrapper_and_its_listening_child_are_stopped_together(wrapper):
    holder = PIDManager.get_process_on_port(wrapper.port)
    assert holder is not None and holder != wrapper.pid
    wrapper.children.append((holder, start_token(holder)))
    plan = PIDManager.plan_stop(wrapper.pid)
    assert [m.pid for m in plan] == [wrapper.pid, holder], plan
    assert plan[1].parent == wrapper.pid and "http.server" in plan[1].command
    assert not any(gone(pid) for pid in (wrapper.pid, holder)), "plan signals nothing"
    described = PIDManager.describe_port(wrapper.port)
    assert described.state == "held" and described.holder.listening
    assert [e.pid for e in described.holder.lineage][:2] == [holder, wrapper.pid]

    assert PIDManager.kill_stale_process(wrapper.pid, timeout=5.0) is True
    assert wrapper.wait(timeout=5) == -signal.SIGTERM
    assert gone(holder)
    assert not listening(wrapper.port)
    assert PIDManager.get_process_on_port(wrapper.port) is None
    assert PIDManager.describe_port(wrapper.port).state == "free"


def test_a_snapshot_lists_the_caller_with_its_parent_and_group():
    entries = {e["pid"]: e for e in LinuxBackend().snapshot()}
    me = entries[os.getpid()]
    assert (me["parent"], me["group"], me["state"]) == (os.getppid(), os.getpgrp(), "running")
    assert me["start_token"] == LinuxBackend().inspect(os.getpid())["start_token"]
    info = LinuxBackend().inspect(os.getpid())
    assert (info["parent"], info["group"], info["session"]) == (
        os.getppid(), os.getpgrp(), os.getsid(0))


def test_a_detached_child_leads_its_own_session():
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert LinuxBackend().inspect(child.pid)["session"] == child.pid
        assert LinuxBackend().inspect(os.getpid())["session"] == os.getsid(0) != child.pid
    finally:
        child.kill()
        child.wait()


def test_a_name_that_is_not_utf8_is_read_lossily(real_backend):
    from pidman_wasm.linux import _parse_stat

    line = b"77 (bad\xff) nm) S 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0\n"
    st = _parse_stat(line)
    assert (st.name, st.state, st.parent, st.group, st.session, st.ticks) == (
        "bad\ufffd) nm", "S", 1, 77, 77, 12345)


# A threaded server whose main thread has ended while a worker thread
# serves (the repository's fixture, `bengal serve --main-exits`): /proc
# shows its main thread's state, `Z`, while the process runs and holds its
# port, as every threaded server (Node, Go, a threaded Python) is for a
# moment while it exits.
FIXTURE = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "bengal"


def test_a_server_whose_main_thread_ended_is_alive_until_its_last_thread_ends(tmp_path, real_backend):
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(FIXTURE), "serve", "--port", str(port),
                             "--main-exits"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            with open(f"/proc/{proc.pid}/stat", "rb") as f:
                main_ended = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
            if main_ended and listening(port):
                break
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        assert LinuxBackend().state(proc.pid) == "running"
        pid_file = tmp_path / ".bengal.pid"
        pid_file.write_text(str(proc.pid))
        assert PIDManager.check_stale_pid(pid_file) == proc.pid
        assert pid_file.exists(), "a live server's file is kept"
        assert PIDManager.get_process_on_port(port) == proc.pid
        assert PIDManager.kill_stale_process(proc.pid, timeout=5.0) is True
        assert not listening(port), "killed with the port still held"
        assert proc.wait(timeout=5) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()
