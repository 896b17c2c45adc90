"""Bengal's own PID manager, timed in process, for bench/node_compare.mjs
(Node cannot call a Python module in its own process: this prints the
medians, in microseconds, as one JSON object).

    python bench/bengal_warm.py DIR PID_FILE LIVE OTHER PORT LISTENER DEAD

DIR holds bengal_pid_manager.py (bench/bengal_module.py writes it); LIVE is
a live Bengal server, OTHER another program, PORT a port LISTENER listens
on, DEAD a PID that is not running. PID_FILE is left naming LIVE.
"""

import json
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    work, pid_file, live, other, port, listener, dead = sys.argv[1:8]
    sys.path.insert(0, work)
    from bengal_pid_manager import PIDManager as B

    pid_file = Path(pid_file)
    live, other, port, listener, dead = int(live), int(other), int(port), int(listener), int(dead)

    def warm(call, rounds, expect, prepare=None):
        times = []
        for _ in range(rounds):
            if prepare:
                prepare()
            start = time.perf_counter()
            found = call()
            times.append(time.perf_counter() - start)
            assert expect(found), found
        return statistics.median(times) * 1e6

    out = {}
    pid_file.write_text(str(live))
    out["checkLive"] = warm(lambda: B.check_stale_pid(pid_file), 2000, lambda f: f == live)
    out["checkDead"] = warm(lambda: B.check_stale_pid(pid_file), 600,
                            lambda f: f is None and not pid_file.exists(),
                            lambda: pid_file.write_text(str(dead)))
    out["isBengalLive"] = warm(lambda: B.is_bengal_process(live), 2000, lambda f: f is True)
    out["isBengalOther"] = warm(lambda: B.is_bengal_process(other), 2000, lambda f: f is False)
    out["port"] = warm(lambda: B.get_process_on_port(port), 60, lambda f: f == listener)
    pid_file.write_text(str(live))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
