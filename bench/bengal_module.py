"""Bengal's own PID manager, the peer pidman is measured against.

`bengal/server/pid_manager.py` from the bengal 0.5.1 wheel on PyPI
(pinned), with its Python 3.14 `except A, B:` lines written `except (A, B):`
so that it runs on 3.10 to 3.13; nothing else is changed. It needs psutil,
as its users have it.

    python bench/bengal_module.py DIR   # writes DIR/bengal_pid_manager.py
"""

import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

BENGAL = "bengal==0.5.1"


def bengal_module(dest: Path) -> Path:
    """Write Bengal's pid_manager.py, runnable here, as
    dest/bengal_pid_manager.py."""
    with tempfile.TemporaryDirectory() as work:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", "--python-version", "3.14", BENGAL,
                        "-d", work], check=True)
        wheel = next(Path(work).glob("bengal-*.whl"))
        source = zipfile.ZipFile(wheel).read("bengal/server/pid_manager.py").decode()
    source = re.sub(r"except ([\w.]+(?:, [\w.]+)+):", r"except (\1):", source)
    module = dest / "bengal_pid_manager.py"
    module.write_text(source)
    return module


if __name__ == "__main__":
    print(bengal_module(Path(sys.argv[1])))
