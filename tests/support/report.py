"""Figures the soak suites measured, for docs/RELIABILITY.md.

When ``SYNCD_REPORT`` names a file, each suite appends one JSON line of what
it counted (ops sent, acked, lost, duplicated, kills, seeds ...). The
report script (``bench/reliability_report.py``) runs the suites with large
settings and turns those lines into the published table. Without the
variable, nothing is written.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any


def record(suite: str, **figures: Any) -> None:
    path = os.environ.get("SYNCD_REPORT")
    if not path:
        return
    line = json.dumps({"suite": suite, "at": int(time.time()), **figures}, sort_keys=True)
    with open(path, "a", encoding="utf-8") as out:
        out.write(line + "\n")
