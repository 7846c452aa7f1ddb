"""The client's durable state: one SQLite file and one key file in the home folder.

Everything that must survive a crash lives here: the identity, the session
and its counter, the next op id, the outbox (exact bytes of every queued op),
the cursor, the ops applied, the verified rosters, the epoch keys, the pinned
device keys, and the messages. Every change that must be atomic (queueing
ops with the op id counter; applying a pulled batch with the cursor and the
acks) is one transaction, so killing the client at any instant loses
nothing and applies nothing twice.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from protocol import Cursor, Role, dumps, loads

from .crypto import DeviceKeys

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS devices (
    device_id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, phone TEXT NOT NULL,
    sign_key BLOB NOT NULL, hpke_key BLOB NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS key_changes (
    device_id INTEGER NOT NULL, pinned_key BLOB NOT NULL, offered_key BLOB NOT NULL,
    PRIMARY KEY (device_id, offered_key));
CREATE TABLE IF NOT EXISTS conversations (conv BLOB PRIMARY KEY, broadcast INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rosters (           -- every verified roster, by the seq it starts at
    conv BLOB NOT NULL, seq INTEGER NOT NULL,  -- 2^62 + op id while our own change is pending
    members BLOB NOT NULL, head BLOB NOT NULL, PRIMARY KEY (conv, seq));
CREATE TABLE IF NOT EXISTS epoch_keys (
    conv BLOB NOT NULL, epoch INTEGER NOT NULL, from_device INTEGER NOT NULL,
    key BLOB NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (conv, epoch, from_device));
CREATE TABLE IF NOT EXISTS key_holders (       -- devices we sealed an epoch key to
    conv BLOB NOT NULL, epoch INTEGER NOT NULL, device_id INTEGER NOT NULL,
    PRIMARY KEY (conv, epoch, device_id));
CREATE TABLE IF NOT EXISTS outbox (             -- batch: the ops one command queued together
    op_id INTEGER PRIMARY KEY, conv BLOB NOT NULL, op BLOB NOT NULL, batch INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS parked (             -- content waiting for the key of its epoch
    from_device INTEGER NOT NULL, op_id INTEGER NOT NULL, conv BLOB NOT NULL,
    seq INTEGER NOT NULL, op BLOB NOT NULL, PRIMARY KEY (from_device, op_id));
CREATE TABLE IF NOT EXISTS handled_revocations (device_id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS form_ops (           -- decrypted form payloads (SPEC.md "Forms")
    from_device INTEGER NOT NULL, op_id INTEGER NOT NULL, conv BLOB NOT NULL,
    seq INTEGER, author INTEGER NOT NULL, payload BLOB NOT NULL,
    PRIMARY KEY (from_device, op_id));
CREATE TABLE IF NOT EXISTS notices (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS applied (
    from_device INTEGER NOT NULL, op_id INTEGER NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (from_device, op_id));
CREATE TABLE IF NOT EXISTS messages (
    from_device INTEGER NOT NULL, op_id INTEGER NOT NULL, conv BLOB NOT NULL,
    seq INTEGER, author INTEGER NOT NULL, kind INTEGER NOT NULL, text TEXT,
    reply_device INTEGER, reply_op INTEGER, target_device INTEGER, target_op INTEGER,
    sent_at INTEGER, PRIMARY KEY (from_device, op_id));
-- kind: 0 text, 1 edit, 2 delete, 3 title; 16-31 forms, shown as unsupported here
CREATE INDEX IF NOT EXISTS messages_conv ON messages (conv, seq);
CREATE TABLE IF NOT EXISTS problems (
    id INTEGER PRIMARY KEY, seq INTEGER, conv BLOB, from_device INTEGER, op_id INTEGER,
    reason TEXT NOT NULL);
"""

PENDING_SEQ = 2**62  # plus the op id: our own pending changes sort after every real seq
LAST_SEQ = 2**63 - 1


class Store:
    """The home folder: ``state.db`` and ``device.key`` (both 0600)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = home / "state.db"
        fresh = not path.exists()
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        if fresh:
            os.chmod(path, 0o600)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ------------------------------------------------------------ keys and meta

    @property
    def key_path(self) -> Path:
        return self.home / "device.key"

    def save_keys(self, keys: DeviceKeys) -> None:
        descriptor = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(dumps([keys.sign_seed, keys.hpke_seed]))
            file.flush()
            os.fsync(file.fileno())

    def load_keys(self) -> DeviceKeys:
        sign_seed, hpke_seed = loads(self.key_path.read_bytes())
        return DeviceKeys(sign_seed, hpke_seed)

    def get(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else loads(row[0])

    def put(self, key: str, value: Any, db: sqlite3.Connection | None = None) -> None:
        (db or self.db).execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                (key, dumps(value)))

    @property
    def cursor(self) -> Cursor:
        lanes = self.get("cursor", [0, 0, 0, 0])
        return Cursor((lanes[0], lanes[1], lanes[2], lanes[3]))

    def next_op_ids(self, db: sqlite3.Connection, count: int) -> list[int]:
        """Reserve op ids; the counter is written before anything is encrypted with them."""
        first = int(self.get("next_op_id", 1))
        self.put("next_op_id", first + count, db)
        return list(range(first, first + count))

    # ------------------------------------------------------------ rosters

    def roster_row(self, conv: bytes, seq: int) -> tuple[dict[int, Role], bytes] | None:
        """The roster in force at ``seq`` and its chain head (None before the create)."""
        row = self.db.execute("SELECT members, head FROM rosters WHERE conv = ? AND seq <= ?"
                              " ORDER BY seq DESC LIMIT 1", (conv, seq)).fetchone()
        if row is None:
            return None
        return {int(u): Role(r) for u, r in loads(row[0]).items()}, bytes(row[1])

    def roster_at(self, conv: bytes, seq: int) -> dict[int, Role] | None:
        """The verified roster in force at ``seq`` (None before the conversation existed)."""
        found = self.roster_row(conv, seq)
        return None if found is None else found[0]

    def current_roster(self, conv: bytes) -> dict[int, Role] | None:
        """The roster with our own pending changes applied."""
        return self.roster_at(conv, LAST_SEQ)

    def save_roster(self, db: sqlite3.Connection, conv: bytes, seq: int,
                    members: dict[int, Role], head: bytes) -> None:
        db.execute("INSERT OR REPLACE INTO rosters (conv, seq, members, head)"
                   " VALUES (?, ?, ?, ?)",
                   (conv, seq, dumps({u: int(r) for u, r in members.items()}), head))

    def problem(self, db: sqlite3.Connection, reason: str, *, seq: int | None = None,
                conv: bytes | None = None, from_device: int | None = None,
                op_id: int | None = None) -> None:
        db.execute("INSERT INTO problems (seq, conv, from_device, op_id, reason)"
                   " VALUES (?, ?, ?, ?, ?)", (seq, conv, from_device, op_id, reason))
