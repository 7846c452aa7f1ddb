"""Who sees what, lanes under a tight budget, cursors under concurrency, and no plaintext."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator

import pytest

from protocol import (
    AuthedResponse,
    Cursor,
    DirectoryRequest,
    EnvelopeOp,
    Lane,
    OpType,
    Role,
    SyncRequest,
    SyncResponse,
    decode,
    encode,
)
from tests.support.device import PLACEHOLDER, Device
from tests.support.postgres import create_database, drop_database
from tests.support.server import ServerProcess


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    """These rules are the heart of the server: checked on both backends."""
    database = None
    if request.param == "postgresql":
        maintenance = str(request.getfixturevalue("postgres_server"))
        database = create_database(maintenance)
    process = ServerProcess(tmp_path_factory.mktemp("visibility") / "syncd.db",
                            database=database).start()
    yield process
    if process.alive():
        process.stop()
    if database is not None:
        drop_database(maintenance, database)


def envelope(sender: Device, conv: bytes, to: Device) -> EnvelopeOp:
    op = sender.sign(conv, EnvelopeOp(sender.op_id(), to.device_id, os.urandom(84), PLACEHOLDER))
    assert isinstance(op, EnvelopeOp)
    return op


def seen_ops(device: Device) -> set[tuple[int, int]]:
    device.drain()
    return set(device.seen)


def test_members_see_from_joining_to_leaving_only(enrol: Callable[[], Device]) -> None:
    admin, early, late = enrol(), enrol(), enrol()
    conv, create = admin.create({early.user_id: Role.MEMBER})
    before = admin.chat(conv, b"before the late member joined")
    admin.push(conv, create, before)
    add = admin.add(conv, late.user_id)
    during = admin.chat(conv, b"while both are in")
    admin.push(conv, add, during)
    remove = admin.remove(conv, early.user_id)
    after = admin.chat(conv, b"after the early member left")
    admin.push(conv, remove, after)
    d = admin.device_id
    early_seen = seen_ops(early)
    late_seen = seen_ops(late)
    assert {(d, before.op_id), (d, during.op_id)} <= early_seen
    assert (d, after.op_id) not in early_seen
    assert (d, remove.op_id) in early_seen  # it learns it was removed
    assert (d, before.op_id) not in late_seen
    assert {(d, during.op_id), (d, after.op_id)} <= late_seen
    # The whole membership chain, from the create, for verification.
    assert {(d, create.op_id), (d, add.op_id), (d, remove.op_id)} <= late_seen


def test_envelopes_reach_only_their_device(enrol: Callable[[], Device]) -> None:
    admin, brian, chris = enrol(), enrol(), enrol()
    conv, create = admin.create({brian.user_id: Role.MEMBER, chris.user_id: Role.MEMBER})
    for_brian, for_chris = envelope(admin, conv, brian), envelope(admin, conv, chris)
    admin.push(conv, create, for_brian, for_chris)
    d = admin.device_id
    brian_seen, chris_seen = seen_ops(brian), seen_ops(chris)
    assert (d, for_brian.op_id) in brian_seen and (d, for_chris.op_id) not in brian_seen
    assert (d, for_chris.op_id) in chris_seen and (d, for_brian.op_id) not in chris_seen


def test_another_user_learns_nothing_from_any_id_it_can_name(enrol: Callable[[], Device]) -> None:
    amina, brian, eve = enrol(), enrol(), enrol()
    conv, create = amina.create({brian.user_id: Role.MEMBER})
    secret = amina.chat(conv, b"not for eve")
    acks = amina.push(conv, create, secret).acks
    assert seen_ops(eve) == set()
    # Cursors: rewinding to 0 or naming the exact seqs shows eve nothing.
    for cursor in (Cursor(), Cursor.at(acks[0] - 1), Cursor((0, 0, acks[1] - 1, 0))):
        assert not eve.sync(cursor=cursor, keep=False).blocks
    # An envelope to a device in the conversation, from outside it: not found.
    error = None
    try:
        eve.push(conv, envelope(eve, conv, brian))
    except Exception as exc:
        error = exc
    assert getattr(error, "status", None) == 404
    # The directory answers for users, not for conversations.
    assert eve.session is not None
    found = eve.connection.directory(eve.session, DirectoryRequest(phones=(amina.phone,)))
    assert [u.user_id for u in found.users] == [amina.user_id]
    assert eve.connection.directory(
        eve.session, DirectoryRequest(phones=("+19999999999",))).users == ()


def test_tight_budget_sends_key_envelopes_and_announcements_before_chat(
        enrol: Callable[[], Device]) -> None:
    admin, brian = enrol(), enrol()
    conv, create = admin.create({brian.user_id: Role.MEMBER})
    admin.push(conv, create)
    brian.drain()
    chatter = [admin.chat(conv, os.urandom(120)) for _ in range(30)]
    admin.push(conv, *chatter)
    announcement = admin.chat(conv, os.urandom(120), OpType.ANNOUNCE)
    key = envelope(admin, conv, brian)
    admin.push(conv, announcement, key)  # committed after all the chatter
    budget = 700
    first = brian.sync(budget=budget)
    types = [p.op.op_type for block in first.blocks for p in block.ops]
    assert types[:2] == [OpType.ENVELOPE, OpType.ANNOUNCE]
    assert first.more
    assert first.cursor[Lane.CHAT] < max(first.cursor.lanes)  # chat is the lane cut short
    sizes = []
    assert brian.session is not None
    for _ in range(100):  # every response within budget (each op is far smaller)
        body = encode(SyncRequest(cursor=brian.cursor, budget=budget))
        reply = brian.connection.call(brian.session, "/v1/sync", body)
        sizes.append(len(encode(AuthedResponse(reply, bytes(16)))))
        response = decode(reply, SyncResponse)
        brian.cursor = response.cursor
        for block in response.blocks:
            for pulled in block.ops:
                brian.seen[(pulled.from_device, pulled.op.op_id)] = pulled.seq
        if not response.more:
            break
    assert max(sizes) <= budget
    assert {(admin.device_id, op.op_id) for op in chatter} <= set(brian.seen)


def test_cursors_never_skip_under_concurrent_pushes(enrol: Callable[[], Device]) -> None:
    writers = [enrol() for _ in range(3)]
    reader = enrol()
    owner = writers[0]
    conv, create = owner.create({d.user_id: Role.MEMBER for d in [*writers[1:], reader]})
    owner.push(conv, create)
    sent: list[tuple[int, int]] = []
    lock = threading.Lock()

    def write(device: Device) -> None:
        for _ in range(15):
            op = device.chat(conv, os.urandom(30))
            device.push(conv, op)
            with lock:
                sent.append((device.device_id, op.op_id))

    threads = [threading.Thread(target=write, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):  # pull while they write
        reader.sync(budget=400)
    for thread in threads:
        thread.join()
    reader.drain()
    assert set(sent) <= set(reader.seen)


def test_the_database_holds_no_plaintext(server: ServerProcess,
                                         enrol: Callable[[], Device]) -> None:
    amina, brian = enrol(), enrol()
    conv, create = amina.create({brian.user_id: Role.MEMBER})
    words = "the vaccination stock at Kisumu clinic is running low"
    sealed = amina.encrypted(conv, words, epoch_key=os.urandom(32))
    amina.push(conv, create, sealed)
    brian.drain()
    raw = server.stored_bytes()
    assert sealed.payload in raw  # the ciphertext is there ...
    for word in words.split():  # ... and none of the words
        if len(word) > 3:
            assert word.encode() not in raw, word
