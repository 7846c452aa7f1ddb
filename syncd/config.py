"""Server settings: defaults, then environment variables (``SYNCD_*``), then flags."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from protocol.limits import MAX_BODY_BYTES

__all__ = ["Settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8787
    db: str = "./syncd.db"
    max_body_bytes: int = MAX_BODY_BYTES
    # 2G: a phone may idle a while between syncs on one connection, but a client
    # that trickles a request must not hold a connection open for ever.
    keep_alive_seconds: int = 60
    read_deadline_seconds: float = 120.0  # whole request, headers and body
    rate_per_second: float = 5.0  # per device, sustained
    rate_burst: int = 30
    session_ttl_seconds: int = 30 * 24 * 3600
    counter_flush_seconds: float = 5.0
    # Requests worked on at once (body read, not yet answered); more get 503 at once.
    # Long-poll waits do not count: they hold no database connection while waiting.
    max_inflight: int = 64
    # Longest a sync may wait for news (long-poll): under the idle timeouts of the
    # carrier NATs and proxies in front of 2G phones.
    max_wait_seconds: float = 25.0
    busy_timeout_ms: int = 5000  # then 503 with Retry-After, nothing written
    max_db_bytes: int = 0  # 0: no cap; past it writes get 503 (as if the disk were full)
    log_level: str = "info"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, overridden by ``SYNCD_<FIELD>`` variables, overridden by ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = environ.get(f"SYNCD_{field.name.upper()}")
            if raw is not None:
                kind = type(getattr(cls(), field.name))
                values[field.name] = kind(raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)
