"""A throw-away PostgreSQL cluster on loopback, for tests and CI.

``PostgresCluster`` runs ``initdb`` and ``pg_ctl`` on a temporary directory: trust
authentication, listening on 127.0.0.1 at a free port, its socket inside the
directory, ``fsync`` left on (crash tests kill servers and expect acked ops to
survive). As root, the binaries run as the ``postgres`` system user, since
``initdb`` refuses to run as root.

    python -m tests.support.postgres start DIR   # prints the server's URL
    python -m tests.support.postgres stop DIR

``SYNCD_TEST_POSTGRES_URL`` points the tests at a running server instead;
``SYNCD_REQUIRE_POSTGRES=1`` turns "no PostgreSQL here" from a skip into a failure.
"""

from __future__ import annotations

import asyncio
import glob
import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tests.support.server import free_port

URL_VARIABLE = "SYNCD_TEST_POSTGRES_URL"
REQUIRE_VARIABLE = "SYNCD_REQUIRE_POSTGRES"
SYSTEM_USER = "postgres"
START_TIMEOUT = 60


def find_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: on PATH, else the newest Debian one."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    def version(folder: str) -> int:
        name = Path(folder).parent.name
        return int(name) if name.isdigit() else 0
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def with_database(url: str, name: str) -> str:
    """The same server's URL, on another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


class PostgresCluster:
    """One ``postgres`` server on a data directory of its own under ``root``."""

    def __init__(self, root: Path, binaries: Path, port: int | None = None) -> None:
        self.root = root
        self.binaries = binaries
        self.port = port or free_port()
        self.data = root / "data"
        self.log = root / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, timeout: float = START_TIMEOUT) -> None:
        argv = [str(self.binaries / command[0]), *command[1:]]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SYSTEM_USER, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed ({done.returncode}): "
                               f"{done.stdout[-2000:]}{done.stderr[-2000:]}")

    def start(self) -> PostgresCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, SYSTEM_USER, SYSTEM_USER)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-sync")
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port}"
                   f" -c unix_socket_directories={self.root} -c shared_buffers=32MB"
                   " -c max_connections=200 -c fsync=on -c synchronous_commit=on")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", str(START_TIMEOUT), "start")
        (self.root / "url").write_text(self.url)
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


_databases = itertools.count(1)


async def _admin(url: str, sql: str) -> None:
    connection = await asyncpg.connect(url, timeout=30)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def create_database(server_url: str) -> str:
    """A fresh, empty database on the server; returns its URL."""
    name = f"syncd_test_{os.getpid()}_{next(_databases)}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    return with_database(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m tests.support.postgres start|stop DIR", file=sys.stderr)
        return 2
    root = Path(argv[1]).resolve()
    binaries = find_binaries()
    if binaries is None:
        print("no initdb/pg_ctl on PATH or under /usr/lib/postgresql", file=sys.stderr)
        return 1
    if argv[0] == "start":
        print(PostgresCluster(root, binaries).start().url)
    else:
        PostgresCluster(root, binaries).stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
