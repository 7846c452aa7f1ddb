"""The server side of a simulation: the real service on real storage, with crash points.

``CrashingStorage`` is the SQLite backend with a countdown: every call into a
write or read transaction (and the moment before a commit) ticks it, and when
it reaches zero ``SimulatedCrash`` is raised there, so the transaction rolls
back exactly as an uncommitted one does when the process dies. ``serve`` is
what the HTTP edge does with a request body (syncd/app.py): decode,
authenticate, admit, act, seal; but it returns the status and the bytes
instead of writing them to a socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from protocol import (
    AuthedRequest,
    ChainRequest,
    ErrorCode,
    ErrorFrame,
    ProtocolError,
    Role,
    StoredOp,
    SyncRequest,
    SyncResponse,
    decode,
    encode,
)
from protocol.limits import MAX_BODY_BYTES
from syncd.service import SyncService
from syncd.storage import ConversationRecord, ReadTx, StorageUnavailable, StoredRow, WriteTx
from syncd.storage.sqlite import SQLiteStorage
from syncd.storage.sqlite_tx import SQLiteReadTx, SQLiteWriteTx

SYNC_PATH = "/v1/sync"
CHAIN_PATH = "/v1/chain"


class SimulatedCrash(BaseException):
    """The server process died at this point: nothing after it happens."""


class CrashPoint:
    """A countdown of storage calls; at zero the server dies."""

    def __init__(self) -> None:
        self.remaining: int | None = None

    def arm(self, calls: int) -> None:
        self.remaining = calls

    def disarm(self) -> None:
        self.remaining = None

    def tick(self) -> None:
        if self.remaining is None:
            return
        if self.remaining == 0:
            self.remaining = None
            raise SimulatedCrash
        self.remaining -= 1


class _CrashingWriteTx(SQLiteWriteTx):
    def __init__(self, db: aiosqlite.Connection, point: CrashPoint) -> None:
        super().__init__(db)
        self.point = point

    async def high_water(self) -> int:
        self.point.tick()
        return await super().high_water()

    async def ops_by_id(self, device_id: int, op_ids: Sequence[int]) -> dict[int, StoredOp]:
        self.point.tick()
        return await super().ops_by_id(device_id, op_ids)

    async def highest_op_id(self, device_id: int) -> int:
        self.point.tick()
        return await super().highest_op_id(device_id)

    async def conversation(self, conv: bytes, *, members: bool = True
                           ) -> ConversationRecord | None:
        self.point.tick()
        return await super().conversation(conv, members=members)

    async def member_role(self, conv_id: int, user_id: int) -> Role | None:
        self.point.tick()
        return await super().member_role(conv_id, user_id)

    async def device_owners(self, device_ids: Sequence[int]) -> dict[int, tuple[int, bool]]:
        self.point.tick()
        return await super().device_owners(device_ids)

    async def known_users(self, user_ids: Sequence[int]) -> set[int]:
        self.point.tick()
        return await super().known_users(user_ids)

    async def create_conversation(self, conv: bytes, broadcast: bool, head: bytes) -> int:
        self.point.tick()
        return await super().create_conversation(conv, broadcast, head)

    async def insert_op(self, conv_id: int, op_type: int, device_id: int, op_id: int,
                        to_device: int | None, fields: bytes, digest: bytes) -> int:
        self.point.tick()
        return await super().insert_op(conv_id, op_type, device_id, op_id, to_device,
                                          fields, digest)

    async def set_roster(self, conv_id: int, head: bytes, changed: Mapping[int, Role],
                         joined: Sequence[int], left: Sequence[int], seq: int) -> None:
        self.point.tick()
        await super().set_roster(conv_id, head, changed, joined, left, seq)

    async def set_highest_op_id(self, device_id: int, op_id: int) -> None:
        self.point.tick()
        await super().set_highest_op_id(device_id, op_id)

    async def set_counter(self, session_id: int, counter: int) -> None:
        self.point.tick()
        await super().set_counter(session_id, counter)

    async def set_counters(self, counters: Mapping[int, int]) -> None:
        self.point.tick()
        await super().set_counters(counters)


class _CrashingReadTx(SQLiteReadTx):
    def __init__(self, db: aiosqlite.Connection, point: CrashPoint) -> None:
        super().__init__(db)
        self.point = point

    async def high_water(self) -> int:
        self.point.tick()
        return await super().high_water()

    async def pull(self, *, user_id: int, device_id: int, lane: int, after: int, upto: int,
                   limit: int) -> list[StoredRow]:
        self.point.tick()
        return await super().pull(user_id=user_id, device_id=device_id, lane=lane,
                                     after=after, upto=upto, limit=limit)

    async def chain(self, *, user_id: int, conv: bytes, after: int, limit: int
                    ) -> list[StoredRow] | None:
        self.point.tick()
        return await super().chain(user_id=user_id, conv=conv, after=after, limit=limit)


class CrashingStorage(SQLiteStorage):
    """SQLite storage whose transactions die when the crash point says so."""

    def __init__(self, path: Path, point: CrashPoint) -> None:
        super().__init__(path)
        self.point = point

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[WriteTx]:
        async with super().transaction() as tx:
            assert isinstance(tx, SQLiteWriteTx)
            yield _CrashingWriteTx(tx.db, self.point)
            self.point.tick()  # the last moment before the commit

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[ReadTx]:
        async with super().snapshot() as snap:
            assert isinstance(snap, SQLiteReadTx)
            yield _CrashingReadTx(snap.db, self.point)


@dataclass(frozen=True, slots=True)
class Reply:
    """What the server answered, and what the simulator (not the device) learns from it."""

    status: int
    body: bytes
    admitted: bool  # the counter was accepted (SPEC.md section 6, step 4)
    error: ErrorCode | None = None
    sync: SyncResponse | None = None


async def serve(service: SyncService, path: str, raw: bytes) -> Reply:
    """Handle one authenticated request body as the HTTP edge does (syncd/app.py).

    Raises ``SimulatedCrash`` if the server dies on the way; any exception
    other than that is a bug (the edge would answer 500).
    """
    try:
        authed = decode(raw, AuthedRequest, max_bytes=MAX_BODY_BYTES)
        caller = await service.authenticate(path, authed)
    except ProtocolError as error:
        return Reply(error.code.http_status, encode(ErrorFrame.from_error(error)), False,
                     error.code)
    except StorageUnavailable:
        return _unavailable(admitted=False)
    admitted = False
    try:
        await service.admit(caller)
        admitted = True
        if path == SYNC_PATH:
            frame = decode(authed.body, SyncRequest, max_bytes=MAX_BODY_BYTES)
            outcome = await service.sync(caller, frame)
            reply = encode(service.seal(caller, encode(outcome.response)))
            if len(reply) > frame.effective_budget and outcome.response.op_count != 1:
                raise AssertionError(f"a response of {len(reply)} bytes is over its budget "
                                     f"of {frame.effective_budget}")
            return Reply(200, reply, True, sync=outcome.response)
        chain = await service.chain(caller, decode(authed.body, ChainRequest))
        return Reply(200, encode(service.seal(caller, encode(chain))), True)
    except ProtocolError as error:
        sealed = service.seal(caller, encode(ErrorFrame.from_error(error)))
        return Reply(error.code.http_status, encode(sealed), admitted, error.code)
    except StorageUnavailable:
        return _unavailable(admitted=admitted)


def _unavailable(*, admitted: bool) -> Reply:
    error = ProtocolError(ErrorCode.UNAVAILABLE, "server busy, retry later", retry_after=2)
    return Reply(503, encode(ErrorFrame.from_error(error)), admitted, ErrorCode.UNAVAILABLE)
