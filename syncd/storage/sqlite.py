"""SQLite backend: one WAL file, one writer connection, a few reader connections.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL`` makes every commit
fsync the WAL before it returns, so an ack sent after ``transaction()`` exits
is durable. Writes go through the single writer connection, one transaction
at a time (``BEGIN IMMEDIATE`` under an asyncio lock); reads use separate
connections and see the last committed state, never a half-written push.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from .interface import (
    DeviceRecord,
    InviteRefused,
    ReadTx,
    SessionRecord,
    Stats,
    Storage,
    StorageBusy,
    StorageFull,
    StorageUnavailable,
    UserRecord,
    WriteTx,
)
from .sqlite_tx import SQLiteReadTx, SQLiteWriteTx

BUSY_TIMEOUT_MS = 5000
READERS = 2


def _translate(exc: sqlite3.Error) -> Exception:
    """Busy, full and I/O failures become ``StorageUnavailable`` (503, retry later);
    anything else is a bug of ours and stays what it is (500)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return exc
    message = str(exc).lower()
    if "locked" in message or "busy" in message:
        return StorageBusy(str(exc))
    if "full" in message or "no space" in message:
        return StorageFull(str(exc))
    return StorageUnavailable(str(exc))


def migrations() -> list[tuple[int, str]]:
    """Numbered migration scripts shipped with the package, in order."""
    folder = resources.files("syncd.storage") / "migrations"
    scripts = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            scripts.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(scripts)


async def _connect(path: str, *, readonly: bool, busy_timeout_ms: int) -> aiosqlite.Connection:
    connection = await aiosqlite.connect(path, isolation_level=None)
    await connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    await connection.execute("PRAGMA foreign_keys = ON")
    if readonly:
        await connection.execute("PRAGMA query_only = ON")
    else:
        await connection.execute("PRAGMA journal_mode = WAL")
        await connection.execute("PRAGMA synchronous = FULL")
    return connection


