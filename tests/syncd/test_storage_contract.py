"""The storage contract: every backend must pass these, written against the interface only."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from protocol import Role, StoredOp
from syncd.storage import InviteRefused, Storage, StorageError, open_storage

Scenario = Callable[[Storage], Awaitable[None]]


@pytest.fixture
def run(storage_url: str) -> Iterator[Callable[[Scenario], None]]:
    """Runs a scenario on a fresh database of each backend (see tests/conftest.py)."""
    def runner(scenario: Scenario) -> None:
        async def main() -> None:
            storage = open_storage(storage_url)
            await storage.open()
            try:
                await scenario(storage)
            finally:
                await storage.close()
        asyncio.run(main())
    yield runner


def code_hash(code: str) -> bytes:
    return hashlib.sha256(code.encode()).digest()


async def user(storage: Storage, phone: str, now: int = 100) -> tuple[int, int]:
    await storage.create_invite(phone, code_hash(phone), now, now + 60)
    return await storage.register(code_hash(phone), phone, b"s" * 32, b"h" * 32, now)


def test_open_migrates_and_reopening_is_harmless(run: Callable[[Scenario], None],
                                                 storage_url: str) -> None:
    async def scenario(storage: Storage) -> None:
        assert await storage.schema_version() == storage.latest_schema_version
        seed = await storage.server_seed()
        assert len(seed) == 32 and await storage.server_seed() == seed
        again = open_storage(storage_url)
        await again.open()
        assert await again.server_seed() == seed
        await again.close()
    run(scenario)


def test_invites_are_single_use_for_one_phone_and_expire(run: Callable[[Scenario], None]) -> None:
    async def scenario(storage: Storage) -> None:
        await storage.create_invite("+254700000001", code_hash("A"), 100, 160)
        with pytest.raises(InviteRefused):
            await storage.register(code_hash("A"), "+254700000002", b"s" * 32, b"h" * 32, 110)
        with pytest.raises(InviteRefused):
            await storage.register(code_hash("A"), "+254700000001", b"s" * 32, b"h" * 32, 161)
        assert await storage.user_by_phone("+254700000001") is None
        user_id, device_id = await storage.register(code_hash("A"), "+254700000001",
                                                    b"s" * 32, b"h" * 32, 110)
        with pytest.raises(InviteRefused):
            await storage.register(code_hash("A"), "+254700000001", b"s" * 32, b"h" * 32, 111)
        await storage.create_invite("+254700000001", code_hash("B"), 100, 160)
        same_user, second = await storage.register(code_hash("B"), "+254700000001",
                                                   b"t" * 32, b"i" * 32, 112)
        assert same_user == user_id and second != device_id
        found = await storage.user_by_phone("+254700000001")
        assert found is not None and [d.device_id for d in found.devices] == [device_id, second]
    run(scenario)


def test_revoke_ends_sessions(run: Callable[[Scenario], None]) -> None:
    async def scenario(storage: Storage) -> None:
        _, device_id = await user(storage, "+254700000001")
        session_id = await storage.create_session(device_id, b"k" * 32, b"r" * 32, 100, 1000)
        record = await storage.session(session_id)
        assert record is not None and record.device_id == device_id and not record.revoked
        assert await storage.revoke(device_id, 200)
        assert await storage.session(session_id) is None
        device = await storage.device(device_id)
        assert device is not None and device.revoked
        assert not await storage.revoke(10**9, 200)
    run(scenario)


def test_answered_challenges_are_single_use_until_they_expire(
        run: Callable[[Scenario], None]) -> None:
    async def scenario(storage: Storage) -> None:
        assert await storage.use_challenge(b"n" * 16, 200, 100)
        assert not await storage.use_challenge(b"n" * 16, 200, 150)  # used
        assert await storage.use_challenge(b"m" * 16, 300, 150)
        # Once expired, the record is dropped; an expired nonce is refused before this.
        assert await storage.use_challenge(b"n" * 16, 400, 250)
    run(scenario)


def test_a_failed_transaction_leaves_nothing(run: Callable[[Scenario], None]) -> None:
    async def scenario(storage: Storage) -> None:
        _, device_id = await user(storage, "+254700000001")
        with pytest.raises(RuntimeError):
            async with storage.transaction() as tx:
                conv_id = await tx.create_conversation(b"c" * 8, False, b"h" * 32)
                await tx.insert_op(conv_id, 3, device_id, 1, None, b"\x80", b"d" * 32)
                raise RuntimeError("refused half way")
        async with storage.transaction() as tx:
            assert await tx.conversation(b"c" * 8) is None
            assert await tx.ops_by_id(device_id, [1]) == {}
            assert await tx.high_water() == 0
    run(scenario)


def test_ops_get_increasing_seqs_and_are_found_by_op_id(run: Callable[[Scenario], None]) -> None:
    async def scenario(storage: Storage) -> None:
        user_id, device_id = await user(storage, "+254700000001")
        async with storage.transaction() as tx:
            conv_id = await tx.create_conversation(b"c" * 8, False, b"h" * 32)
            await tx.set_roster(conv_id, b"h" * 32, {user_id: Role.ADMIN}, [user_id], [], 0)
            seqs = [await tx.insert_op(conv_id, 3, device_id, n, None, b"\x80", bytes([n]) * 32)
                    for n in (1, 2, 3)]
            await tx.set_highest_op_id(device_id, 3)
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        async with storage.transaction() as tx:
            found = await tx.ops_by_id(device_id, [2, 3, 4])
            assert found == {2: StoredOp(bytes([2]) * 32, seqs[1]),
                             3: StoredOp(bytes([3]) * 32, seqs[2])}
            assert await tx.highest_op_id(device_id) == 3
            record = await tx.conversation(b"c" * 8)
            assert record is not None and record.members == {user_id: Role.ADMIN}
        async with storage.snapshot() as snap:
            assert await snap.high_water() == seqs[-1]
    run(scenario)


def test_pull_follows_membership_spans_and_addressing(run: Callable[[Scenario], None]) -> None:
    async def scenario(storage: Storage) -> None:
        alice, alice_device = await user(storage, "+254700000001")
        bob, bob_device = await user(storage, "+254700000002")
        async with storage.transaction() as tx:
            conv_id = await tx.create_conversation(b"c" * 8, False, b"h" * 32)
            create = await tx.insert_op(conv_id, 0, alice_device, 1, None, b"\x80", b"1" * 32)
            await tx.set_roster(conv_id, b"h" * 32, {alice: Role.ADMIN}, [alice], [], create)
            early = await tx.insert_op(conv_id, 3, alice_device, 2, None, b"\x80", b"2" * 32)
            add = await tx.insert_op(conv_id, 0, alice_device, 3, None, b"\x80", b"3" * 32)
            await tx.set_roster(conv_id, b"i" * 32, {alice: Role.ADMIN, bob: Role.MEMBER},
                                [bob], [], add)
            during = await tx.insert_op(conv_id, 3, alice_device, 4, None, b"\x80", b"4" * 32)
            to_bob = await tx.insert_op(conv_id, 1, alice_device, 5, bob_device, b"\x80",
                                        b"5" * 32)
            to_alice = await tx.insert_op(conv_id, 1, bob_device, 1, alice_device, b"\x80",
                                          b"6" * 32)
            remove = await tx.insert_op(conv_id, 0, alice_device, 6, None, b"\x80", b"7" * 32)
            await tx.set_roster(conv_id, b"j" * 32, {alice: Role.ADMIN}, [], [bob], remove)
            late = await tx.insert_op(conv_id, 3, alice_device, 7, None, b"\x80", b"8" * 32)
        async with storage.snapshot() as snap:
            top = await snap.high_water()

            async def seqs(user_id: int, device_id: int, lane: int, after: int = 0) -> list[int]:
                rows = await snap.pull(user_id=user_id, device_id=device_id, lane=lane,
                                       after=after, upto=top, limit=100)
                assert all(row.conv == b"c" * 8 for row in rows)
                return [row.seq for row in rows]

            assert await seqs(bob, bob_device, 2) == [during]
            assert await seqs(bob, bob_device, 0) == [create, add, to_bob, remove]
            assert await seqs(alice, alice_device, 2) == []  # its own ops are not echoed
            assert await seqs(alice, alice_device, 0) == [to_alice]
            assert await seqs(bob, bob_device, 2, after=during) == []
            assert early not in await seqs(bob, bob_device, 2)
            assert late not in await seqs(bob, bob_device, 2)
            limited = await snap.pull(user_id=bob, device_id=bob_device, lane=0, after=0,
                                      upto=top, limit=2)
            assert [row.seq for row in limited] == [create, add]
            # What a long-poll listens for: the conversations a user is in now.
            assert await snap.conversations_of(alice) == {b"c" * 8}
            assert await snap.conversations_of(bob) == set()  # removed
    run(scenario)


def test_chain_of_a_removed_member_ends_at_its_removal(run: Callable[[Scenario], None]) -> None:
    """A removed member reads nothing of the roster after its removal, by /v1/chain as by a
    pull; re-added, it reads the whole chain again. (Found by tests/simulation, seed 22.)"""
    async def scenario(storage: Storage) -> None:
        alice, alice_device = await user(storage, "+254700000001")
        bob, _ = await user(storage, "+254700000002")
        carol, _ = await user(storage, "+254700000003")
        async with storage.transaction() as tx:
            conv_id = await tx.create_conversation(b"c" * 8, False, b"h" * 32)
            ops = iter(range(1, 10))

            async def change(members: dict[int, Role], joined: list[int], left: list[int]
                             ) -> int:
                op_id = next(ops)
                seq = await tx.insert_op(conv_id, 0, alice_device, op_id, None, b"\x80",
                                         bytes([op_id]) * 32)
                await tx.set_roster(conv_id, bytes([op_id]) * 32, members, joined, left, seq)
                return seq

            create = await change({alice: Role.ADMIN, bob: Role.MEMBER}, [alice, bob], [])
            remove = await change({}, [], [bob])
            add_carol = await change({carol: Role.MEMBER}, [carol], [])
        async with storage.snapshot() as snap:
            rows = await snap.chain(user_id=bob, conv=b"c" * 8, after=0, limit=100)
            assert rows is not None and [row.seq for row in rows] == [create, remove]
            assert await snap.chain(user_id=bob, conv=b"c" * 8, after=remove, limit=100) == []
            rows = await snap.chain(user_id=carol, conv=b"c" * 8, after=0, limit=100)
            assert rows is not None and [row.seq for row in rows] == [create, remove, add_carol]
        async with storage.transaction() as tx:
            add_bob = await change({bob: Role.MEMBER}, [bob], [])
        async with storage.snapshot() as snap:
            rows = await snap.chain(user_id=bob, conv=b"c" * 8, after=0, limit=100)
            assert rows is not None
            assert [row.seq for row in rows] == [create, remove, add_carol, add_bob]
    run(scenario)


def test_stats(run: Callable[[Scenario], None]) -> None:
    async def scenario(storage: Storage) -> None:
        _, device_id = await user(storage, "+254700000001")
        await storage.create_session(device_id, b"k" * 32, b"r" * 32, 100, 1000)
        assert await storage.revoke(device_id, 150)
        await user(storage, "+254700000002")
        async with storage.transaction() as tx:
            conv_id = await tx.create_conversation(b"c" * 8, False, b"h" * 32)
            await tx.insert_op(conv_id, 3, device_id, 1, None, b"\x80", b"d" * 32)
        stats = await storage.stats()
        assert (stats.users, stats.devices, stats.revoked_devices, stats.conversations,
                stats.ops, stats.sessions) == (2, 2, 1, 1, 1, 0)
        assert stats.database_bytes > 0
    run(scenario)


def test_backup(run: Callable[[Scenario], None], backend: str, tmp_path: Path) -> None:
    async def scenario(storage: Storage) -> None:
        await user(storage, "+254700000001")
        if backend == "postgresql":  # refused, pointing to the database's own tools
            with pytest.raises(StorageError, match="pg_dump"):
                await storage.backup(tmp_path / "copy.db")
            assert not (tmp_path / "copy.db").exists()
            return
        await storage.backup(tmp_path / "copy.db")
        copy = open_storage(str(tmp_path / "copy.db"))
        await copy.open()
        assert (await copy.stats()).users == 1
        await copy.close()
    run(scenario)


def test_concurrent_pushes_of_one_op_store_it_once(run: Callable[[Scenario], None]) -> None:
    """Two requests carrying the same op (a retry racing the original) cannot both see it
    as new: the second waits for the first, finds it and stores nothing."""
    async def scenario(storage: Storage) -> None:
        _, device_id = await user(storage, "+254700000001")
        async with storage.transaction() as tx:
            conv_id = await tx.create_conversation(b"c" * 8, False, b"h" * 32)

        async def push() -> int:
            async with storage.transaction() as tx:
                found = await tx.ops_by_id(device_id, [7])
                if 7 in found:
                    return found[7].seq
                await asyncio.sleep(0.05)  # the other push starts meanwhile
                return await tx.insert_op(conv_id, 3, device_id, 7, None, b"\x80", b"d" * 32)

        first, second = await asyncio.gather(push(), push())
        assert first == second
        assert (await storage.stats()).ops == 1
    run(scenario)
