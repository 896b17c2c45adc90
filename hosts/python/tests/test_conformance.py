"""The conformance scenarios (tests/conformance/*.json) through the Python
host: the same plugin, a simulated world, the same decisions as the Rust
host's."""

import json
import os
import re
import time
from pathlib import Path

import pytest
from wasmtime.component import Record, Variant

from pidman_wasm import GuestError, Plugin, plugin_path
from pidman_wasm.simulated import SimBackend

SCENARIOS = Path(__file__).resolve().parents[3] / "tests" / "conformance"


def scenarios():
    for file in sorted(SCENARIOS.glob("*.json")):
        if file.name == "real.json":  # real backends: test_real_conformance.py
            continue
        for s in json.loads(file.read_text()):
            yield pytest.param(s, id=f"{file.stem}: {s['name']}")


@pytest.fixture(scope="session")
def plugin():
    return Plugin(plugin_path())


def arrange(sim, root, world):
    pid_file = root / ".bengal.pid"
    for p in world["processes"]:
        sim.add(p["pid"], sim.process(
            p["argv"], sim.now_ms - p["started_ms_ago"], p["uid"], p["zombie"],
            None if p["on_term"] == "ignore" else p["term_delay_ms"], p["unkillable"],
            parent=p.get("ppid", 1), group=p.get("pgid", p["pid"]), session=p.get("sid", 0),
            respawn=p.get("respawn", False)))
    sim.sockets_.extend(dict(s) for s in world["sockets"])
    if world["lock_held_elsewhere"]:
        sim.locks_held_elsewhere.add(str(root / ".bengal.pid.lock"))
    sim.lock_error = world.get("lock_error")
    # The held lock's record of its claimant, which holds it itself:
    # `<pid> <start token> <group: 0, none> <holder pid> <holder token>`.
    named = world.get("lock_names")
    if named is not None:
        start = sim.processes[named]["start"]
        (root / ".bengal.pid.lock").write_text(f"{named} {start} 0 {named} {start}\n")
    # A claim record nobody holds: `{start:PID}` is PID's start token.
    record = world.get("lock_file")
    if record is not None:
        (root / ".bengal.pid.lock").write_text(re.sub(
            r"\{start:(\d+)\}", lambda m: str(sim.processes[int(m.group(1))]["start"]), record))
    f = world["pid_file"]
    if f is None:
        return
    real = root / "elsewhere.pid" if f["symlink"] else pid_file
    if f["symlink"]:
        pid_file.symlink_to(real)
    real.write_text(f["contents"])
    written = time.time() - f["written_ms_ago"] / 1000
    os.utime(real, (written, written))
    os.chmod(real, f["mode"])
    if "owner_uid" in f:
        sim.file_owners[str(pid_file)] = f["owner_uid"]


def holder_of(status):
    """The port-holder a port status carries, if any."""
    if status.tag in ("held-by-server", "held-by-other"):
        return status.payload
    return None


def preflight_value(report):
    """A preflight report in the scenarios' notation (every key; the test
    compares those the scenario names)."""
    server = report.server
    holder = holder_of(report.port)
    return {
        "verdict": report.verdict,
        "server": server.identity.pid if server is not None else None,
        "tree": [m.identity.pid for m in server.tree] if server is not None else [],
        "port": report.port.tag if isinstance(report.port, Variant) else report.port,
        "lineage": [e.pid for e in holder.lineage] if holder is not None else None,
    }


def description_value(description):
    """A port-description in the scenarios' notation. (wasmtime-py leaves
    this variant untagged: free is None, unknown its uid, held the
    port-holder record.)"""
    if description is None:
        return "free"
    if isinstance(description, int):
        return {"unknown": description}
    holder = description
    orphan = getattr(holder, "orphan-of")
    return {"listening": holder.listening,
            "lineage": [[e.pid, e.role] for e in holder.lineage],
            "orphan_of": orphan.pid if orphan is not None else None}


def members_of(report):
    return [[m.pid, m.outcome] for m in report.members]


def outcome(plugin, sim, root, call):
    """The call's result in the scenarios' notation, and the members of the
    stop report (kill and clear; else None)."""
    pid_file = str(root / ".bengal.pid")
    op = call["op"]
    members = None
    try:
        if op == "check":
            value = plugin.call(sim, str(root), "check-stale-pid", pid_file)
        elif op == "kill":
            report = plugin.call(sim, str(root), "kill-stale-process", call["pid"], call.get("timeout_ms"))
            value, members = report.outcome, members_of(report)
        elif op == "plan":
            plan = plugin.call(sim, str(root), "plan-stop", call["pid"])
            value = [m.identity.pid for m in plan]
        elif op == "describe-port":
            value = description_value(plugin.call(sim, str(root), "describe-port", call["port"], pid_file))
        elif op == "port":
            owner = plugin.call(sim, str(root), "get-process-on-port", call["port"])
            value = owner.tag if owner.payload is None else {owner.tag: owner.payload}
        elif op == "preflight":
            value = preflight_value(plugin.call(sim, str(root), "preflight", pid_file, call.get("port")))
        elif op == "acquire":
            claim = plugin.call(sim, str(root), "acquire", pid_file, call.get("pid"))
            # wasmtime-py leaves this variant untagged: a held claim is its
            # `holder` record, a granted one the lock resource.
            value = {"held": claim.pid} if isinstance(claim, Record) else {"claimed": True}
        elif op == "write":
            value = plugin.call(sim, str(root), "write-pid-file", pid_file, call.get("pid"))
        elif op == "remove":
            value = plugin.call(sim, str(root), "remove-pid-file", pid_file, call.get("pid"))
        elif op == "is-bengal":
            value = plugin.call(sim, str(root), "is-bengal-process", call["pid"])
        elif op == "clear":
            report = plugin.call(sim, str(root), "preflight", pid_file, call.get("port"))
            if report.server is None:
                value = "no-server"
            else:
                cleared = plugin.call(sim, str(root), "clear-stale", pid_file, report.server,
                                      call.get("port"), call.get("timeout_ms"))
                value, members = cleared.stopped.outcome, members_of(cleared.stopped)
        else:
            raise AssertionError(f"unknown op {op}")
    except GuestError as e:
        return {"error": e.kind}, None
    return {"ok": value}, members


def compared(op, result, expected):
    """`result`, with a preflight's answer cut to the keys `expected` names."""
    if op == "preflight" and "ok" in result and isinstance(expected.get("ok"), dict):
        return {"ok": {k: result["ok"].get(k) for k in expected["ok"]}}
    return result


@pytest.mark.parametrize("scenario", list(scenarios()))
def test_scenario(plugin, tmp_path, scenario):
    root = Path(os.path.realpath(tmp_path))
    sim = SimBackend()
    arrange(sim, root, scenario["world"])
    start = sim.now_ms
    result, members = outcome(plugin, sim, root, scenario["call"])
    expect = scenario["expect"]
    assert compared(scenario["call"]["op"], result, expect["result"]) == expect["result"]
    if "members" in expect:
        assert members == expect["members"]
    if "signals" in expect:
        assert [list(s) for s in sim.signals] == expect["signals"]
    if "pid_file" in expect:
        path = root / ".bengal.pid"
        now = path.read_text() if path.is_file() and not path.is_symlink() else None
        if not (path.is_symlink() and expect["pid_file"] is not None):
            assert now == expect["pid_file"]
    if "elapsed_ms" in expect:
        assert sim.now_ms - start == expect["elapsed_ms"]


def test_every_scenario_file_is_read():
    assert len(list(scenarios())) >= 50
