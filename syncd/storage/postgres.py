"""PostgreSQL backend: a connection pool shared by the requests of one process, and
any number of processes (replicas) on one database.

Durability: every connection runs with ``synchronous_commit = on``, so a commit
returns only once its WAL is flushed; an ack sent after ``transaction()`` exits
is durable, exactly as with SQLite.

Gap-free order. Clients hold a cursor: "I have every op up to seq N". That is
only sound if no op with a seq at or below a high-water mark a reader saw can
become visible later. A plain sequence (or IDENTITY) breaks this as soon as two
writers overlap: writer A takes seq 10, writer B takes 11 and commits first, a
reader sees high water 11 and moves its cursor to 11, then A commits 10, which
that reader never pulls. So seqs come from the one row of ``op_counter``:

* every write transaction starts by locking that row (``SELECT ... FOR
  UPDATE``) and ``insert_op`` bumps it (``UPDATE ... RETURNING``) in the same
  transaction; the lock is held until commit or rollback, so the next writer,
  in this process or in another replica, takes its first seq only after the
  previous writer's ops are committed and visible. Seq order is commit order,
  and a rolled-back transaction gives its seqs back (no holes either).
* ``high_water()`` reads the counter's committed value inside the reader's
  snapshot (REPEATABLE READ READ ONLY): every op at or below it is in that
  snapshot, and every op not yet committed will get a larger seq.

Taking the lock at the start of the transaction, not at the first op, also
makes writers as serial as SQLite's single writer: a push's replay check
(``ops_by_id``), authorisation against the roster and chain-head update cannot
race another push, and the busy timeout (``lock_timeout``) bounds the wait
(then ``StorageBusy``, 503). Reads never wait for it.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from .interface import (
    DeviceRecord,
    InviteRefused,
    ReadTx,
    SessionRecord,
    Stats,
    Storage,
    StorageBusy,
    StorageError,
    StorageFull,
    StorageUnavailable,
    UserRecord,
    WriteTx,
)
from .postgres_errors import DRIVER_ERRORS, as_storage_errors, translated
from .postgres_tx import HIGH_WATER, PostgresReadTx, PostgresWriteTx

BUSY_TIMEOUT_MS = 5000
POOL_SIZE = 10
CONNECT_TIMEOUT = 10.0
MIGRATION_LOCK = 0x73796E6364  # pg_advisory_xact_lock key: "syncd"
SIZE_CHECK_SECONDS = 1.0

URL_SCHEMES = ("postgresql://", "postgres://")

def is_postgres_url(database: str) -> bool:
    return database.startswith(URL_SCHEMES)


def migrations() -> list[tuple[int, str]]:
    """Numbered PostgreSQL migration scripts shipped with the package, in order."""
    folder = resources.files("syncd.storage") / "migrations" / "postgresql"
    scripts = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            scripts.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(scripts)


def split_url(url: str) -> tuple[str, int | None]:
    """The URL without syncd's own ``pool_size`` parameter, and that parameter. The rest
    is left byte for byte as given (``postgresql:///db?host=/run/postgresql`` included)."""
    base, mark, query = url.partition("?")
    if not mark:
        return url, None
    kept, pool_size = [], None
    for item in query.split("&"):
        key, _, value = item.partition("=")
        if key == "pool_size":
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"pool_size={value!r} in the database URL: a positive integer")
            pool_size = int(value)
        elif item:
            kept.append(item)
    return (f"{base}?{'&'.join(kept)}" if kept else base), pool_size


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        url = urlunsplit(parts._replace(netloc=netloc))
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)


