#!/usr/bin/env python3
"""Read compare.sh's hyperfine exports and print medians and ratios."""
import json
import platform
import sys
from pathlib import Path

work, scale, guest_bytes = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])


def medians(name):
    data = json.loads((work / f"{name}.json").read_text())
    return {r["command"]: r["median"] * 1000 for r in data["results"]}


def row(label, m, base, others):
    cells = [f"{m[base]:.2f} ms"]
    for other in others:
        cells.append(f"{other} {m[other]:.2f} ms ({m[other] / m[base]:.1f}x)")
    print(f"| {label} | " + " | ".join(cells) + " |")


print(f"machine: {platform.machine()}, {platform.system()} {platform.release()}, "
      f"{open('/proc/cpuinfo').read().count('processor')} cores")
print("| work | pidman | others (median, ratio to pidman) |")
print("|---|---|---|")
row("check, dead PID (cold process)", medians("check"), "pidman", ["seed"])
row("port owner, one listener", medians("port"), "pidman", ["ss", "lsof", "seed"])
row(f"port owner, +{scale} processes +{scale} sockets", medians("port-scale"), "pidman",
    ["ss", "lsof", "seed"])
row("kill, server exits on SIGTERM", medians("kill"), "pidman", ["seed"])
kt = medians("killtimeout")["pidman"]
print(f"| kill --timeout 0.5, SIGTERM ignored | {kt:.1f} ms ({kt - 500:.1f} ms after the timeout) | |")
print(f"| guest component | {guest_bytes / 1024:.1f} KiB | |")
