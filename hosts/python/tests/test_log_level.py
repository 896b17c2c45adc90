"""The plugin's log level (`Plugin.log_level`, the `set-log-level` export):
a message below it never crosses into Python, `Plugin.log` keeps what is at
or above it, and an instance is told the level only when it changes. On
real processes (a dead PID's file, which the check removes, logging why)
with the real backend."""

import fcntl
import os
import subprocess
import threading
from collections import Counter

import pytest

import pidman_wasm
from pidman_wasm import Plugin, plugin_path

from test_threads_and_fork import unix_only, wait_child


def dead_pid():
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


class Counting:
    """A plugin's `log.emit` crossings and `set-log-level` calls, counted
    (the plugin's callback calls `_emit` once per crossing)."""

    def __init__(self, plugin, monkeypatch):
        self.emits = 0
        #: Crossings by the thread whose call made them (a callback runs
        #: on the thread that called the plugin).
        self.emits_by_thread = Counter()
        self.level_calls = 0
        self._mutex = threading.Lock()
        emit, set_level = plugin._emit, plugin._set_log_level

        def counted_emit(level, message):
            with self._mutex:
                self.emits += 1
                self.emits_by_thread[threading.get_ident()] += 1
            emit(level, message)

        def counted_set(session, least, budget):
            with self._mutex:
                self.level_calls += 1
            set_level(session, least, budget)

        monkeypatch.setattr(plugin, "_emit", counted_emit)
        monkeypatch.setattr(plugin, "_set_log_level", counted_set)


@pytest.fixture
def plugin(monkeypatch):
    plugin = Plugin(plugin_path())
    plugin.counted = Counting(plugin, monkeypatch)
    return plugin


def check_dead(plugin, directory, name=".bengal.pid"):
    """check-stale-pid of a file naming a dead PID (removed): its log."""
    pid_file = directory / name
    pid_file.write_text(str(dead_pid()))
    grant, path = pidman_wasm.resolve(pid_file)
    assert plugin.call(pidman_wasm._Backend(), grant, "check-stale-pid", path) is None
    assert not pid_file.exists()
    return plugin.log


def check_dead_while_locked(plugin, directory):
    """The same with the file's lock held elsewhere: the check leaves the
    file, warning that it does not hold the lock. Its log."""
    pid_file = directory / ".bengal.pid"
    pid_file.write_text(str(dead_pid()))
    grant, path = pidman_wasm.resolve(pid_file)
    with open(f"{pid_file}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert plugin.call(pidman_wasm._Backend(), grant, "check-stale-pid", path) is None
    assert pid_file.exists()
    return plugin.log


def below_warn(log):
    return [line for line in log if line.startswith(("debug:", "info:"))]


def test_by_default_no_message_below_warn_crosses_into_python(plugin, tmp_path):
    assert plugin.log_level == "warn"
    for _ in range(3):
        assert check_dead(plugin, tmp_path) == []
    assert plugin.counted.emits == 0
    # Told once, by the first call; the pooled instance keeps it.
    assert plugin.counted.level_calls == 1


def test_debug_keeps_the_checks_reasons(tmp_path):
    plugin = Plugin(plugin_path(), log_level="debug")
    log = check_dead(plugin, tmp_path)
    assert any("not running" in line for line in log), log
    assert any(line.startswith("debug:") for line in log), log
    assert any(line.startswith("info:") for line in log), log


def test_warnings_still_arrive_at_the_default_level(plugin, tmp_path):
    log = check_dead_while_locked(plugin, tmp_path)
    assert len(log) == 1 and log[0].startswith("warn:"), log
    assert "does not hold its lock" in log[0]


def test_switching_levels_on_a_pooled_instance_takes_effect(plugin, tmp_path):
    grant, _ = pidman_wasm.resolve(tmp_path / ".bengal.pid")
    plugin.log_level = "debug"
    assert below_warn(check_dead(plugin, tmp_path))
    emits = plugin.counted.emits
    assert emits >= 2
    # A new instance sends everything already: "debug" needed no call.
    assert plugin.counted.level_calls == 0

    plugin.log_level = "warn"
    assert check_dead(plugin, tmp_path) == []
    assert plugin.counted.emits == emits
    assert plugin.counted.level_calls == 1

    plugin.log_level = "debug"
    assert any("not running" in line for line in check_dead(plugin, tmp_path))
    assert plugin.counted.emits > emits
    assert plugin.counted.level_calls == 2
    # One instance did it all.
    assert len(plugin._idle[grant]) == 1

    # The same level again costs no call.
    check_dead(plugin, tmp_path)
    assert plugin.counted.level_calls == 2


def test_none_keeps_no_message(plugin, tmp_path):
    plugin.log_level = None
    assert check_dead(plugin, tmp_path) == []
    assert check_dead_while_locked(plugin, tmp_path) == []  # not even a warning
    assert plugin.counted.emits == 0


@pytest.mark.parametrize("bad", ["error", "WARN", "", 0, True, ["warn"]])
def test_a_bad_log_level_is_a_value_error(bad):
    with pytest.raises(ValueError, match="log_level"):
        Plugin(plugin_path(), log_level=bad)
    plugin = Plugin(plugin_path(), log_level="info")
    with pytest.raises(ValueError, match="log_level"):
        plugin.log_level = bad
    assert plugin.log_level == "info"


def test_instances_made_on_other_threads_are_told_too(plugin, tmp_path):
    """Threads calling at once take instances of their own (new ones while
    the pooled ones are busy): each is told the level once, before its first
    call, and told again only when the level changes."""
    def run_threads(messages):
        """Each of 4 threads checks 3 dead PIDs; `messages`: whether each
        check's call sent messages. The number of instances pooled."""
        errors = []
        barrier = threading.Barrier(4)
        emits = plugin.counted.emits_by_thread

        def work(n):
            directory = tmp_path / str(n % 2)  # two threads per directory
            me = threading.get_ident()
            barrier.wait()
            try:
                for _ in range(3):
                    before = emits[me]
                    check_dead(plugin, directory, f"{n}.pid")
                    assert (emits[me] > before) == messages
            except BaseException as e:  # failed below, on the main thread
                errors.append(e)
        for n in range(2):
            (tmp_path / str(n)).mkdir(exist_ok=True)
        workers = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        return sum(len(idle) for idle in plugin._idle.values())

    instances = run_threads(messages=False)
    assert plugin.counted.level_calls == instances
    plugin.log_level = "debug"
    run_threads(messages=True)
    # Only instances told "warn" are told "debug" (each at most once); new
    # ones need no call.
    assert instances < plugin.counted.level_calls <= 2 * instances


@unix_only
def test_a_forked_childs_instances_are_told_too(plugin, tmp_path):
    """A forked child makes its instances anew, from its own wasmtime: they
    are told the level as the parent's were."""
    assert check_dead(plugin, tmp_path) == []  # the parent's instance told
    child = os.fork()
    if child == 0:
        code = 1
        try:
            quiet = check_dead(plugin, tmp_path) == [] and plugin.counted.emits == 0
            plugin.log_level = "debug"
            told = any("not running" in line for line in check_dead(plugin, tmp_path))
            code = 0 if quiet and told else 1
        finally:
            os._exit(code)
    assert wait_child(child, 60) == 0, "the child's log did not follow its level"
