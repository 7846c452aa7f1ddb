"""The README stays true: its example runs against a real server."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "readme.db").start()
    yield process
    process.stop()


def test_the_two_commands_are_near_the_top() -> None:
    text = README.read_text()
    commands = re.findall(r"```sh\n(.*?)\n```", text, flags=re.S)
    assert "syncd serve" in commands[0] and "pytest" in commands[1]
    assert text.index(commands[1]) < 1500


def test_the_nine_command_walkthrough_works(server: ServerProcess, tmp_path: Path) -> None:
    block = re.search(r"## Two phones.*?```sh\n(.*?)```", README.read_text(), flags=re.S)
    assert block is not None
    lines = [line.split("   #")[0].strip() for line in block.group(1).splitlines()]
    assert len(lines) == 8  # plus `syncd serve`: nine
    bin_dir = Path(sys.executable).parent
    values: dict[str, str] = {}
    for line in lines:
        command = (line.replace(".venv/bin/", f"{bin_dir}/")
                   .replace("http://127.0.0.1:8787", server.url)
                   .replace("./syncd.db", str(server.db)))
        for name, value in values.items():
            command = command.replace(name, value)
        done = subprocess.run(shlex.split(command), cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, (command, done.stderr)
        if " invite " in command:
            values["CODE1"], values["CODE2"] = done.stdout.split()
        if " group create " in command:
            values["CONV"] = done.stdout.strip()
    assert "Clinic opens at 9 tomorrow" in done.stdout
    assert "+254700000001" in done.stdout


def test_the_library_example_syncs(server: ServerProcess) -> None:
    example = re.search(r"## A phone syncing, as a library\n\n```python\n(.*?)```",
                        README.read_text(), flags=re.S)
    assert example is not None
    code = server.invite("+254700000009")
    source = (example.group(1).replace("http://127.0.0.1:8787", server.url)
              .replace('"K7Q2M-9XDAB"', repr(code)))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(source, "README.md", "exec"), {})
    assert printed.getvalue().startswith("Cursor(lanes=(0, 0, 0, 0)) False []")
