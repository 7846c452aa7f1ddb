"""What only the PostgreSQL backend has to prove: several processes ("replicas") on one
database never let a cursor skip an op, start together safely, and fail as the storage
interface says (unavailable, busy, full), never half-applied."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from protocol import Role
from syncd.storage import StorageBusy, StorageFull, StorageUnavailable, open_storage
from syncd.storage.postgres import (
    POOL_SIZE,
    PostgresStorage,
    migrations,
    redact,
    split_url,
)
from syncd.storage.postgres_errors import translate
from syncd.storage.postgres_tx import PostgresWriteTx
from tests.support.server import free_port

WRITERS = 4
READERS = 3
OPS_PER_WRITER = int(os.environ.get("SYNCD_PG_GAP_OPS", "25"))
CONV = b"g" * 8


def run(coroutine: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coroutine(), 120))


async def enrol(storage: PostgresStorage, phone: str) -> tuple[int, int]:
    code = hashlib.sha256(phone.encode()).digest()
    await storage.create_invite(phone, code, 100, 10**10)
    return await storage.register(code, phone, b"s" * 32, b"h" * 32, 100)


def test_no_reader_skips_an_op_while_replicas_write_concurrently(postgres_url: str) -> None:
    """Writers on two storages (two replicas) hold their transactions open for random
    short times between taking a seq and committing; readers on both take snapshots,
    pull above their cursor and move it to the high-water mark, as a client does. Every
    reader must end up with every committed op exactly once, in seq order."""

    async def scenario() -> None:
        replicas = [PostgresStorage(postgres_url, pool_size=WRITERS + READERS)
                    for _ in range(2)]
        for replica in replicas:
            await replica.open()
        try:
            writer_user, writer_device = await enrol(replicas[0], "+254700000001")
            reader_user, reader_device = await enrol(replicas[0], "+254700000002")
            async with replicas[0].transaction() as tx:
                conv_id = await tx.create_conversation(CONV, False, b"h" * 32)
                await tx.set_roster(conv_id, b"h" * 32, {writer_user: Role.ADMIN,
                                                         reader_user: Role.MEMBER},
                                    [writer_user, reader_user], [], 0)
            rng = random.Random(7)
            op_ids = iter(range(1, 10**6))
            done = asyncio.Event()

            async def writer(storage: PostgresStorage) -> None:
                for _ in range(OPS_PER_WRITER):
                    async with storage.transaction() as tx:
                        await asyncio.sleep(rng.uniform(0, 0.004))
                        await tx.insert_op(conv_id, 3, writer_device, next(op_ids), None,
                                           b"\x80", b"d" * 32)
                        await asyncio.sleep(rng.uniform(0, 0.004))  # seq taken, not committed

            async def reader(storage: PostgresStorage) -> list[int]:
                seen: list[int] = []
                cursor = 0
                while True:
                    finished = done.is_set()  # decided before the snapshot: one last full pass
                    async with storage.snapshot() as snap:
                        high_water = await snap.high_water()
                        rows = await snap.pull(user_id=reader_user, device_id=reader_device,
                                               lane=2, after=cursor, upto=high_water, limit=10)
                    seen.extend(row.seq for row in rows)
                    cursor = rows[-1].seq if len(rows) == 10 else high_water
                    if finished and len(rows) < 10:
                        return seen
                    await asyncio.sleep(rng.uniform(0, 0.003))

            readers = [asyncio.create_task(reader(replicas[n % 2])) for n in range(READERS)]
            await asyncio.gather(*(writer(replicas[n % 2]) for n in range(WRITERS)))
            done.set()
            views = await asyncio.gather(*readers)
            async with replicas[1].snapshot() as snap:
                every = [row.seq for row in await snap.pull(
                    user_id=reader_user, device_id=reader_device, lane=2, after=0,
                    upto=await snap.high_water(), limit=10**6)]
            assert len(every) == WRITERS * OPS_PER_WRITER
            assert every == list(range(1, len(every) + 1))  # no holes: rollbacks give seqs back
            for view in views:
                assert view == every
        finally:
            for replica in replicas:
                await replica.close()

    run(scenario)


def test_a_plain_sequence_lets_a_cursor_skip_an_op_and_the_op_counter_does_not(
        postgres_url: str) -> None:
    """The schedule that breaks a sequence, played step by step: A takes a seq, B takes
    the next and commits, a reader moves its cursor to B's seq, then A commits."""

    async def scenario() -> None:
        a, b, reader = [await asyncpg.connect(postgres_url) for _ in range(3)]
        try:
            await a.execute("CREATE TABLE naive (seq BIGINT GENERATED ALWAYS AS IDENTITY, x INT)")
            tx_a, tx_b = a.transaction(), b.transaction()
            await tx_a.start()
            await a.execute("INSERT INTO naive (x) VALUES (1)")  # seq 1
            await tx_b.start()
            await b.execute("INSERT INTO naive (x) VALUES (2)")  # seq 2, does not wait for A
            await tx_b.commit()
            cursor = await reader.fetchval("SELECT max(seq) FROM naive")
            await tx_a.commit()
            missed = await reader.fetch("SELECT seq FROM naive WHERE seq > $1", cursor)
            assert cursor == 2 and missed == []  # seq 1 is committed, and never pulled
        finally:
            for connection in (a, b, reader):
                await connection.close()

        storage = PostgresStorage(postgres_url)
        await storage.open()
        try:
            _, device = await enrol(storage, "+254700000001")
            async with storage.transaction() as tx:
                conv_id = await tx.create_conversation(CONV, False, b"h" * 32)
            a_took_seq, a_may_commit = asyncio.Event(), asyncio.Event()

            async def writer_a() -> int:
                async with storage.transaction() as tx:
                    seq = await tx.insert_op(conv_id, 3, device, 1, None, b"\x80", b"a" * 32)
                    a_took_seq.set()
                    await a_may_commit.wait()
                    return seq

            async def writer_b() -> int:
                async with storage.transaction() as tx:
                    return await tx.insert_op(conv_id, 3, device, 2, None, b"\x80", b"b" * 32)

            task_a = asyncio.create_task(writer_a())
            await a_took_seq.wait()
            task_b = asyncio.create_task(writer_b())
            await asyncio.sleep(0.2)
            assert not task_b.done()  # B waits for A's lock instead of committing first
            async with storage.snapshot() as snap:
                assert await snap.high_water() == 0  # nothing a cursor could move past
            a_may_commit.set()
            assert (await task_a, await task_b) == (1, 2)
        finally:
            await storage.close()

    run(scenario)


