"""The conformance scenarios (tests/conformance/*.json) through the Python
host: the same plugin, a simulated world, the same decisions as the Rust
host's."""

import json
import os
import time
from pathlib import Path

import pytest
from wasmtime.component import Record

from pidman_wasm import GuestError, Plugin, plugin_path
from pidman_wasm.simulated import SimBackend

SCENARIOS = Path(__file__).resolve().parents[3] / "tests" / "conformance"


def scenarios():
    for file in sorted(SCENARIOS.glob("*.json")):
        for s in json.loads(file.read_text()):
            yield pytest.param(s, id=f"{file.stem}: {s['name']}")


@pytest.fixture(scope="session")
def plugin():
    return Plugin(plugin_path())


def arrange(sim, root, world):
    pid_file = root / ".bengal.pid"
    for p in world["processes"]:
        sim.processes[p["pid"]] = sim.process(
            p["argv"], sim.now_ms - p["started_ms_ago"], p["uid"], p["zombie"],
            None if p["on_term"] == "ignore" else p["term_delay_ms"], p["unkillable"])
    sim.sockets_.extend(world["sockets"])
    if world["lock_held_elsewhere"]:
        sim.locks_held_elsewhere.add(str(root / ".bengal.pid.lock"))
    sim.lock_error = world.get("lock_error")
    # The held lock's record of its claimant: `<pid> <start token>`.
    named = world.get("lock_names")
    if named is not None:
        start = sim.processes[named]["start"]
        (root / ".bengal.pid.lock").write_text(f"{named} {start}\n")
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


def outcome(plugin, sim, root, call):
    pid_file = str(root / ".bengal.pid")
    op = call["op"]
    try:
        if op == "check":
            value = plugin.call(sim, str(root), "check-stale-pid", pid_file)
        elif op == "kill":
            value = plugin.call(sim, str(root), "kill-stale-process", call["pid"], call.get("timeout_ms"))
        elif op == "port":
            owner = plugin.call(sim, str(root), "get-process-on-port", call["port"])
            value = owner.tag if owner.payload is None else {owner.tag: owner.payload}
        elif op == "preflight":
            report = plugin.call(sim, str(root), "preflight", pid_file, call.get("port"))
            server = report.server.identity.pid if report.server is not None else None
            value = {"verdict": report.verdict, "server": server}
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
                value = cleared.outcome
        else:
            raise AssertionError(f"unknown op {op}")
    except GuestError as e:
        return {"error": e.kind}
    return {"ok": value}


@pytest.mark.parametrize("scenario", list(scenarios()))
def test_scenario(plugin, tmp_path, scenario):
    root = Path(os.path.realpath(tmp_path))
    sim = SimBackend()
    arrange(sim, root, scenario["world"])
    start = sim.now_ms
    result = outcome(plugin, sim, root, scenario["call"])
    expect = scenario["expect"]
    assert result == expect["result"]
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
