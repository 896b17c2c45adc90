#!/usr/bin/env python3
"""Read compare.sh's measurements (hyperfine exports, divan's table, the
installed binary) and print the side-by-side table and issue 13's goals,
each with its measured ratio and whether it is met.

    ratios.py WORK SCALE INSTALLED_BINARY GUEST_WASM
"""
import json
import os
import platform
import re
import sys
from pathlib import Path

work, scale = Path(sys.argv[1]), sys.argv[2]
installed, guest = Path(sys.argv[3]), Path(sys.argv[4])


def medians(name):
    data = json.loads((work / f"{name}.json").read_text())
    return {r["command"]: r["median"] * 1000 for r in data["results"]}


def divan_median_us(name):
    """The median column of divan's row for `name`, in microseconds."""
    units = {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3, "s": 1e6}
    for line in (work / "divan.txt").read_text().splitlines():
        if re.search(rf"\b{name}\b", line):
            cells = [c.strip() for c in line.split("│")]
            value, unit = cells[2].split()
            return float(value) * units[unit]
    raise SystemExit(f"no divan row for {name}")


check, port, scaled, kill, tree = (
    medians(n) for n in ("check", "port", "port-scale", "kill", "tree-scale"))
plugin_us = divan_median_us("plugin_check_live_server")
native_us = divan_median_us("native_check_live_server")
size_mb = installed.stat().st_size / 1e6

cores = os.cpu_count()
print(f"machine: {platform.machine()}, {platform.system()} {platform.release()}, {cores} cores")
print()
print("| work | pidman | others (median; how many times pidman's time) |")
print("|---|---|---|")


def row(label, m, others):
    cells = [f"{m['pidman']:.2f} ms"]
    cells += [f"{o} {m[o]:.2f} ms ({m[o] / m['pidman']:.1f}x)" for o in others]
    print(f"| {label} | " + " | ".join(cells) + " |")


print(f"| start a process: `/bin/true`; `pidman --help` | {check['help']:.2f} ms "
      f"| true {check['true']:.2f} ms |")
row("cold `check`, dead PID", check, ["bengal"])
row("cold `port`, one listener", port, ["ss", "lsof", "bengal"])
row(f"cold `port`, +{scale} processes +{scale} sockets", scaled, ["ss", "lsof", "bengal"])
row("`kill`, a server that exits on SIGTERM", kill, ["bengal"])
print(f"| a server's tree, +{scale} processes (`kill --dry-run`: snapshot and tree) "
      f"| {tree['tree']:.2f} ms | pidman `port` in the same run {tree['port']:.2f} ms |")
print(f"| warm `check` in process, live server | {plugin_us:.1f} us "
      f"| same policy natively {native_us:.1f} us |")
print(f"| installed binary (`cargo install`) | {size_mb:.1f} MB | |")
print(f"| guest component | {guest.stat().st_size / 1024:.1f} KiB | |")
print()

goals = [
    ("cold `check` vs `/bin/true`", check["pidman"] / check["true"], "<=", 2.5, "x"),
    ("cold `check`: Bengal's module vs pidman", check["bengal"] / check["pidman"], ">=", 15, "x"),
    ("`pidman --help` vs `/bin/true`", check["help"] / check["true"], "<=", 1.5, "x"),
    ("`port`, one listener: `ss -ltnp` vs pidman", port["ss"] / port["pidman"], ">=", 2, "x"),
    (f"`port`, +{scale}: `ss` vs pidman", scaled["ss"] / scaled["pidman"], ">=", 3, "x"),
    (f"`port`, +{scale}: `lsof` vs pidman", scaled["lsof"] / scaled["pidman"], ">=", 5, "x"),
    ("warm `check`: plugin vs native", plugin_us / native_us, "<=", 1.3, "x"),
    ("installed binary", size_mb, "<", 20, " MB"),
    (f"tree of a server, +{scale}: vs `port` at that scale (issue 18)",
     tree["tree"] / tree["port"], "<=", 1.0, "x"),
]
print("| goal (issue 13) | target | measured | |")
print("|---|---|---|---|")
for label, value, op, target, unit in goals:
    met = value <= target if op == "<=" else value >= target if op == ">=" else value < target
    print(f"| {label} | {op} {target}{unit} | {value:.2f}{unit} | {'met' if met else 'missed'} |")
