"""The host's limits in Python, proven with the deliberately broken plugin
(tests/plugins/broken; hosts/test.sh builds it): an endless loop runs out of
fuel, unbounded allocation stops at the memory limit, a path outside the
grant is refused; each is an exception, and the host carries on."""

import os

import pytest

from pidman_wasm import Plugin, PluginTrap, plugin_path
from pidman_wasm.simulated import SimBackend


@pytest.fixture(scope="module")
def broken():
    return Plugin(os.environ["PIDMAN_BROKEN_WASM"])


def test_an_endless_loop_runs_out_of_fuel(broken, tmp_path):
    with pytest.raises(PluginTrap, match="fuel"):
        broken.call(SimBackend(), str(tmp_path), "check-stale-pid", str(tmp_path / ".bengal.pid"))


def test_a_wait_for_exit_asked_for_forever_is_stopped_by_the_budget(tmp_path):
    broken = Plugin(os.environ["PIDMAN_BROKEN_WASM"])
    broken.budget_s = 0.3
    with pytest.raises(PluginTrap, match="time budget"):
        broken.call(SimBackend(), str(tmp_path), "remove-pid-file", str(tmp_path / ".bengal.pid"), None)


def test_unbounded_allocation_stops_at_the_memory_limit(broken, tmp_path):
    with pytest.raises(PluginTrap):
        broken.call(SimBackend(), str(tmp_path), "is-bengal-process", 5)


def test_the_host_carries_on(broken, tmp_path):
    root = str(tmp_path)
    assert broken.call(SimBackend(), root, "get-pid-file", root) == f"{root}/.bengal.pid"


def test_files_outside_the_grant_are_denied(tmp_path):
    from pidman_wasm._runtime import granted

    grant = str(tmp_path)
    for outside in ["/etc/passwd", f"{tmp_path}/../x", f"{tmp_path}", "relative",
                    f"{tmp_path}-other/x", f"{tmp_path}x", f"{tmp_path}/./x", ""]:
        with pytest.raises(Exception, match="outside the directory granted"):
            granted(grant, outside)
    assert granted(grant, f"{tmp_path}/.bengal.pid") == f"{tmp_path}/.bengal.pid"
    assert granted(grant, f"{tmp_path}/run/x.pid") == f"{tmp_path}/run/x.pid"
    # Its own owner may be looked at; nothing above it, still.
    assert granted(grant, grant, itself=True) == grant
    for outside in [os.path.dirname(grant), f"{tmp_path}-other", f"{tmp_path}/.."]:
        with pytest.raises(Exception, match="outside the directory granted"):
            granted(grant, outside, itself=True)
    # The root directory granted: everything below it is inside (a prefix
    # check of "/" + "/" admitted nothing).
    assert granted("/", "/x.pid") == "/x.pid"
