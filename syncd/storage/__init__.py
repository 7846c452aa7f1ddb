"""The storage interface of the server.

All SQL lives behind this interface. ``SQLiteStorage`` implements it on an
embedded SQLite file, ``PostgresStorage`` on a PostgreSQL database shared by
any number of server processes; ``tests/syncd/test_storage_contract.py`` runs
against both.

Exceptions (all ``StorageError``)::

    StorageError
     +-- StorageUnavailable     the database cannot serve now (maps to 503)
     |    +-- StorageBusy       locked by another writer past the busy timeout
     |    +-- StorageFull       disk or database full
     +-- InviteRefused          enrolment code unknown, used or expired (403)

Semantics every backend keeps:

* ``transaction()`` is one write transaction; everything in it commits
  together, durably, when the block exits without an exception, and nothing
  of it is visible or kept otherwise.
* ``snapshot()`` is one read transaction: every read in it sees the same
  committed state, so the high-water mark and the ops read agree.
* Sequence numbers of ops increase in commit order and are never reused.
"""

from __future__ import annotations

from .interface import (
    ConversationRecord,
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
    StoredRow,
    UserRecord,
    WriteTx,
)

__all__ = [
    "ConversationRecord",
    "DeviceRecord",
    "InviteRefused",
    "ReadTx",
    "SessionRecord",
    "Stats",
    "Storage",
    "StorageBusy",
    "StorageError",
    "StorageFull",
    "StorageUnavailable",
    "StoredRow",
    "UserRecord",
    "WriteTx",
    "open_storage",
]


def open_storage(database: str, *, busy_timeout_ms: int = 5000, max_bytes: int = 0) -> Storage:
    """The backend for a database setting: a ``postgresql://`` (or ``postgres://``) URL
    means PostgreSQL, anything else is a SQLite file path."""
    if database.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStorage

        return PostgresStorage(database, busy_timeout_ms=busy_timeout_ms, max_bytes=max_bytes)
    from .sqlite import SQLiteStorage

    return SQLiteStorage(database, busy_timeout_ms=busy_timeout_ms, max_bytes=max_bytes)
