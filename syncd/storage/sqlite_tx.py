"""The two kinds of SQLite transaction behind the storage interface: writes and reads.

All SQL of a push (``SQLiteWriteTx``) and of a pull (``SQLiteReadTx``) is here;
``sqlite.py`` opens the connections and runs the transactions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiosqlite

from protocol import Role, StoredOp

from .interface import ConversationRecord, ReadTx, StoredRow, WriteTx
from .visibility import chain_end, visible_ranges

MAX_ARMS = 400  # subqueries per compound SELECT (SQLite allows 500)


class SQLiteWriteTx(WriteTx):
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def _one(self, sql: str, *args: Any) -> Any:
        async with self.db.execute(sql, args) as cursor:
            return await cursor.fetchone()

    async def high_water(self) -> int:
        row = await self._one("SELECT max(seq) FROM ops")
        return int(row[0]) if row and row[0] is not None else 0

    async def ops_by_id(self, device_id: int, op_ids: Sequence[int]) -> dict[int, StoredOp]:
        found: dict[int, StoredOp] = {}
        for start in range(0, len(op_ids), 500):
            chunk = list(op_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT op_id, digest, seq FROM ops WHERE device_id = ? AND op_id IN ({marks})"
            async with self.db.execute(sql, (device_id, *chunk)) as cursor:
                for op_id, digest, seq in await cursor.fetchall():
                    found[op_id] = StoredOp(digest, seq)
        return found

    async def highest_op_id(self, device_id: int) -> int:
        row = await self._one("SELECT highest_op_id FROM devices WHERE id = ?", device_id)
        return int(row[0]) if row else 0

    async def conversation(self, conv: bytes, *, members: bool = True
                           ) -> ConversationRecord | None:
        row = await self._one("SELECT id, broadcast, head FROM conversations WHERE conv = ?", conv)
        if row is None:
            return None
        roster: dict[int, Role] = {}
        if members:
            async with self.db.execute("SELECT user_id, role FROM members WHERE conv_id = ?",
                                       (row[0],)) as cursor:
                roster = {user: Role(role) for user, role in await cursor.fetchall()}
        return ConversationRecord(row[0], conv, bool(row[1]), row[2], roster)

    async def member_role(self, conv_id: int, user_id: int) -> Role | None:
        row = await self._one("SELECT role FROM members WHERE conv_id = ? AND user_id = ?",
                              conv_id, user_id)
        return None if row is None else Role(row[0])

    async def device_owners(self, device_ids: Sequence[int]) -> dict[int, tuple[int, bool]]:
        owners: dict[int, tuple[int, bool]] = {}
        ids = sorted(set(device_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT id, user_id, revoked_at FROM devices WHERE id IN ({marks})"
            async with self.db.execute(sql, chunk) as cursor:
                for device, user, revoked_at in await cursor.fetchall():
                    owners[device] = (user, revoked_at is not None)
        return owners

    async def known_users(self, user_ids: Sequence[int]) -> set[int]:
        known: set[int] = set()
        ids = sorted(set(user_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            async with self.db.execute(f"SELECT id FROM users WHERE id IN ({marks})",
                                       chunk) as cursor:
                known.update(row[0] for row in await cursor.fetchall())
        return known

    async def create_conversation(self, conv: bytes, broadcast: bool, head: bytes) -> int:
        cursor = await self.db.execute(
            "INSERT INTO conversations (conv, broadcast, head) VALUES (?, ?, ?)",
            (conv, int(broadcast), head))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    async def insert_op(self, conv_id: int, op_type: int, device_id: int, op_id: int,
                        to_device: int | None, fields: bytes, digest: bytes) -> int:
        cursor = await self.db.execute(
            "INSERT INTO ops (conv_id, op_type, device_id, op_id, to_device, fields, digest)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (conv_id, op_type, device_id, op_id, to_device, fields, digest))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    async def set_roster(self, conv_id: int, head: bytes, changed: Mapping[int, Role],
                         joined: Sequence[int], left: Sequence[int], seq: int) -> None:
        await self.db.execute("UPDATE conversations SET head = ? WHERE id = ?", (head, conv_id))
        await self.db.executemany(
            "INSERT INTO members (conv_id, user_id, role) VALUES (?, ?, ?)"
            " ON CONFLICT (conv_id, user_id) DO UPDATE SET role = excluded.role",
            [(conv_id, user, int(role)) for user, role in changed.items()])
        await self.db.executemany("DELETE FROM members WHERE conv_id = ? AND user_id = ?",
                                  [(conv_id, user) for user in left])
        await self.db.executemany(
            "INSERT INTO spans (conv_id, user_id, joined_seq) VALUES (?, ?, ?)",
            [(conv_id, user, seq) for user in joined])
        await self.db.executemany(
            "UPDATE spans SET left_seq = ? WHERE conv_id = ? AND user_id = ? AND left_seq IS NULL",
            [(seq, conv_id, user) for user in left])

    async def set_highest_op_id(self, device_id: int, op_id: int) -> None:
        await self.db.execute("UPDATE devices SET highest_op_id = ? WHERE id = ?",
                              (op_id, device_id))

    async def set_counter(self, session_id: int, counter: int) -> None:
        await self.set_counters({session_id: counter})

    async def set_counters(self, counters: Mapping[int, int]) -> None:
        await self.db.executemany(
            "UPDATE sessions SET highest_counter = max(highest_counter, ?) WHERE id = ?",
            [(counter, session_id) for session_id, counter in counters.items()])


class SQLiteReadTx(ReadTx):
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self._spans: dict[int, list[tuple[int, bytes, int, int | None]]] = {}
        self._device_joined: dict[int, int] = {}

    async def high_water(self) -> int:
        async with self.db.execute("SELECT max(seq) FROM ops") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    async def _spans_of(self, user_id: int) -> list[tuple[int, bytes, int, int | None]]:
        if user_id not in self._spans:
            sql = ("SELECT s.conv_id, c.conv, s.joined_seq, s.left_seq FROM spans s"
                   " JOIN conversations c ON c.id = s.conv_id WHERE s.user_id = ?")
            async with self.db.execute(sql, (user_id,)) as cursor:
                self._spans[user_id] = [(r[0], bytes(r[1]), r[2], r[3])
                                        for r in await cursor.fetchall()]
        return self._spans[user_id]

    async def pull(self, *, user_id: int, device_id: int, lane: int, after: int, upto: int,
                   limit: int) -> list[StoredRow]:
        spans = await self._spans_of(user_id)
        conv_of = {conv_id: conv for conv_id, conv, _, _ in spans}
        if device_id not in self._device_joined:
            async with self.db.execute("SELECT joined_seq FROM devices WHERE id = ?",
                                       (device_id,)) as cursor:
                row = await cursor.fetchone()
            self._device_joined[device_id] = int(row[0]) if row else 0
        device_joined = self._device_joined[device_id]
        columns = "seq, conv_id, op_type, device_id, op_id, fields"
        op_type = 0 if lane == 0 else lane + 1
        arms: list[tuple[str, tuple[Any, ...]]] = [
            (f"SELECT {columns} FROM ops WHERE conv_id = ? AND op_type = ?"
             " AND seq > ? AND seq <= ? AND device_id != ? ORDER BY seq LIMIT ?",
             (conv_id, op_type, low, high, device_id, limit))
            for conv_id, low, high in visible_ranges(spans, device_joined=device_joined,
                                                     lane=lane, after=after, upto=upto)]
        if lane == 0:  # and the key envelopes addressed to this device
            arms.append((f"SELECT {columns} FROM ops WHERE to_device = ? AND seq > ?"
                         " AND seq <= ? AND device_id != ? ORDER BY seq LIMIT ?",
                         (device_id, after, upto, device_id, limit)))
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(arms), MAX_ARMS):
            chunk = arms[start : start + MAX_ARMS]
            sql = " UNION ALL ".join(f"SELECT * FROM ({text})" for text, _ in chunk)
            sql += " ORDER BY seq LIMIT ?"
            args = [arg for _, part in chunk for arg in part] + [limit]
            async with self.db.execute(sql, args) as cursor:
                rows.extend(tuple(row) for row in await cursor.fetchall())
        if len(arms) > MAX_ARMS:
            rows.sort(key=lambda row: row[0])
            rows = rows[:limit]
        return [StoredRow(seq, conv_of.get(conv_id, b""), op_type, device, op_id, fields)
                for seq, conv_id, op_type, device, op_id, fields in rows]


    async def conversations_of(self, user_id: int) -> set[bytes]:
        return {conv for _, conv, _, left in await self._spans_of(user_id) if left is None}

    async def chain(self, *, user_id: int, conv: bytes, after: int, limit: int
                    ) -> list[StoredRow] | None:
        async with self.db.execute(
                "SELECT c.id, s.left_seq FROM conversations c JOIN spans s ON s.conv_id = c.id"
                " WHERE c.conv = ? AND s.user_id = ?", (conv, user_id)) as cursor:
            spans = list(await cursor.fetchall())
        if not spans:
            return None
        end = chain_end([left for _, left in spans])  # as in a pull
        sql = ("SELECT seq, op_type, device_id, op_id, fields FROM ops WHERE conv_id = ?"
               " AND op_type = 0 AND seq > ? AND (? IS NULL OR seq <= ?) ORDER BY seq LIMIT ?")
        async with self.db.execute(sql, (spans[0][0], after, end, end, limit)) as cursor:
            rows = await cursor.fetchall()
        return [StoredRow(seq, conv, op_type, device, op_id, bytes(fields))
                for seq, op_type, device, op_id, fields in rows]
