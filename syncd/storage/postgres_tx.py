"""PostgreSQL transactions behind the storage interface: writes and reads.

All SQL of a push (``PostgresWriteTx``) and of a pull (``PostgresReadTx``) is
here; ``postgres.py`` owns the pool, runs the transactions and explains the
global op order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from protocol import Role, StoredOp

from .interface import ConversationRecord, ReadTx, StoredRow, WriteTx
from .visibility import chain_end, visible_ranges

# Takes the next seq and stores the op in one statement. The caller's transaction
# already holds the op_counter row lock (see postgres.py), so no other writer can
# take a seq until this transaction has committed or rolled back.
INSERT_OP = """
WITH next AS (UPDATE op_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq)
INSERT INTO ops (seq, conv_id, op_type, device_id, op_id, to_device, fields, digest)
SELECT next.seq, $1, $2, $3, $4, $5, $6, $7 FROM next
RETURNING seq
"""

HIGH_WATER = "SELECT seq FROM op_counter WHERE id = 1"


class PostgresWriteTx(WriteTx):
    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def high_water(self) -> int:
        return int(await self.connection.fetchval(HIGH_WATER))

    async def ops_by_id(self, device_id: int, op_ids: Sequence[int]) -> dict[int, StoredOp]:
        rows = await self.connection.fetch(
            "SELECT op_id, digest, seq FROM ops WHERE device_id = $1 AND op_id = ANY($2::bigint[])",
            device_id, list(op_ids))
        return {row[0]: StoredOp(bytes(row[1]), row[2]) for row in rows}

    async def highest_op_id(self, device_id: int) -> int:
        value = await self.connection.fetchval(
            "SELECT highest_op_id FROM devices WHERE id = $1", device_id)
        return int(value) if value is not None else 0

    async def conversation(self, conv: bytes, *, members: bool = True
                           ) -> ConversationRecord | None:
        row = await self.connection.fetchrow(
            "SELECT id, broadcast, head FROM conversations WHERE conv = $1", conv)
        if row is None:
            return None
        roster: dict[int, Role] = {}
        if members:
            rows = await self.connection.fetch(
                "SELECT user_id, role FROM members WHERE conv_id = $1", row[0])
            roster = {user: Role(role) for user, role in rows}
        return ConversationRecord(row[0], conv, bool(row[1]), bytes(row[2]), roster)

    async def member_role(self, conv_id: int, user_id: int) -> Role | None:
        role = await self.connection.fetchval(
            "SELECT role FROM members WHERE conv_id = $1 AND user_id = $2", conv_id, user_id)
        return None if role is None else Role(role)

    async def device_owners(self, device_ids: Sequence[int]) -> dict[int, tuple[int, bool]]:
        rows = await self.connection.fetch(
            "SELECT id, user_id, revoked_at FROM devices WHERE id = ANY($1::bigint[])",
            sorted(set(device_ids)))
        return {device: (user, revoked_at is not None) for device, user, revoked_at in rows}

    async def known_users(self, user_ids: Sequence[int]) -> set[int]:
        rows = await self.connection.fetch("SELECT id FROM users WHERE id = ANY($1::bigint[])",
                                           sorted(set(user_ids)))
        return {row[0] for row in rows}

    async def create_conversation(self, conv: bytes, broadcast: bool, head: bytes) -> int:
        return int(await self.connection.fetchval(
            "INSERT INTO conversations (conv, broadcast, head) VALUES ($1, $2, $3) RETURNING id",
            conv, int(broadcast), head))

    async def insert_op(self, conv_id: int, op_type: int, device_id: int, op_id: int,
                        to_device: int | None, fields: bytes, digest: bytes) -> int:
        return int(await self.connection.fetchval(
            INSERT_OP, conv_id, op_type, device_id, op_id, to_device, fields, digest))

    async def set_roster(self, conv_id: int, head: bytes, changed: Mapping[int, Role],
                         joined: Sequence[int], left: Sequence[int], seq: int) -> None:
        db = self.connection
        await db.execute("UPDATE conversations SET head = $1 WHERE id = $2", head, conv_id)
        if changed:
            await db.executemany(
                "INSERT INTO members (conv_id, user_id, role) VALUES ($1, $2, $3)"
                " ON CONFLICT (conv_id, user_id) DO UPDATE SET role = excluded.role",
                [(conv_id, user, int(role)) for user, role in changed.items()])
        if left:
            await db.executemany("DELETE FROM members WHERE conv_id = $1 AND user_id = $2",
                                 [(conv_id, user) for user in left])
        if joined:
            await db.executemany(
                "INSERT INTO spans (conv_id, user_id, joined_seq) VALUES ($1, $2, $3)",
                [(conv_id, user, seq) for user in joined])
        if left:
            await db.executemany(
                "UPDATE spans SET left_seq = $1 WHERE conv_id = $2 AND user_id = $3"
                " AND left_seq IS NULL", [(seq, conv_id, user) for user in left])

    async def set_highest_op_id(self, device_id: int, op_id: int) -> None:
        await self.connection.execute("UPDATE devices SET highest_op_id = $1 WHERE id = $2",
                                      op_id, device_id)

    async def set_counter(self, session_id: int, counter: int) -> None:
        await self.set_counters({session_id: counter})

    async def set_counters(self, counters: Mapping[int, int]) -> None:
        if counters:
            await self.connection.executemany(
                "UPDATE sessions SET highest_counter = greatest(highest_counter, $1)"
                " WHERE id = $2",
                [(counter, session_id) for session_id, counter in sorted(counters.items())])


# One arm per visible conversation, each walking ops_stream from its own lower bound
# and stopping at ``limit`` rows: the same plan as SQLite's UNION ALL of arms, in one
# statement whatever the number of conversations.
PULL_STREAMS = """
SELECT o.seq, o.conv_id, o.op_type, o.device_id, o.op_id, o.fields
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS arm (conv_id, low, high)
CROSS JOIN LATERAL (
    SELECT seq, conv_id, op_type, device_id, op_id, fields FROM ops
    WHERE ops.conv_id = arm.conv_id AND ops.op_type = $4 AND ops.seq > arm.low
      AND ops.seq <= arm.high AND ops.device_id <> $5
    ORDER BY ops.seq LIMIT $6) AS o
