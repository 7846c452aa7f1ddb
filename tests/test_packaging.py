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


def test_every_migration_script_ships_as_package_data() -> None:
    """A non-editable install carries only the files package-data names: every SQLite and
    PostgreSQL migration script must match one of its patterns."""
    import tomllib

    root = Path(__file__).parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["syncd.storage"]
    storage = root / "syncd" / "storage"
    scripts = {path.relative_to(storage) for path in storage.rglob("*.sql")}
    shipped = {path.relative_to(storage) for pattern in patterns for path in storage.glob(pattern)}
    assert Path("migrations/postgresql/0001_initial.sql") in scripts
    assert scripts == shipped
