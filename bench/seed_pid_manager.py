#!/usr/bin/env python3
"""Bengal's seed PID manager, re-implemented for the side-by-side benchmark.

The algorithms of the seed pidman replaces: psutil for the process table,
`lsof` for port owners, a 0.1 s poll after SIGTERM. Usage:

    seed_pid_manager.py check PID_FILE
    seed_pid_manager.py port PORT
    seed_pid_manager.py kill PID [TIMEOUT]
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil


class PIDManager:
    @staticmethod
    def get_pid_file(project_root):
        return Path(project_root) / ".bengal.pid"

    @staticmethod
    def is_bengal_process(pid):
        try:
            cmdline = psutil.Process(pid).cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return False
        for i in range(len(cmdline) - 1, -1, -1):
            base = os.path.basename(cmdline[i]).lower()
            if base in ("bengal", "bengal.cli", "bengal.__main__"):
                return i + 1 < len(cmdline) and cmdline[i + 1] in ("serve", "s", "dev")
        return False

    @staticmethod
    def check_stale_pid(pid_file):
        pid_file = Path(pid_file)
        if not pid_file.exists():
            return None
        try:
            pid = int(pid_file.read_text().strip())
        except (ValueError, OSError):
            pid_file.unlink(missing_ok=True)
            return None
        if not psutil.pid_exists(pid) or not PIDManager.is_bengal_process(pid):
            pid_file.unlink(missing_ok=True)
            return None
        return pid

    @staticmethod
    def kill_stale_process(pid, timeout=5.0):
        try:
            proc = psutil.Process(pid)
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                    return True
                time.sleep(0.1)
            proc.kill()
            return True
        except psutil.NoSuchProcess:
            return True
        except psutil.AccessDenied:
            return False

    @staticmethod
    def get_process_on_port(port):
        try:
            out = subprocess.run(
                ["lsof", "-ti", f":{port}"], capture_output=True, text=True, timeout=5
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        pids = [int(p) for p in out.split()]
        return pids[0] if pids else None


if __name__ == "__main__":
    command, arg = sys.argv[1], sys.argv[2]
    if command == "check":
        sys.exit(0 if PIDManager.check_stale_pid(arg) else 1)
    if command == "port":
        pid = PIDManager.get_process_on_port(int(arg))
        if pid:
            print(pid)
        sys.exit(0 if pid else 1)
    if command == "kill":
        timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
        sys.exit(0 if PIDManager.kill_stale_process(int(arg), timeout) else 1)
    sys.exit(2)