class SQLiteStorage(Storage):
    """Storage on one SQLite file (created and migrated on open)."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                 max_bytes: int = 0) -> None:
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.max_bytes = max_bytes
        self._writer: aiosqlite.Connection | None = None
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._reader_list: list[aiosqlite.Connection] = []
        self._write_lock = asyncio.Lock()

    @property
    def latest_schema_version(self) -> int:
        return migrations()[-1][0]

    async def open(self) -> None:
        try:
            self._writer = await _connect(self.path, readonly=False,
                                          busy_timeout_ms=self.busy_timeout_ms)
            await self._migrate()
            if self.max_bytes:
                # SQLite then fails a write that would grow the file past the cap with
                # SQLITE_FULL, exactly as on a full disk: the transaction rolls back.
                async with self._writer.execute("PRAGMA page_size") as cursor:
                    row = await cursor.fetchone()
                pages = max(1, self.max_bytes // int(row[0] if row else 4096))
                await self._writer.execute(f"PRAGMA max_page_count = {pages}")
            for _ in range(READERS):
                reader = await _connect(self.path, readonly=True,
                                        busy_timeout_ms=self.busy_timeout_ms)
                self._reader_list.append(reader)
                self._readers.put_nowait(reader)
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    async def close(self) -> None:
        while not self._readers.empty():
            self._readers.get_nowait()
        for reader in self._reader_list:
            await reader.close()
        self._reader_list.clear()
        if self._writer is not None:
            with suppress(sqlite3.Error):
                await self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            await self._writer.close()
            self._writer = None

    @property
    def writer(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise StorageUnavailable("storage is not open")
        return self._writer

    async def _migrate(self) -> None:
        db = self.writer
        await db.execute("CREATE TABLE IF NOT EXISTS schema_migrations"
                         " (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
        current = await self.schema_version()
        for version, script in migrations():
            if version <= current:
                continue
            await db.executescript(
                "BEGIN IMMEDIATE;\n" + script +
                f"\nINSERT INTO schema_migrations VALUES ({version}, unixepoch());\nCOMMIT;")

    async def schema_version(self) -> int:
        try:
            async with self.writer.execute("SELECT max(version) FROM schema_migrations") as cur:
                row = await cur.fetchone()
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        return int(row[0]) if row and row[0] is not None else 0

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        """The write lock, waited for no longer than the busy timeout (then 503)."""
        try:
            await asyncio.wait_for(self._write_lock.acquire(), self.busy_timeout_ms / 1000)
        except TimeoutError as exc:
            raise StorageBusy("writer busy past the busy timeout") from exc
        try:
            yield
        finally:
            self._write_lock.release()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[WriteTx]:
        async with self._locked():
            db = self.writer
            try:
                await db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _translate(exc) from exc
            try:
                yield SQLiteWriteTx(db)
            except sqlite3.Error as exc:  # full disk, I/O error, lock lost: nothing is kept
                with suppress(sqlite3.Error):
                    await db.rollback()
                raise _translate(exc) from exc
            except BaseException:
                with suppress(sqlite3.Error):
                    await db.rollback()
                raise
            try:
                await db.commit()
            except sqlite3.Error as exc:
                with suppress(sqlite3.Error):
                    await db.rollback()
                raise _translate(exc) from exc

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[ReadTx]:
        db = await self._readers.get()
        try:
            await db.execute("BEGIN")
            try:
                yield SQLiteReadTx(db)
            finally:
                with suppress(sqlite3.Error):
                    await db.rollback()
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        finally:
            if db.in_transaction:  # a cancelled BEGIN may still have run: never hand it on
                with suppress(sqlite3.Error):
                    await db.rollback()
            if db in self._reader_list:
                self._readers.put_nowait(db)

    async def _read_one(self, sql: str, *args: Any) -> Any:
        db = await self._readers.get()
        try:
            async with db.execute(sql, args) as cursor:
                return await cursor.fetchone()
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        finally:
            self._readers.put_nowait(db)

    async def _read_all(self, sql: str, *args: Any) -> list[Any]:
        db = await self._readers.get()
        try:
            async with db.execute(sql, args) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        finally:
            self._readers.put_nowait(db)

    async def _write(self, sql: str, *args: Any) -> int:
        """One statement in its own transaction; returns the rows changed."""
        async with self.transaction() as tx:
            assert isinstance(tx, SQLiteWriteTx)
            cursor = await tx.db.execute(sql, args)
            return cursor.rowcount

    async def check_writable(self) -> None:
        async with self._locked():
            try:
                await self.writer.execute("BEGIN IMMEDIATE")
                await self.writer.execute("ROLLBACK")
            except sqlite3.Error as exc:
                with suppress(sqlite3.Error):
                    await self.writer.rollback()
                raise _translate(exc) from exc

    async def server_seed(self) -> bytes:
        row = await self._read_one("SELECT sign_seed FROM server_keys WHERE id = 1")
        if row is not None:
            return bytes(row[0])
        async with self.transaction() as tx:
            assert isinstance(tx, SQLiteWriteTx)
            await tx.db.execute("INSERT OR IGNORE INTO server_keys (id, sign_seed) VALUES (1, ?)",
                                (os.urandom(32),))
        row = await self._read_one("SELECT sign_seed FROM server_keys WHERE id = 1")
        return bytes(row[0])

    async def create_invite(self, phone: str, code_hash: bytes, now: int, expires_at: int) -> None:
        await self._write("INSERT INTO invites (code_hash, phone, created_at, expires_at)"
                          " VALUES (?, ?, ?, ?)", code_hash, phone, now, expires_at)

    async def register(self, code_hash: bytes, phone: str, sign_key: bytes, hpke_key: bytes,
                       now: int) -> tuple[int, int]:
        async with self.transaction() as tx:
            assert isinstance(tx, SQLiteWriteTx)
            db = tx.db
            changed = await db.execute(
                "UPDATE invites SET used_at = ? WHERE code_hash = ? AND phone = ?"
                " AND used_at IS NULL AND expires_at > ?", (now, code_hash, phone, now))
            if changed.rowcount != 1:
                raise InviteRefused("enrolment code refused")
            await db.execute("INSERT OR IGNORE INTO users (phone, created_at) VALUES (?, ?)",
                             (phone, now))
            row = await tx._one("SELECT id FROM users WHERE phone = ?", phone)
            user_id = int(row[0])
            cursor = await db.execute(
                "INSERT INTO devices (user_id, sign_key, hpke_key, created_at, joined_seq)"
                " VALUES (?, ?, ?, ?, (SELECT coalesce(max(seq), 0) FROM ops))",
                (user_id, sign_key, hpke_key, now))
            assert cursor.lastrowid is not None
            return user_id, cursor.lastrowid

    @staticmethod
    def _device(row: Any) -> DeviceRecord:
        return DeviceRecord(row[0], row[1], bytes(row[2]), bytes(row[3]), row[4] is not None,
                            row[5])

    async def device(self, device_id: int) -> DeviceRecord | None:
        row = await self._read_one("SELECT id, user_id, sign_key, hpke_key, revoked_at, created_at"
                                   " FROM devices WHERE id = ?", device_id)
        return None if row is None else self._device(row)

    async def user_by_phone(self, phone: str) -> UserRecord | None:
        users = await self.lookup([phone], [])
        return users[0] if users else None

    async def revoke(self, device_id: int, now: int) -> bool:
        async with self.transaction() as tx:
            assert isinstance(tx, SQLiteWriteTx)
            cursor = await tx.db.execute(
                "UPDATE devices SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?",
                (now, device_id))
            if cursor.rowcount != 1:
                return False
            await tx.db.execute("DELETE FROM sessions WHERE device_id = ?", (device_id,))
            return True

    async def use_challenge(self, nonce: bytes, expires_at: int, now: int) -> bool:
        async with self.transaction() as tx:
            assert isinstance(tx, SQLiteWriteTx)
            await tx.db.execute("DELETE FROM used_challenges WHERE expires_at < ?", (now,))
            cursor = await tx.db.execute(
                "INSERT OR IGNORE INTO used_challenges (nonce, expires_at) VALUES (?, ?)",
                (nonce, expires_at))
            return cursor.rowcount == 1

    async def create_session(self, device_id: int, request_key: bytes, response_key: bytes,
                             now: int, expires_at: int) -> int:
        async with self.transaction() as tx:
            assert isinstance(tx, SQLiteWriteTx)
            cursor = await tx.db.execute(
                "INSERT INTO sessions (device_id, request_key, response_key, created_at,"
                " expires_at) VALUES (?, ?, ?, ?, ?)",
                (device_id, request_key, response_key, now, expires_at))
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    async def session(self, session_id: int) -> SessionRecord | None:
        row = await self._read_one(
            "SELECT s.id, s.device_id, d.user_id, s.request_key, s.response_key, s.expires_at,"
            " s.highest_counter, d.revoked_at, d.sign_key FROM sessions s"
            " JOIN devices d ON d.id = s.device_id WHERE s.id = ?", session_id)
        if row is None:
            return None
        return SessionRecord(row[0], row[1], row[2], bytes(row[3]), bytes(row[4]), row[5],
                             row[6], row[7] is not None, bytes(row[8]))

    async def lookup(self, phones: Sequence[str], user_ids: Sequence[int]) -> list[UserRecord]:
        users: dict[int, str] = {}
        for phone in phones:
            row = await self._read_one("SELECT id, phone FROM users WHERE phone = ?", phone)
            if row:
                users[row[0]] = row[1]
        for user_id in user_ids:
            row = await self._read_one("SELECT id, phone FROM users WHERE id = ?", user_id)
            if row:
                users[row[0]] = row[1]
        result = []
        for user_id, phone in sorted(users.items()):
            rows = await self._read_all(
                "SELECT id, user_id, sign_key, hpke_key, revoked_at, created_at FROM devices"
                " WHERE user_id = ? ORDER BY id", user_id)
            result.append(UserRecord(user_id, phone, tuple(self._device(r) for r in rows)))
        return result

    async def stats(self) -> Stats:
        counts = []
        for sql in ("SELECT count(*) FROM users", "SELECT count(*) FROM devices",
                    "SELECT count(*) FROM devices WHERE revoked_at IS NOT NULL",
                    "SELECT count(*) FROM conversations", "SELECT max(seq) FROM ops",
                    "SELECT count(*) FROM sessions"):
            row = await self._read_one(sql)
            counts.append(int(row[0] or 0))
        ops = await self._read_one("SELECT count(*) FROM ops")
        return Stats(counts[0], counts[1], counts[2], counts[3], int(ops[0]), counts[5],
                     await self.database_bytes())

    async def database_bytes(self) -> int:
        return sum(Path(self.path + suffix).stat().st_size
                   for suffix in ("", "-wal") if Path(self.path + suffix).exists())

    async def backup(self, destination: Path) -> None:
        target = await aiosqlite.connect(str(destination))
        try:
            async with self._locked():  # never copy a transaction in progress
                await self.writer.backup(target)
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        finally:
            await target.close()
