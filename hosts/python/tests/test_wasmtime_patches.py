"""What the package changes in wasmtime-py 50 for speed (`_reuse_types` in
pidman_wasm/_runtime.py): a callback's types are worked out on its first
call and kept, in the installed wasmtime-py and in a forked child's private
copy, and so is an export's; a type's structure is kept on it and handed
out as copies. (That
results are unchanged is what every other test checks.)"""

import os

import pytest

from pidman_wasm import Plugin, _runtime, plugin_path

from test_log_level import check_dead
from test_threads_and_fork import unix_only, wait_child


def types_built(plugin, directory):
    """How many times a dead PID's check builds an import's type (wasmtime
    passes it with the store as its owner) and an export's (no owner)."""
    func_type = plugin.rt._linker.FuncType
    original = func_type._from_ptr
    owners = []

    def counted(cls, ptr, owner=None):
        owners.append(owner)
        return original(ptr, owner)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(func_type, "_from_ptr", classmethod(counted))
        check_dead(plugin, directory)
    imports = sum(owner is not None for owner in owners)
    return imports, len(owners) - imports


def test_a_callbacks_types_are_worked_out_once(tmp_path):
    plugin = Plugin(plugin_path(), log_level="debug")
    assert types_built(plugin, tmp_path)[0] > 0
    assert types_built(plugin, tmp_path)[0] == 0


def test_an_exports_types_are_worked_out_once(tmp_path):
    plugin = Plugin(plugin_path())
    assert types_built(plugin, tmp_path)[1] > 0
    assert types_built(plugin, tmp_path)[1] == 0


def test_another_users_func_gets_its_own_type_each_time(tmp_path):
    # Only the package's own exports keep their type: anyone else's `Func`
    # gets a new one each time, which its caller may close.
    plugin = Plugin(plugin_path())
    check_dead(plugin, tmp_path)
    session = next(iter(plugin._idle.values()))[-1]
    index = session.instance.get_export_index(session.store, "check-stale-pid", session.manager)
    theirs = session.instance.get_func(session.store, index)
    first = theirs.type(session.store)
    with first:
        pass  # closed, as a `with` block leaves it
    second = theirs.type(session.store)
    assert second is not first and second.result is not None
    ours = session.func("check-stale-pid")
    assert ours.type(session.store) is ours.type(session.store)


def test_a_types_structure_is_kept_and_handed_out_as_copies(tmp_path):
    plugin = Plugin(plugin_path())
    check_dead(plugin, tmp_path)
    kept = [f.types for f in plugin.rt._linker.FUNCTIONS.handles.values()
            if isinstance(f, _runtime._HostFunc) and f.types is not None]
    inspect = [result for _, result in kept
               if isinstance(result, plugin.rt._types.ResultType)
               and isinstance(result.ok, plugin.rt._types.RecordType)
               and "argv" in dict(result.ok.fields)]
    assert inspect, "process-table.inspect ran and kept its types"
    record = inspect[0].ok
    first, second = record.fields, record.fields
    assert first == second and first is not second
    assert first[0][1] is second[0][1]  # the same field type, not a rebuilt one
    first.clear()
    assert len(record.fields) == len(second)


@unix_only
def test_a_forked_childs_private_wasmtime_keeps_types_too(tmp_path):
    plugin = Plugin(plugin_path())
    check_dead(plugin, tmp_path)
    child = os.fork()
    if child == 0:
        code = 1
        try:
            check_dead(plugin, tmp_path)
            wt, rt = _runtime._current_wasmtime()
            ours = [f for f in rt._linker.FUNCTIONS.handles.values()
                    if isinstance(f, _runtime._HostFunc)]
            private = rt is not _runtime.c and plugin.rt is rt
            code = 0 if private and any(f.types is not None for f in ours) else 1
        finally:
            os._exit(code)
    assert wait_child(child, 60) == 0, "the child's wasmtime did not keep its callbacks' types"
