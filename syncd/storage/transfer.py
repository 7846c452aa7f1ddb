"""Copy a SQLite database into an empty PostgreSQL database (``syncd admin migrate``).

Theory of operation. The source may be serving: it is first copied with SQLite's
online backup API in one step, which reads one consistent snapshot, into a
private temporary file (migrated there to the latest schema if it is older).
Every table is then streamed from that copy into the target inside ONE
PostgreSQL transaction that first takes the writers' lock and checks that the
target holds nothing, so a replica started on the target meanwhile cannot
interleave writes, and any failure leaves the target as empty as it was.
Rows keep their ids and ops their seqs, so clients' cursors, session ids and
device ids stay valid; identities and the op counter continue past the copied
maximum (or past SQLite's AUTOINCREMENT high mark, so no session id or seq is
ever handed out twice). Before the commit each table is read back from the
target in the same order as from the source and compared: row count and a
SHA-256 over a canonical encoding of every row. Any difference rolls it all
back.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from .interface import StorageError
from .postgres import PostgresStorage, is_postgres_url
from .postgres_errors import translated
from .sqlite import SQLiteStorage

BATCH = 5000


class MigrationRefused(StorageError):
    """The copy was not done (target not empty, source missing, checksums differ);
    nothing was written."""


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[str, ...]
    order: str  # a total order: the same rows come out in the same order on both sides
    identity: str | None = None  # the column whose generator continues past the copy


# In foreign-key order.
TABLES = (
    Table("server_keys", ("id", "sign_seed"), "id"),
    Table("users", ("id", "phone", "created_at"), "id", "id"),
    Table("devices", ("id", "user_id", "sign_key", "hpke_key", "created_at", "revoked_at",
                      "highest_op_id", "joined_seq"), "id", "id"),
    Table("invites", ("code_hash", "phone", "created_at", "expires_at", "used_at"), "code_hash"),
    Table("used_challenges", ("nonce", "expires_at"), "nonce"),
    Table("sessions", ("id", "device_id", "request_key", "response_key", "created_at",
                       "expires_at", "highest_counter"), "id", "id"),
    Table("conversations", ("id", "conv", "broadcast", "head"), "id", "id"),
    Table("members", ("conv_id", "user_id", "role"), "conv_id, user_id"),
    Table("spans", ("conv_id", "user_id", "joined_seq", "left_seq"),
          "user_id, conv_id, joined_seq"),
    Table("ops", ("seq", "conv_id", "op_type", "device_id", "op_id", "to_device", "fields",
                  "digest"), "seq"),
)


@dataclass(frozen=True, slots=True)
class TableDigest:
    rows: int
    sha256: str


class _Digest:
    """Row count and SHA-256 over a canonical, type-tagged encoding of each row."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.rows = 0

    def update(self, rows: Iterable[Sequence[object]]) -> None:
        for row in rows:
            self.rows += 1
            parts = []
            for value in row:
                if value is None:
                    parts.append(b"N")
                elif isinstance(value, bool | int):
                    parts.append(b"I%d" % int(value))
                elif isinstance(value, bytes | bytearray | memoryview):
                    data = bytes(value)
                    parts.append(b"B%d:" % len(data) + data)
                elif isinstance(value, str):
                    data = value.encode()
                    parts.append(b"S%d:" % len(data) + data)
                else:
                    raise TypeError(f"unexpected {type(value).__name__} in a row")
            line = b"|".join(parts)
            self.hash.update(b"%d:" % len(line) + line)

    def result(self) -> TableDigest:
        return TableDigest(self.rows, self.hash.hexdigest())


def _snapshot(source: Path, copy: Path) -> None:
    """One consistent copy of a (possibly live) SQLite database."""
    # mode=rw: never create an empty database where the path is wrong.
    src = sqlite3.connect(f"file:{source}?mode=rw", uri=True)
    try:
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)  # all pages in one step: one read transaction
        finally:
            dst.close()
    finally:
        src.close()