class PostgresStorage(Storage):
    """Storage on a PostgreSQL database (schema created and migrated on open).

    ``url`` is a libpq-style ``postgresql://`` URL; a ``pool_size`` query parameter
    (or the ``pool_size`` argument) sets the connections per process.
    """

    def __init__(self, url: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS, max_bytes: int = 0,
                 pool_size: int | None = None) -> None:
        self.url, from_url = split_url(url)
        self.pool_size = pool_size or from_url or POOL_SIZE
        self.busy_timeout_ms = busy_timeout_ms
        self.max_bytes = max_bytes
        self._pool: asyncpg.Pool | None = None
        self._size = (0, -SIZE_CHECK_SECONDS)  # (bytes, when measured)

    @property
    def latest_schema_version(self) -> int:
        return migrations()[-1][0]

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageUnavailable("storage is not open")
        return self._pool

    async def open(self) -> None:
        settings = {"synchronous_commit": "on", "application_name": "syncd",
                    "lock_timeout": f"{int(self.busy_timeout_ms)}ms"}
        try:
            with translated():
                self._pool = await asyncpg.create_pool(
                    self.url, min_size=1, max_size=self.pool_size, timeout=CONNECT_TIMEOUT,
                    server_settings=settings)
                await self._migrate()
        except TimeoutError as exc:
            await self.close()
            raise StorageUnavailable(f"cannot reach the database: {exc!r}") from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT)
            except (TimeoutError, *DRIVER_ERRORS):
                pool.terminate()

    async def _migrate(self) -> None:
        """All pending scripts in one transaction, under a transaction-level advisory
        lock: replicas starting together wait for each other, and the one that comes
        second finds the schema current. A failed script leaves nothing behind."""
        async with self.pool.acquire() as db, db.transaction():
            await db.execute("SET LOCAL lock_timeout = 0")  # wait for the migrating replica
            await db.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await db.execute("CREATE TABLE IF NOT EXISTS schema_migrations"
                             " (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)")
            current = await db.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
            for version, script in migrations():
                if version <= current:
                    continue
                await db.execute(script)
                await db.execute("INSERT INTO schema_migrations VALUES ($1, $2)",
                                 version, int(time.time()))

    async def schema_version(self) -> int:
        with translated():
            value = await self.pool.fetchval("SELECT max(version) FROM schema_migrations")
        return int(value) if value is not None else 0

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, waited for no longer than the busy timeout (then 503)."""
        pool = self.pool
        try:
            connection = await pool.acquire(timeout=self.busy_timeout_ms / 1000)
        except TimeoutError as exc:
            raise StorageBusy("no database connection free within the busy timeout") from exc
        try:
            yield connection
        finally:
            await pool.release(connection)

    async def _check_size(self, connection: asyncpg.Connection) -> None:
        """With a size cap, refuse writes once the database is past it (as on a full disk)."""
        if not self.max_bytes:
            return
        size, measured = self._size
        if time.monotonic() - measured >= SIZE_CHECK_SECONDS:
            size = int(await connection.fetchval("SELECT pg_database_size(current_database())"))
            self._size = (size, time.monotonic())
        if size >= self.max_bytes:
            raise StorageFull(f"database is {size} bytes, the cap is {self.max_bytes}")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[WriteTx]:
        with translated():
            async with self._connection() as db, as_storage_errors(db):
                await self._check_size(db)
                tx = db.transaction()  # READ COMMITTED: each statement sees the latest commits
                await tx.start()
                try:
                    # The writers' lock; see "Gap-free order" at the top of this module.
                    await db.execute("SELECT seq FROM op_counter WHERE id = 1 FOR UPDATE")
                    yield PostgresWriteTx(db)
                except BaseException:
                    with suppress(*DRIVER_ERRORS):
                        await tx.rollback()
                    raise
                await tx.commit()

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[ReadTx]:
        with translated():
            async with self._connection() as db, as_storage_errors(db):
                tx = db.transaction(isolation="repeatable_read", readonly=True)
                await tx.start()
                try:
                    yield PostgresReadTx(db)
                finally:
                    with suppress(*DRIVER_ERRORS):
                        await tx.rollback()

    @property
    def shared(self) -> bool:
        return True

    async def claim_counter(self, session_id: int, counter: int) -> bool:
        # Outside the writers' lock: a counter is one row, raised only upwards. Without
        # waiting for the WAL flush: a crash of the database may forget the last few
        # counters, which reopens replays of requests sent just before it; pushes are
        # idempotent and pulls change nothing, so the ops stay exact either way.
        with translated():
            async with self._connection() as db, as_storage_errors(db), db.transaction():
                await db.execute("SET LOCAL synchronous_commit = off")
                claimed = await db.fetchval(
                    "UPDATE sessions SET highest_counter = $2"
                    " WHERE id = $1 AND highest_counter < $2 RETURNING 1", session_id, counter)
                return claimed is not None

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        with translated():
            async with self._connection() as db, as_storage_errors(db):
                return await db.fetchrow(sql, *args)

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        with translated():
            async with self._connection() as db, as_storage_errors(db):
                return list(await db.fetch(sql, *args))

    async def _execute(self, sql: str, *args: Any) -> str:
        """One statement in its own write transaction; returns the command status."""
        async with self.transaction() as tx:
            assert isinstance(tx, PostgresWriteTx)
            return str(await tx.connection.execute(sql, *args))

    async def check_writable(self) -> None:
        # The writers' lock, taken and committed: proves the server accepts writes (not a
        # standby, not shutting down, disk not full) and no writer holds the lock past
        # the busy timeout.
        async with self.transaction() as tx:
            assert isinstance(tx, PostgresWriteTx)
            await tx.high_water()

    async def server_seed(self) -> bytes:
        row = await self._fetchrow("SELECT sign_seed FROM server_keys WHERE id = 1")
        if row is not None:
            return bytes(row[0])
        await self._execute("INSERT INTO server_keys (id, sign_seed) VALUES (1, $1)"
                            " ON CONFLICT (id) DO NOTHING", os.urandom(32))
        row = await self._fetchrow("SELECT sign_seed FROM server_keys WHERE id = 1")
        return bytes(row[0])

    async def create_invite(self, phone: str, code_hash: bytes, now: int, expires_at: int) -> None:
        await self._execute("INSERT INTO invites (code_hash, phone, created_at, expires_at)"
                            " VALUES ($1, $2, $3, $4)", code_hash, phone, now, expires_at)

    async def register(self, code_hash: bytes, phone: str, sign_key: bytes, hpke_key: bytes,
                       now: int) -> tuple[int, int]:
        async with self.transaction() as tx:
            assert isinstance(tx, PostgresWriteTx)
            db = tx.connection
            changed = await db.execute(
                "UPDATE invites SET used_at = $1 WHERE code_hash = $2 AND phone = $3"
                " AND used_at IS NULL AND expires_at > $1", now, code_hash, phone)
            if changed != "UPDATE 1":
                raise InviteRefused("enrolment code refused")
            await db.execute("INSERT INTO users (phone, created_at) VALUES ($1, $2)"
                             " ON CONFLICT (phone) DO NOTHING", phone, now)
            user_id = int(await db.fetchval("SELECT id FROM users WHERE phone = $1", phone))
            device_id = await db.fetchval(
                "INSERT INTO devices (user_id, sign_key, hpke_key, created_at, joined_seq)"
                f" VALUES ($1, $2, $3, $4, ({HIGH_WATER})) RETURNING id",
                user_id, sign_key, hpke_key, now)
            return user_id, int(device_id)

    @staticmethod
    def _device(row: Any) -> DeviceRecord:
        return DeviceRecord(row[0], row[1], bytes(row[2]), bytes(row[3]), row[4] is not None,
                            row[5])

    async def device(self, device_id: int) -> DeviceRecord | None:
        row = await self._fetchrow("SELECT id, user_id, sign_key, hpke_key, revoked_at,"
                                   " created_at FROM devices WHERE id = $1", device_id)
        return None if row is None else self._device(row)

    async def user_by_phone(self, phone: str) -> UserRecord | None:
        users = await self.lookup([phone], [])
        return users[0] if users else None

    async def revoke(self, device_id: int, now: int) -> bool:
        async with self.transaction() as tx:
            assert isinstance(tx, PostgresWriteTx)
            done = await tx.connection.execute(
                "UPDATE devices SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2",
                now, device_id)
            if done != "UPDATE 1":
                return False
            await tx.connection.execute("DELETE FROM sessions WHERE device_id = $1", device_id)
            return True

    async def use_challenge(self, nonce: bytes, expires_at: int, now: int) -> bool:
        async with self.transaction() as tx:
            assert isinstance(tx, PostgresWriteTx)
            await tx.connection.execute("DELETE FROM used_challenges WHERE expires_at < $1", now)
            done = await tx.connection.execute(
                "INSERT INTO used_challenges (nonce, expires_at) VALUES ($1, $2)"
                " ON CONFLICT (nonce) DO NOTHING", nonce, expires_at)
            return bool(done == "INSERT 0 1")

    async def create_session(self, device_id: int, request_key: bytes, response_key: bytes,
                             now: int, expires_at: int) -> int:
        async with self.transaction() as tx:
            assert isinstance(tx, PostgresWriteTx)
            return int(await tx.connection.fetchval(
                "INSERT INTO sessions (device_id, request_key, response_key, created_at,"
                " expires_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                device_id, request_key, response_key, now, expires_at))

    async def session(self, session_id: int) -> SessionRecord | None:
        row = await self._fetchrow(
            "SELECT s.id, s.device_id, d.user_id, s.request_key, s.response_key, s.expires_at,"
            " s.highest_counter, d.revoked_at, d.sign_key FROM sessions s"
            " JOIN devices d ON d.id = s.device_id WHERE s.id = $1", session_id)
        if row is None:
            return None
        return SessionRecord(row[0], row[1], row[2], bytes(row[3]), bytes(row[4]), row[5],
                             row[6], row[7] is not None, bytes(row[8]))

    async def lookup(self, phones: Sequence[str], user_ids: Sequence[int]) -> list[UserRecord]:
        users = await self._fetch(
            "SELECT id, phone FROM users WHERE phone = ANY($1::text[]) OR id = ANY($2::bigint[])"
            " ORDER BY id", list(phones), list(user_ids))
        if not users:
            return []
        rows = await self._fetch(
            "SELECT id, user_id, sign_key, hpke_key, revoked_at, created_at FROM devices"
            " WHERE user_id = ANY($1::bigint[]) ORDER BY id", [row[0] for row in users])
        return [UserRecord(user_id, phone, tuple(self._device(r) for r in rows
                                                 if r[1] == user_id))
                for user_id, phone in users]

    async def database_bytes(self) -> int:
        row = await self._fetchrow("SELECT pg_database_size(current_database())")
        return int(row[0])

    async def stats(self) -> Stats:
        row = await self._fetchrow(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM devices),"
            " (SELECT count(*) FROM devices WHERE revoked_at IS NOT NULL),"
            " (SELECT count(*) FROM conversations), (SELECT count(*) FROM ops),"
            " (SELECT count(*) FROM sessions), pg_database_size(current_database())")
        return Stats(*(int(value) for value in row))

    async def backup(self, destination: Path) -> None:
        raise StorageError(
            "backup copies SQLite files; for PostgreSQL use pg_dump (for example"
            " `pg_dump --format=custom --file=syncd.dump DBNAME`) or the database's own"
            " continuous archiving, and restore with pg_restore")
