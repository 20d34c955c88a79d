"""The installed package carries the twistd plugin, so twistd finds it from site-packages."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_contains_the_plugin_and_the_package(tmp_path: Path) -> None:
    """A built wheel holds twisted/plugins/b2bua_plugin.py, b2bua/tap.py and py.typed."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("b2bua-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/b2bua_plugin.py" in names
    assert "twisted/plugins/__init__.py" not in names
    assert {"b2bua/tap.py", "b2bua/config.py", "b2bua/py.typed"} <= names
