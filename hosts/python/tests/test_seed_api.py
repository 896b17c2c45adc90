"""The seed's API (PIDManager.*) on real processes and sockets on loopback.
Every test reaps what it starts and signals only its own children."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pidman_wasm import PIDManager

FIXTURE = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "bengal"

# Every test here runs on each real backend (conftest.py).
pytestmark = pytest.mark.usefixtures("real_backend")


@pytest.fixture
def server():
    """A fake Bengal server (argv: bengal serve), listening on a free port."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = subprocess.Popen([sys.executable, str(FIXTURE), "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout.readline().startswith(b"ready")
    proc.port = port
    yield proc
    proc.kill()
    proc.wait()


def test_get_pid_file(tmp_path):
    assert PIDManager.get_pid_file(tmp_path) == tmp_path / ".bengal.pid"


def test_missing_file_is_none(tmp_path):
    assert PIDManager.check_stale_pid(tmp_path / ".bengal.pid") is None
    assert list(tmp_path.iterdir()) == []


def test_a_live_server_is_reported_and_kept(tmp_path, server):
    pid_file = tmp_path / ".bengal.pid"
    pid_file.write_text(f"{server.pid}\n")
    assert PIDManager.is_bengal_process(server.pid)
    assert PIDManager.check_stale_pid(pid_file) == server.pid
    assert pid_file.exists()


def test_garbage_and_dead_pids_are_removed(tmp_path):
    pid_file = tmp_path / ".bengal.pid"
    for contents in ["garbage", "-5", "0x1F", "", "4294967296"]:
        pid_file.write_text(contents)
        assert PIDManager.check_stale_pid(pid_file) is None
        assert not pid_file.exists(), contents
    dead = subprocess.Popen(["true"])
    dead.wait()
    pid_file.write_text(str(dead.pid))
    assert PIDManager.check_stale_pid(pid_file) is None
    assert not pid_file.exists()


def test_port_owner_and_kill(tmp_path, server):
    assert PIDManager.get_process_on_port(server.port) == server.pid
    assert PIDManager.kill_stale_process(server.pid, timeout=2.0)
    # It died of SIGTERM: no SIGKILL was needed.
    assert server.wait(timeout=5) == -signal.SIGTERM


def test_refuses_pid_1_and_itself():
    assert not PIDManager.kill_stale_process(1)
    assert not PIDManager.kill_stale_process(os.getpid())


def test_write_pid_file_is_the_bare_pid(tmp_path):
    pid_file = tmp_path / "run" / ".bengal.pid"
    PIDManager.write_pid_file(pid_file)
    assert pid_file.read_text() == str(os.getpid())
    assert int(pid_file.read_text()) == os.getpid()
