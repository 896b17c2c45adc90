"""Builds the pidman plugin component into the package: `pip install .` and
`python -m build` run the guest's cargo build (cargo and the wasm32-wasip2
target are needed) and copy `pidman.wasm` into `pidman_wasm/`. An sdist
carries that file, so installing one needs no cargo."""

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
PACKAGED = HERE / "pidman_wasm" / "pidman.wasm"
REPO = HERE.parent.parent


def ensure_plugin() -> None:
    """Put the plugin component at pidman_wasm/pidman.wasm."""
    if not (REPO / "guest" / "Cargo.toml").exists():
        if PACKAGED.exists():
            return  # an sdist: the component came with it
        raise SystemExit("pidman: no guest/ to build and no pidman_wasm/pidman.wasm")
    cargo = os.environ.get("CARGO", "cargo")
    command = [cargo, "build", "-p", "pidman-guest", "--target", "wasm32-wasip2",
               "--profile", "guest"]
    env = {k: v for k, v in os.environ.items()
           if k not in ("RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET")}
    try:
        subprocess.run(command, cwd=REPO, env=env, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(
            f"pidman: building the plugin failed ({e}); it needs cargo and "
            "`rustup target add wasm32-wasip2`") from e
    built = REPO / "target" / "wasm32-wasip2" / "guest" / "pidman_guest.wasm"
    shutil.copyfile(built, PACKAGED)


class BuildPy(build_py):
    def run(self) -> None:
        ensure_plugin()
        super().run()


class Sdist(sdist):
    def run(self) -> None:
        ensure_plugin()
        super().run()


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
