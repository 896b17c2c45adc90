"""Threads and forks (issue 20): any number of threads call at once, a
backend's callback may call pidman again, a forked child's calls work, and
a claim belongs to the process that took it. Each stress or fork runs in a
subprocess or a child with a deadline, so that a crash or a hang fails the
test instead of killing (or stalling) pytest; every child is reaped by PID."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import pidman_wasm
from pidman_wasm import PIDFileHeld, PIDManager, Plugin, plugin_path
from pidman_wasm.simulated import SimBackend

unix_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")


def run_python(code, *args, timeout=240):
    """Run `code` in a fresh interpreter that imports this pidman_wasm."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=timeout)


STRESS = """
    import os, sys, threading
    from pidman_wasm import PIDManager
    root, threads, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    errors, calls = [], []
    start = threading.Barrier(threads)

    def work(n):
        pid_file = os.path.join(root, f"{n % 3}", f"{n}.pid")
        os.makedirs(os.path.dirname(pid_file), exist_ok=True)
        start.wait()
        done = 0
        try:
            for _ in range(rounds):
                with open(pid_file, "w") as f:
                    f.write("999999999")  # not a PID: removed
                assert PIDManager.check_stale_pid(pid_file) is None
                assert not os.path.exists(pid_file)
                assert PIDManager.is_bengal_process(os.getpid()) is False
                done += 2
        except BaseException as e:
            errors.append(repr(e))
        calls.append(done)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print("calls", sum(calls), "errors", len(errors), errors[:3])
"""


def test_many_threads_and_thousands_of_calls_neither_trap_nor_crash(tmp_path):
    run = run_python(STRESS, tmp_path, 12, 200)
    assert run.returncode == 0, f"the interpreter died ({run.returncode}): {run.stderr[-2000:]}"
    assert run.stdout.split() [:4] == ["calls", "4800", "errors", "0"], run.stdout + run.stderr


class Reentrant(SimBackend):
    """A backend whose callback calls pidman again, on the same thread."""

    def __init__(self, plugin, root):
        super().__init__()
        self.plugin, self.root, self.inner = plugin, root, []

    def inspect(self, pid):
        if pid == 4242 and not self.inner:
            self.inner.append(self.plugin.call(SimBackend(), self.root, "is-bengal-process", 4242))
        return super().inspect(pid)


def test_a_callback_may_call_pidman_again(tmp_path):
    plugin = Plugin(plugin_path())
    backend = Reentrant(plugin, str(tmp_path))
    backend.add(4242, backend.process(["bengal", "serve"], backend.now_ms - 1000, 1000))
    assert plugin.call(backend, str(tmp_path), "is-bengal-process", 4242) is True
    assert backend.inner == [False], "the inner call ran, in an instance of its own"


def wait_child(pid, deadline_s):
    """The child's exit status, or None (and the child killed) past the
    deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


@unix_only
def test_a_forked_childs_calls_work(tmp_path):
    pid_file = tmp_path / ".bengal.pid"
    pid_file.write_text("999999999")
    assert PIDManager.check_stale_pid(pid_file) is None  # the parent has used the plugin
    child = os.fork()
    if child == 0:
        code = 1
        try:
            pid_file.write_text("999999999")
            ok = PIDManager.check_stale_pid(pid_file) is None and not pid_file.exists()
            ok = ok and PIDManager.is_bengal_process(os.getpid()) is False
            with PIDManager.acquire(tmp_path / "child.pid") as claim:
                ok = ok and (tmp_path / "child.pid").read_text() == str(os.getpid())
                ok = ok and claim.pid == os.getpid()
            code = 0 if ok and not (tmp_path / "child.pid").exists() else 1
            # A plugin made in the child runs on the child's own wasmtime
            # too: one made with the parent's waited forever on its first
            # file operation.
            plugin = Plugin(plugin_path())
            pid_file.write_text("999999999")
            found = plugin.call(pidman_wasm._Backend(), str(tmp_path), "check-stale-pid",
                                str(pid_file))
            code = code if found is None and not pid_file.exists() else 1
        finally:
            os._exit(code)
    assert wait_child(child, 60) == 0, "the child's calls hung or failed"
    # ... and the parent's still work.
    pid_file.write_text("999999999")
    assert PIDManager.check_stale_pid(pid_file) is None and not pid_file.exists()


HOLDS = """
    import sys
    from pidman_wasm import PIDManager, PIDFileHeld
    try:
        PIDManager.acquire(sys.argv[1]).release()
        print("claimed")
    except PIDFileHeld as e:
        print("held", e.holder)
