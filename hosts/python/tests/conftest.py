"""Shared fixtures. `real_backend` runs a test once per real backend this
system can run: on Linux both the /proc one (the default there) and the
psutil one (macOS's and Windows's), so that the psutil backend is exercised
on real processes in Linux CI too."""

import sys

import pytest

import pidman_wasm

BACKENDS = ["linux", "psutil"] if sys.platform.startswith("linux") else ["psutil"]


def backend_class(name):
    if name == "linux":
        from pidman_wasm.linux import LinuxBackend

        return LinuxBackend
    from pidman_wasm.portable import PsutilBackend

    return PsutilBackend


@pytest.fixture(params=BACKENDS)
def real_backend(request, monkeypatch):
    """The backend class PIDManager uses for this test (by name)."""
    cls = backend_class(request.param)
    monkeypatch.setattr(pidman_wasm, "_Backend", cls)
    monkeypatch.setattr(pidman_wasm, "_BACKEND_NAME", request.param)
    return cls
