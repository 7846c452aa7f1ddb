"""The sync exchange over real HTTP against a real server process."""

from __future__ import annotations

from collections.abc import Callable

from protocol import Cursor, ErrorCode, OpType, Role
from tests.support.device import Device
from tests.support.server import ServerProcess


def test_messages_flow_between_members(enrol: Callable[[], Device]) -> None:
    amina, brian = enrol(), enrol()
    conv, create = amina.create({brian.user_id: Role.MEMBER})
    first = amina.push(conv, create, amina.chat(conv, b"ciphertext-1"))
    assert len(first.acks) == 2 and first.acks[0] < first.acks[1]
    assert not first.blocks  # its own ops are not sent back
    seqs = brian.drain()
    assert seqs == list(first.acks)
    assert brian.cursor == Cursor.at(max(first.acks)) or max(brian.cursor.lanes) >= first.acks[1]


def test_replay_returns_the_same_ack_and_conflict_is_refused(enrol: Callable[[], Device]) -> None:
    amina = enrol()
    conv, create = amina.create({})
    message = amina.chat(conv, b"hello")
    acks = amina.push(conv, create, message).acks
    assert amina.push(conv, create, message).acks == acks
    altered = amina.sign(conv, amina.with_op_id(amina.chat(conv, b"other"), message.op_id))
    try:
        amina.push(conv, altered)
    except Exception as exc:
        assert getattr(exc, "code", None) is ErrorCode.OP_CONFLICT
    else:
        raise AssertionError("conflicting op accepted")


def test_empty_sync_is_small(server: ServerProcess, enrol: Callable[[], Device]) -> None:
    amina = enrol()
    amina.drain()
    response = amina.sync()
    assert not response.blocks and not response.more
    _ = OpType