"""


@unix_only
def test_a_forked_child_leaving_the_block_keeps_the_parents_claim(tmp_path):
    pid_file = tmp_path / ".bengal.pid"
    with PIDManager.acquire(pid_file) as claim:
        child = os.fork()
        if child == 0:
            code = 1
            try:
                # The child leaves the `with` block and calls release().
                code = 0 if claim.release() is False else 3
            finally:
                os._exit(code)
        assert wait_child(child, 60) == 0
        assert pid_file.read_text() == str(os.getpid()), "the file still names the parent"
        other = run_python(HOLDS, pid_file, timeout=60)
        assert other.stdout.split() == ["held", str(os.getpid())], other
    assert not pid_file.exists()
    assert run_python(HOLDS, pid_file, timeout=60).stdout.split() == ["claimed"]


def _worker(pid_file):
    # In a multiprocessing worker forked from a parent that used pidman
    # and holds a claim: a file of its own, not a PID, is removed.
    mine = f"{pid_file}.{os.getpid()}.{time.monotonic_ns()}"
    with open(mine, "w") as f:
        f.write("999999999")
    return (PIDManager.check_stale_pid(mine), PIDManager.is_bengal_process(os.getpid()),
            os.path.exists(mine))


@unix_only
def test_multiprocessing_fork_workers_call_pidman(tmp_path):
    import multiprocessing

    pid_file = str(tmp_path / ".bengal.pid")
    with PIDManager.acquire(pid_file):
        context = multiprocessing.get_context("fork")
        with context.Pool(2) as pool:
            answer = pool.map_async(_worker, [pid_file] * 4)
            try:
                results = answer.get(timeout=60)
            finally:
                pool.terminate()
        assert results == [(None, False, False)] * 4
        assert open(pid_file).read() == str(os.getpid()), "the workers left the claim alone"
    assert not os.path.exists(pid_file)


# --- claims outlive the instance that took them -------------------------


def test_a_claim_outlives_the_eviction_of_its_instance(tmp_path):
    pid_file = tmp_path / "site" / ".bengal.pid"
    claim = PIDManager.acquire(pid_file)
    try:
        # More directories than instances are kept for: the claim's goes.
        for n in range(40):
            (tmp_path / f"d{n}").mkdir()
            assert PIDManager.check_stale_pid(tmp_path / f"d{n}" / ".bengal.pid") is None
        assert run_python(HOLDS, pid_file, timeout=60).stdout.split() == [
            "held", str(os.getpid())], "still held"
    finally:
        removed = claim.release()
    assert removed is True
    assert not pid_file.exists()
    assert run_python(HOLDS, pid_file, timeout=60).stdout.split() == ["claimed"], "released"


def test_a_claim_outlives_a_trap_of_its_instance(tmp_path, monkeypatch):
    import pidman_wasm._runtime as runtime

    pid_file = tmp_path / ".bengal.pid"
    claim = PIDManager.acquire(pid_file)
    try:
        # A call in the same directory runs out of fuel: its instance is
        # dropped.
        monkeypatch.setattr(runtime, "FUEL_PER_CALL", 10)
        with pytest.raises(pidman_wasm.PluginTrap):
            PIDManager.check_stale_pid(pid_file)
        monkeypatch.undo()
        assert pid_file.read_text() == str(os.getpid())
        assert run_python(HOLDS, pid_file, timeout=60).stdout.split() == [
            "held", str(os.getpid())], "still held"
    finally:
        monkeypatch.undo()
        removed = claim.release()
    assert removed is True and not pid_file.exists()
    assert run_python(HOLDS, pid_file, timeout=60).stdout.split() == ["claimed"], "released"
