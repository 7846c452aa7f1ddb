"""A real syncd server in a subprocess, on loopback, on a real SQLite file (or, given
``database``, a PostgreSQL URL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from syncd import admin


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``syncd serve`` as a child process; start, stop (SIGTERM) or kill (SIGKILL)."""

    def __init__(self, db: Path, *, port: int | None = None,
                 env: dict[str, str] | None = None, database: str | None = None) -> None:
        self.db = db  # the SQLite file; with ``database`` it only names the log
        self.database = database or str(db)  # what ``--db`` gets
        self.port = port or free_port()
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = db.with_suffix(".log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        env = {**os.environ, "SYNCD_RATE_PER_SECOND": "1000", "SYNCD_RATE_BURST": "1000",
               **self.env}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "syncd.cli", "serve", "--port", str(self.port),
                 "--db", self.database], stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not become ready")

    def stop(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def invite(self, phone: str) -> str:
        import asyncio

        return str(asyncio.run(admin.invite(self.database, phone, 3600))["code"])

    def stored_bytes(self) -> bytes:
        """Everything the database holds, as bytes: the SQLite files, or every value of
        every table on PostgreSQL (for tests that grep for plaintext)."""
        if not self.database.startswith(("postgresql://", "postgres://")):
            return b"".join(p.read_bytes() for p in self.db.parent.glob(self.db.name + "*"))
        import asyncio

        import asyncpg

        async def dump() -> bytes:
            connection = await asyncpg.connect(self.database)
            try:
                tables = await connection.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                parts = []
                for table in tables:
                    for row in await connection.fetch(f'SELECT * FROM "{table[0]}"'):
                        for value in row.values():
                            parts.append(value if isinstance(value, bytes)
                                         else str(value).encode())
                return b"\0".join(parts)
            finally:
                await connection.close()

        return asyncio.run(dump())
