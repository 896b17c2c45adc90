"""The installed package: it carries its plugin, runs its README's example
with no environment variable, caches the compiled component by the Rust
host's rules, and holds a claim for a server's life."""

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import pidman_wasm
from pidman_wasm import GuestError, PIDFileHeld, PIDManager, PIDManError, Plugin, PluginTrap

README = Path(__file__).resolve().parents[1] / "README.md"


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "PIDMAN_WASM"}
    env.update(extra)
    return env


def test_the_package_carries_its_plugin(monkeypatch):
    monkeypatch.delenv("PIDMAN_WASM", raising=False)
    path = Path(pidman_wasm.plugin_path())
    assert path.parent == Path(pidman_wasm.__file__).parent
    assert path.read_bytes()[:8] == b"\0asm\x0d\0\x01\0", "a component"
    assert (path.parent / "py.typed").exists()
    if os.environ.get("PIDMAN_EXPECT_INSTALLED"):
        assert "site-packages" in pidman_wasm.__file__, pidman_wasm.__file__


def test_the_readme_example_runs_with_no_environment_variable(tmp_path):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / ".bengal.pid").exists()


def test_the_compiled_plugin_is_cached_privately_and_reused(tmp_path):
    cache = tmp_path / "cache"
    Plugin(pidman_wasm.plugin_path(), cache_dir=cache)
    entries = list(cache.iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".cwasm"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE(entries[0].stat().st_mode) == 0o600
    before = entries[0].stat().st_mtime_ns
    Plugin(pidman_wasm.plugin_path(), cache_dir=cache)
    assert entries[0].stat().st_mtime_ns == before, "reused, not rewritten"
    # A corrupt entry is recompiled and replaced, never loaded.
    entries[0].write_bytes(b"not native code")
    entries[0].chmod(0o600)
    Plugin(pidman_wasm.plugin_path(), cache_dir=cache)
    assert entries[0].stat().st_size > 1000
    # A directory others may write is not used.
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    Plugin(pidman_wasm.plugin_path(), cache_dir=shared)
    assert list(shared.iterdir()) == []


def test_a_claim_holds_the_file_for_the_servers_life(tmp_path):
    pid_file = tmp_path / "run" / ".bengal.pid"
    with PIDManager.acquire(pid_file) as claim:
        assert pid_file.read_text() == str(os.getpid()) == str(claim.pid)
        other = subprocess.run(
            [sys.executable, "-c",
             "import sys\nfrom pidman_wasm import PIDManager, PIDFileHeld\n"
             "try:\n    PIDManager.acquire(sys.argv[1])\nexcept PIDFileHeld as e:\n"
             "    print('held', e.holder)\n",
             str(pid_file)],
            env=clean_env(PYTHONPATH=os.pathsep.join(sys.path)), capture_output=True, text=True,
            timeout=60)
        assert other.stdout.strip() == f"held {os.getpid()}", other
        assert PIDManager.check_stale_pid(pid_file) is None, "never reports the caller"
    assert not pid_file.exists()


def test_remove_keeps_a_live_claimants_file(tmp_path):
    pid_file = tmp_path / ".bengal.pid"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom pidman_wasm import PIDManager\n"
         "with PIDManager.acquire(sys.argv[1]):\n    print('ready', flush=True)\n    time.sleep(60)\n",
         str(pid_file)],
        env=clean_env(PYTHONPATH=os.pathsep.join(sys.path)), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(GuestError) as refused:
            PIDManager.remove(pid_file)
        assert refused.value.kind == "denied"
        assert pid_file.read_text() == str(holder.pid)
        report = PIDManager.preflight(pid_file)
        assert (report.verdict, report.server_pid, report.claimed) == (
            "stale-server", holder.pid, True)
    finally:
        holder.kill()
        holder.wait()


def test_errors_are_one_family_and_nothing_is_lost(tmp_path):
    assert issubclass(GuestError, PIDManError) and issubclass(PluginTrap, PIDManError)
    assert issubclass(PIDFileHeld, PIDManError)
    fifo = tmp_path / ".bengal.pid"
    os.mkfifo(fifo)
    assert PIDManager.check_stale_pid(fifo) is None
    with pytest.raises(GuestError) as refused:
        PIDManager.acquire(fifo)
    assert refused.value.kind == "invalid"
    assert stat.S_ISFIFO(fifo.stat().st_mode), "kept"
    assert PIDManager.write_pid_file(tmp_path / "x" / "server.pid") is None
    assert (tmp_path / "x" / "server.pid").read_text() == str(os.getpid())
