"""protocol/ is pure: it imports the standard library and cbor2, nothing that does I/O."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "protocol"
ALLOWED_THIRD_PARTY = {"cbor2"}
FORBIDDEN = {"asyncio", "socket", "sqlite3", "selectors", "ssl", "subprocess", "threading",
             "multiprocessing", "http", "urllib", "starlette", "httpx", "aiosqlite", "uvicorn"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_protocol_imports_only_stdlib_and_cbor2() -> None:
    files = [p for p in PACKAGE.glob("*.py")]
    assert files
    for path in files:
        for name in imported_modules(path):
            assert name not in FORBIDDEN, f"{path.name} imports {name}"
            assert name in sys.stdlib_module_names or name in ALLOWED_THIRD_PARTY, (
                f"{path.name} imports {name}"
            )


def test_the_check_would_catch_an_io_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom socket import socket\n")
    assert imported_modules(bad) == {"asyncio", "socket"}
