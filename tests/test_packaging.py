"""The installed project: console scripts exist and answer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("script", ["syncd", "syncref"])
def test_console_script_is_installed_and_answers_help(script: str) -> None:
    path = BIN / script
    assert path.exists(), f"{script} is not installed next to {sys.executable}"
    done = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert script in done.stdout