def test_replicas_opening_a_fresh_database_together_migrate_it_once(postgres_url: str) -> None:
    async def scenario() -> None:
        replicas = [PostgresStorage(postgres_url, pool_size=2) for _ in range(6)]
        await asyncio.gather(*(replica.open() for replica in replicas))
        try:
            latest = migrations()[-1][0]
            assert [await r.schema_version() for r in replicas] == [latest] * len(replicas)
            seeds = await asyncio.gather(*(replica.server_seed() for replica in replicas))
            assert len(set(seeds)) == 1 and len(seeds[0]) == 32  # one server identity
            connection = await asyncpg.connect(postgres_url)
            try:
                versions = await connection.fetch("SELECT version FROM schema_migrations")
                assert sorted(row[0] for row in versions) == [v for v, _ in migrations()]
            finally:
                await connection.close()
        finally:
            for replica in replicas:
                await replica.close()

    run(scenario)


def test_a_terminated_connection_mid_transaction_is_unavailable_and_keeps_nothing(
        postgres_url: str) -> None:
    async def scenario() -> None:
        storage = PostgresStorage(postgres_url)
        await storage.open()
        admin = await asyncpg.connect(postgres_url)
        try:
            _, device = await enrol(storage, "+254700000001")
            with pytest.raises(StorageUnavailable) as caught:
                async with storage.transaction() as tx:
                    assert isinstance(tx, PostgresWriteTx)
                    conv_id = await tx.create_conversation(CONV, False, b"h" * 32)
                    await tx.insert_op(conv_id, 3, device, 1, None, b"\x80", b"d" * 32)
                    pid = await tx.connection.fetchval("SELECT pg_backend_pid()")
                    assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
                    await tx.set_highest_op_id(device, 1)
            assert not isinstance(caught.value, StorageBusy)
            assert await admin.fetchval("SELECT count(*) FROM ops") == 0
            assert await admin.fetchval("SELECT count(*) FROM conversations") == 0
            assert await admin.fetchval("SELECT seq FROM op_counter") == 0
            async with storage.transaction() as tx:  # the pool replaced the dead connection
                assert await tx.conversation(CONV) is None
                assert await tx.high_water() == 0
        finally:
            await admin.close()
            await storage.close()

    run(scenario)


