"""The README stays true: its example runs against a real server."""

from __future__ import annotations

import contextlib
import io
import re
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


def test_the_phone_example_syncs(server: ServerProcess) -> None:
    example = re.search(r"## A phone syncing\n\n```python\n(.*?)```", README.read_text(),
                        flags=re.S)
    assert example is not None
    code = server.invite("+254700000001")
    source = (example.group(1).replace("http://127.0.0.1:8787", server.url)
              .replace('"K7Q2M-9XDAB"', repr(code)))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(source, "README.md", "exec"), {})
    assert printed.getvalue().startswith("Cursor(lanes=(0, 0, 0, 0)) False []")