def _sqlite_batches(db: sqlite3.Connection, table: Table) -> Iterable[list[tuple[object, ...]]]:
    cursor = db.execute(f"SELECT {', '.join(table.columns)} FROM {table.name}"
                        f" ORDER BY {table.order}")
    while batch := cursor.fetchmany(BATCH):
        yield [tuple(row) for row in batch]


async def _check_empty(db: asyncpg.Connection) -> None:
    for table in TABLES:
        if await db.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table.name})"):
            raise MigrationRefused(f"the target already holds data (table {table.name});"
                                   " migrate into a new, empty database")
    if await db.fetchval("SELECT seq FROM op_counter WHERE id = 1"):
        raise MigrationRefused("the target's op counter is not at 0; use an empty database")


async def _target_digest(db: asyncpg.Connection, table: Table) -> TableDigest:
    digest = _Digest()
    sql = f"SELECT {', '.join(table.columns)} FROM {table.name} ORDER BY {table.order}"
    batch: list[tuple[object, ...]] = []
    async for record in db.cursor(sql, prefetch=BATCH):
        batch.append(tuple(record))
        if len(batch) >= BATCH:
            digest.update(batch)
            batch.clear()
    digest.update(batch)
    return digest.result()


async def migrate(source: str | Path, target: str) -> dict[str, TableDigest]:
    """Copy the SQLite database ``source`` into the empty PostgreSQL database ``target``;
    the verified row count and checksum of each table. Raises ``MigrationRefused``."""
    source = Path(source)
    if not is_postgres_url(target):
        raise MigrationRefused("the target must be a postgresql:// URL")
    if not source.is_file():
        raise MigrationRefused(f"no SQLite database at {source}")
    with tempfile.TemporaryDirectory(prefix="syncd-migrate-") as folder:
        copy = Path(folder) / "snapshot.db"
        try:
            _snapshot(source, copy)
        except sqlite3.Error as exc:
            raise MigrationRefused(f"cannot read {source}: {exc}") from exc
        sqlite_side = SQLiteStorage(copy)
        await sqlite_side.open()  # brings an older schema up to date, in the copy only
        try:
            if sqlite_side.latest_schema_version != PostgresStorage(target).latest_schema_version:
                raise MigrationRefused("SQLite and PostgreSQL schemas are at different versions")
        finally:
            await sqlite_side.close()
        db = sqlite3.connect(copy)
        try:
            return await _copy(db, target)
        finally:
            db.close()


async def _copy(source: sqlite3.Connection, target: str) -> dict[str, TableDigest]:
    storage = PostgresStorage(target, pool_size=1)
    await storage.open()
    try:
        with translated():
            async with storage.pool.acquire() as db, db.transaction():
                await db.execute("SELECT seq FROM op_counter WHERE id = 1 FOR UPDATE")
                await _check_empty(db)
                expected: dict[str, TableDigest] = {}
                for table in TABLES:
                    digest = _Digest()
                    for batch in _sqlite_batches(source, table):
                        digest.update(batch)
                        await db.copy_records_to_table(table.name, records=batch,
                                                       columns=list(table.columns))
                    expected[table.name] = digest.result()
                high_marks = dict(source.execute("SELECT name, seq FROM sqlite_sequence"))
                for table in TABLES:
                    if table.identity is None:
                        continue
                    top = max(int(await db.fetchval(
                        f"SELECT coalesce(max({table.identity}), 0) FROM {table.name}")),
                        int(high_marks.get(table.name, 0)))
                    await db.execute("SELECT setval(pg_get_serial_sequence($1, $2), $3, false)",
                                     table.name, table.identity, top + 1)
                top_seq = max(int(await db.fetchval("SELECT coalesce(max(seq), 0) FROM ops")),
                              int(high_marks.get("ops", 0)))
                await db.execute("UPDATE op_counter SET seq = $1 WHERE id = 1", top_seq)
                for table in TABLES:
                    found = await _target_digest(db, table)
                    if found != expected[table.name]:
                        raise MigrationRefused(
                            f"table {table.name} differs after the copy: {expected[table.name]}"
                            f" in SQLite, {found} in PostgreSQL; nothing was kept")
                return expected
    finally:
        await storage.close()
