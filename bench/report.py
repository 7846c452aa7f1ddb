"""What the benchmark scripts share: the machine they ran on, and writing their section."""

from __future__ import annotations

import os
import platform
import sqlite3
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nFigures measured on a named machine; each section says how.\n\n"


def machine() -> str:
    """Cores, CPU model, Python, SQLite and kernel of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}")


def replace_section(text: str, section: str, begin: str, end: str) -> str:
    """``text`` with the part from ``begin`` to ``end`` (markers included) replaced."""
    start, stop = text.index(begin), text.index(end) + len(end)
    return text[:start] + section + text[stop:]


def write_section(section: str, begin: str, end: str, path: Path = BENCHMARKS) -> None:
    """Put ``section`` (which starts with ``begin`` and ends with ``end``) into ``path``,
    replacing an earlier run's, or appending it."""
    text = path.read_text() if path.exists() else HEADER
    if begin in text:
        text = replace_section(text, section, begin, end)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