def test_a_writer_held_past_the_busy_timeout_is_busy(postgres_url: str) -> None:
    async def scenario() -> None:
        storage = PostgresStorage(postgres_url, busy_timeout_ms=200)
        await storage.open()
        other = PostgresStorage(postgres_url, busy_timeout_ms=200)
        await other.open()
        try:
            async with other.transaction():  # another replica holds the writers' lock
                with pytest.raises(StorageBusy):
                    async with storage.transaction():
                        pass
                with pytest.raises(StorageBusy):
                    await storage.check_writable()
                async with storage.snapshot() as snap:  # reads do not wait for writers
                    assert await snap.high_water() == 0
            await storage.check_writable()
        finally:
            await other.close()
            await storage.close()

    run(scenario)


def test_no_server_is_unavailable() -> None:
    async def scenario() -> None:
        storage = open_storage(f"postgresql://postgres@127.0.0.1:{free_port()}/none")
        with pytest.raises(StorageUnavailable):
            await storage.open()

    run(scenario)


def test_past_the_size_cap_writes_are_refused_as_full(postgres_url: str) -> None:
    async def scenario() -> None:
        storage = open_storage(postgres_url, max_bytes=1024)  # smaller than any database
        await storage.open()
        try:
            with pytest.raises(StorageFull):
                await storage.create_invite("+254700000001", b"c" * 32, 100, 200)
            with pytest.raises(StorageFull):
                await storage.check_writable()
            assert (await storage.stats()).users == 0
        finally:
            await storage.close()

    run(scenario)


def test_error_classes_map_to_the_storage_errors() -> None:
    from asyncpg import exceptions

    assert isinstance(translate(exceptions.DiskFullError("no space")), StorageFull)
    assert isinstance(translate(exceptions.TooManyConnectionsError("many")), StorageUnavailable)
    assert not isinstance(translate(exceptions.TooManyConnectionsError("m")), StorageFull)
    assert isinstance(translate(exceptions.AdminShutdownError("bye")), StorageUnavailable)
    assert isinstance(translate(exceptions.SerializationError("again")), StorageBusy)
    assert isinstance(translate(exceptions.DeadlockDetectedError("cycle")), StorageBusy)
    assert isinstance(translate(exceptions.LockNotAvailableError("wait")), StorageBusy)
    assert isinstance(translate(ConnectionRefusedError("refused")), StorageUnavailable)
    bug = exceptions.UndefinedColumnError("no such column")
    assert translate(bug) is bug  # our bug: stays a 500


def test_a_bug_is_not_disguised_as_unavailable(postgres_url: str) -> None:
    async def scenario() -> None:
        storage = open_storage(postgres_url)
        await storage.open()
        try:
            await storage.create_invite("+254700000001", b"c" * 32, 100, 200)
            with pytest.raises(asyncpg.UniqueViolationError):
                await storage.create_invite("+254700000001", b"c" * 32, 100, 200)
        finally:
            await storage.close()

    run(scenario)


def test_the_url_keeps_everything_but_syncds_pool_size_and_messages_hide_passwords() -> None:
    assert split_url("postgresql:///syncd?host=/run/postgresql") == (
        "postgresql:///syncd?host=/run/postgresql", None)
    assert split_url("postgresql://u:p@h:5/db?pool_size=4&sslmode=require") == (
        "postgresql://u:p@h:5/db?sslmode=require", 4)
    assert PostgresStorage("postgresql://h/db?pool_size=3").pool_size == 3
    assert PostgresStorage("postgresql://h/db").pool_size == POOL_SIZE
    with pytest.raises(ValueError, match="pool_size"):
        split_url("postgresql://h/db?pool_size=0")
    assert redact("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"
    assert redact("postgresql://h/db?user=u&password=secret") == (
        "postgresql://h/db?user=u&password=***")