"""
PULL_INBOX = """
SELECT seq, conv_id, op_type, device_id, op_id, fields FROM ops
WHERE to_device = $1 AND seq > $2 AND seq <= $3 AND device_id <> $1
ORDER BY seq LIMIT $4
"""


class PostgresReadTx(ReadTx):
    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self._spans: dict[int, list[tuple[int, bytes, int, int | None]]] = {}
        self._device_joined: dict[int, int] = {}

    async def high_water(self) -> int:
        return int(await self.connection.fetchval(HIGH_WATER))

    async def _spans_of(self, user_id: int) -> list[tuple[int, bytes, int, int | None]]:
        if user_id not in self._spans:
            rows = await self.connection.fetch(
                "SELECT s.conv_id, c.conv, s.joined_seq, s.left_seq FROM spans s"
                " JOIN conversations c ON c.id = s.conv_id WHERE s.user_id = $1", user_id)
            self._spans[user_id] = [(r[0], bytes(r[1]), r[2], r[3]) for r in rows]
        return self._spans[user_id]

    async def conversations_of(self, user_id: int) -> set[bytes]:
        return {conv for _, conv, _, left in await self._spans_of(user_id) if left is None}

    async def pull(self, *, user_id: int, device_id: int, lane: int, after: int, upto: int,
                   limit: int) -> list[StoredRow]:
        spans = await self._spans_of(user_id)
        conv_of = {conv_id: conv for conv_id, conv, _, _ in spans}
        if device_id not in self._device_joined:
            joined = await self.connection.fetchval(
                "SELECT joined_seq FROM devices WHERE id = $1", device_id)
            self._device_joined[device_id] = int(joined) if joined is not None else 0
        device_joined = self._device_joined[device_id]
        arms = visible_ranges(spans, device_joined=device_joined, lane=lane, after=after,
                              upto=upto)
        op_type = 0 if lane == 0 else lane + 1
        rows: list[Any] = []
        if arms:
            rows.extend(await self.connection.fetch(
                PULL_STREAMS, [a[0] for a in arms], [a[1] for a in arms], [a[2] for a in arms],
                op_type, device_id, limit))
        if lane == 0:
            rows.extend(await self.connection.fetch(PULL_INBOX, device_id, after, upto, limit))
        rows.sort(key=lambda row: row[0])
        return [StoredRow(seq, conv_of.get(conv_id, b""), kind, device, op_id, bytes(fields))
                for seq, conv_id, kind, device, op_id, fields in rows[:limit]]

    async def chain(self, *, user_id: int, conv: bytes, after: int, limit: int
                    ) -> list[StoredRow] | None:
        spans = await self.connection.fetch(
            "SELECT c.id, s.left_seq FROM conversations c JOIN spans s ON s.conv_id = c.id"
            " WHERE c.conv = $1 AND s.user_id = $2", conv, user_id)
        if not spans:
            return None
        end = chain_end([span[1] for span in spans])  # as in a pull
        rows = await self.connection.fetch(
            "SELECT seq, op_type, device_id, op_id, fields FROM ops WHERE conv_id = $1"
            " AND op_type = 0 AND seq > $2 AND ($3::bigint IS NULL OR seq <= $3)"
            " ORDER BY seq LIMIT $4", spans[0][0], after, end, limit)
        return [StoredRow(seq, conv, op_type, device, op_id, bytes(fields))
                for seq, op_type, device, op_id, fields in rows]
