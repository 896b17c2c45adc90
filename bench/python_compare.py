"""pidman's Python package side by side with Bengal's own PID manager, in
one run, on this machine.

Bengal's module is `bengal/server/pid_manager.py` from the bengal 0.5.1
wheel on PyPI (pinned), with its Python 3.14 `except A, B:` lines written
`except (A, B):` so that it runs on this interpreter; psutil installed, as
its users have it. Both run under the interpreter's real path (never a
shell shim such as pyenv's). Run it with the virtualenv that has
pidman-wasm installed (hosts/test.sh makes target/python-venv):

    target/python-venv/bin/python bench/python_compare.py
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bengal_module import bengal_module

ROUNDS_COLD = 40
ROUNDS_WARM = 3000


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def cold(code: str, pid_file: Path, env: dict) -> float:
    """Median ms of a fresh interpreter importing the module and checking a
    PID file that names a dead PID (the file is rewritten, untimed, each round)."""
    times = []
    for _ in range(ROUNDS_COLD):
        pid_file.write_text(str(dead_pid()))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, str(pid_file)], env=env, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def warm(check, pid_file: Path, expect) -> float:
    """Median us of one in-process check of a file naming a live server."""
    times = []
    for _ in range(ROUNDS_WARM):
        start = time.perf_counter()
        found = check(pid_file)
        times.append(time.perf_counter() - start)
        assert found == expect, found
    return statistics.median(times) * 1e6


def warm_dead(check, pid_file: Path, dead: int) -> float:
    """Median us of one in-process check of a file naming a dead PID (the
    file is rewritten, untimed, before each: the check removes it)."""
    times = []
    for _ in range(ROUNDS_WARM // 3):
        pid_file.write_text(str(dead))
        start = time.perf_counter()
        found = check(pid_file)
        times.append(time.perf_counter() - start)
        assert found is None and not pid_file.exists(), found
    return statistics.median(times) * 1e6


def main() -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "psutil"], check=True)
    work = Path(tempfile.mkdtemp(prefix="pidman-bench-"))
    bengal_module(work)
    env = {k: v for k, v in os.environ.items() if k != "PIDMAN_WASM"}
    env["PYTHONPATH"] = str(work)
    pid_file = work / "project" / ".bengal.pid"
    pid_file.parent.mkdir()

    bengal_cold = cold("import sys; from pathlib import Path; import bengal_pid_manager as m; "
                       "m.PIDManager.check_stale_pid(Path(sys.argv[1]))", pid_file, env)
    pidman_cold = cold("import sys; from pidman_wasm import PIDManager; "
                       "PIDManager.check_stale_pid(sys.argv[1])", pid_file, env)

    sys.path.insert(0, str(work))
    import bengal_pid_manager  # noqa: E402
    from pidman_wasm import PIDManager  # noqa: E402

    fixture = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "bengal"
    server = subprocess.Popen([sys.executable, str(fixture), "serve"], stdout=subprocess.PIPE)
    try:
        assert server.stdout.readline().startswith(b"ready")
        pid_file.write_text(str(server.pid))
        bengal_warm = warm(bengal_pid_manager.PIDManager.check_stale_pid, pid_file, server.pid)
        pidman_warm = warm(PIDManager.check_stale_pid, pid_file, server.pid)
        dead = dead_pid()
        bengal_dead = warm_dead(bengal_pid_manager.PIDManager.check_stale_pid, pid_file, dead)
        pidman_dead = warm_dead(PIDManager.check_stale_pid, pid_file, dead)
    finally:
        server.kill()
        server.wait()

    print(f"python: {os.path.realpath(sys.executable)} ({sys.version.split()[0]}), {BENGAL} + psutil")
    print("| work | Bengal's module | pidman-wasm | ratio |")
    print("|---|---|---|---|")
    print(f"| fresh process: import + first check_stale_pid (dead PID) | {bengal_cold:.1f} ms "
          f"| {pidman_cold:.1f} ms | {pidman_cold / bengal_cold:.2f}x |")
    print(f"| warm check_stale_pid, live server, same process | {bengal_warm:.0f} us "
          f"| {pidman_warm:.0f} us | {pidman_warm / bengal_warm:.2f}x |")
    print(f"| warm check_stale_pid, dead PID (file removed), same process | {bengal_dead:.0f} us "
          f"| {pidman_dead:.0f} us | {pidman_dead / bengal_dead:.2f}x |")


if __name__ == "__main__":
    main()
