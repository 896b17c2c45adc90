"""Out-of-range numbers (issue 20): wasmtime-py lowers an int into a WIT
u16/u32/u64 modulo its size, so port 70000 was port 4464 and -1 was 65535.
Every public method taking a PID, a port or a timeout raises ValueError for
a number out of range or not finite, TypeError for what is not a number
(a bool or a str included), and never answers about another number."""

import math
import os

import pytest

from pidman_wasm import PIDManager, Preflight

# The longest timeout: a u32 of milliseconds (pidman_wasm.MAX_TIMEOUT_S).
MAX_TIMEOUT_S = (2**32 - 1) / 1000

BAD_PORTS = [70000, 65536, -1, 0, 2**64 + 80]
BAD_PIDS = [-1, -os.getpid(), 2**32, 2**32 + os.getpid(), 2**64]
BAD_TIMEOUTS = [-1, -0.5, math.nan, math.inf, -math.inf, 1e300, 2**64]
NOT_NUMBERS = [True, False, "80", 80.0, None, b"80"]


@pytest.mark.parametrize("port", BAD_PORTS)
def test_a_port_out_of_range_is_a_value_error(tmp_path, port):
    for call in (PIDManager.get_process_on_port, PIDManager.describe_port,
                 lambda p: PIDManager.preflight(tmp_path / ".bengal.pid", port=p)):
        with pytest.raises(ValueError, match="port"):
            call(port)


@pytest.mark.parametrize("port", NOT_NUMBERS[:-2] + [b"80"])
def test_a_port_that_is_not_an_int_is_a_type_error(port):
    with pytest.raises(TypeError):
        PIDManager.get_process_on_port(port)
    with pytest.raises(TypeError):
        PIDManager.describe_port(port)


@pytest.mark.parametrize("pid", BAD_PIDS)
def test_a_pid_out_of_range_is_a_value_error(tmp_path, pid):
    for call in (PIDManager.is_bengal_process, PIDManager.kill_stale_process,
                 PIDManager.plan_stop,
                 lambda p: PIDManager.acquire(tmp_path / ".bengal.pid", pid=p)):
        with pytest.raises(ValueError, match="pid"):
            call(pid)
    assert not (tmp_path / ".bengal.pid").exists()


@pytest.mark.parametrize("pid", [True, "1", 1.0, None])
def test_a_pid_that_is_not_an_int_is_a_type_error(pid):
    with pytest.raises(TypeError):
        PIDManager.is_bengal_process(pid)
    with pytest.raises(TypeError):
        PIDManager.kill_stale_process(pid)


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS)
def test_a_timeout_out_of_range_or_not_finite_is_a_value_error(timeout):
    with pytest.raises(ValueError, match="timeout"):
        # (Our own PID: were the timeout let through, the kill is refused.)
        PIDManager.kill_stale_process(os.getpid(), timeout)
    report = Preflight("/x/.bengal.pid", "stale-server", 5, "bengal serve", False, None,
                       server_record=object())
    with pytest.raises(ValueError, match="timeout"):
        PIDManager.clear_stale(report, timeout=timeout)


@pytest.mark.parametrize("timeout", [True, "5", None])
def test_a_timeout_that_is_not_a_number_is_a_type_error(timeout):
    with pytest.raises(TypeError):
        PIDManager.kill_stale_process(os.getpid(), timeout)


def test_numbers_at_the_ends_of_their_ranges_still_work():
    holder = PIDManager.get_process_on_port(65535)
    assert holder is None or isinstance(holder, int)
    assert PIDManager.describe_port(1).port == 1
    assert PIDManager.is_bengal_process(2**32 - 1) is False
    assert PIDManager.is_bengal_process(0) is False
    # Beyond any PID: no process runs there (nothing is signalled).
    assert PIDManager.plan_stop(2**32 - 1) == []
    assert PIDManager.kill_stale_process(os.getpid(), 0) is False, "never itself"
    assert PIDManager.kill_stale_process(os.getpid(), MAX_TIMEOUT_S) is False
