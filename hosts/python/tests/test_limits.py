"""The host's limits in Python, proven with the deliberately broken plugin
(tests/plugins/broken; hosts/test.sh builds it): an endless loop runs out of
fuel, unbounded allocation stops at the memory limit, a path outside the
grant is refused, and so is one through a symlink planted inside it; each
is an exception, and the host carries on."""

import os
import re
import sys

import pytest

from pidman_wasm import GuestError, Plugin, PluginTrap, plugin_path
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


@pytest.mark.skipif(sys.platform == "win32", reason="Windows has no openat: its backend keeps the"
                    " path check alone (pidman_wasm/_files.py)")
def test_a_symlinked_directory_inside_the_grant_leads_nowhere(broken, real_backend, tmp_path):
    # `escape-link` is a symlink, inside the grant, to a directory outside
    # it: the grant's path check passes `<root>/escape-link/...`, and the
    # host must still follow no symlink on the way (the Rust host's test of
    # the same name).
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("x")
    root = tmp_path / "symlink-escape"
    root.mkdir()
    (root / "escape-link").symlink_to(outside)
    grant = os.path.realpath(root)
    with pytest.raises(GuestError) as answered:
        broken.call(real_backend(), grant, "check-stale-pid", f"{grant}/.bengal.pid")
    message = answered.value.message or ""
    # The owner's answer is an error naming the symlink. The lock's is
    # `Ok(false)` ("held"): wasmtime-py's untagged result<option<lock>, error>
    # cannot carry an error to the plugin, so any refusal reads as held.
    assert re.search(r"owner: Err\((Error::)?Untrusted\(.*escape-link.*symlink", message), message
    assert re.search(r"lock: (Ok\(false\)|Err\((Error::)?Untrusted\()", message), message
    assert not (outside / "planted.lock").exists(), "nothing created outside the grant"
    # The backend's own answers, as the WIT error cases they are.
    backend = real_backend()
    for ask in (lambda: backend.file_owner(f"{grant}/escape-link/secret"),
                lambda: backend.try_lock(f"{grant}/escape-link/planted.lock", 0)):
        with pytest.raises(GuestError) as refused:
            ask()
        assert refused.value.kind == "untrusted", refused.value
        assert "escape-link" in (refused.value.message or "")
        assert "never follows" in (refused.value.message or "")
    assert not (outside / "planted.lock").exists(), "nothing created outside the grant"
    # The last step may be a symlink for `owner` (it reports one, never
    # its target); a lock is never taken through one.
    (root / "lock-link").symlink_to(outside / "planted.lock")
    assert backend.file_owner(f"{grant}/lock-link")["symlink"] is True
    with pytest.raises(GuestError) as refused:
        backend.try_lock(f"{grant}/lock-link", 0)
    assert refused.value.kind == "untrusted", refused.value
    assert not (outside / "planted.lock").exists(), "nothing created outside the grant"
    # What lies plainly beneath the grant still works.
    (root / "run").mkdir()
    held = backend.try_lock(f"{grant}/run/x.lock", 0)
    assert held is not None
    assert backend.file_owner(f"{grant}/run/x.lock")["symlink"] is False
    assert backend.file_owner(grant)["uid"] == os.stat(grant).st_uid
    backend.release(held)
