"""The sync exchange over real HTTP against a real server process."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from clients.reference.connection import ServerError
from protocol import ErrorCode, Role, SyncRequest, SyncResponse, decode, encode
from tests.support.device import Device


def test_messages_flow_between_members(enrol: Callable[[], Device]) -> None:
    amina, brian = enrol(), enrol()
    conv, create = amina.create({brian.user_id: Role.MEMBER})
    first = amina.push(conv, create, amina.chat(conv, b"ciphertext-1"))
    assert len(first.acks) == 2 and first.acks[0] < first.acks[1]
    assert not first.blocks  # its own ops are not sent back
    seqs = brian.drain()
    assert seqs == list(first.acks)
    # Other tests share the server, so the high-water mark may be above these acks.
    assert min(brian.cursor.lanes) >= first.acks[1]


def test_replay_returns_the_same_ack_and_conflict_is_refused(enrol: Callable[[], Device]) -> None:
    amina = enrol()
    conv, create = amina.create({})
    message = amina.chat(conv, b"hello")
    acks = amina.push(conv, create, message).acks
    assert amina.push(conv, create, message).acks == acks
    altered = amina.sign(conv, amina.with_op_id(amina.chat(conv, b"other"), message.op_id))
    with pytest.raises(ServerError) as refused:
        amina.push(conv, altered)
    assert refused.value.code is ErrorCode.OP_CONFLICT


def test_an_empty_sync_answers_only_the_cursor(enrol: Callable[[], Device]) -> None:
    amina = enrol()
    amina.drain()
    assert amina.session is not None
    body = amina.connection.call(amina.session, "/v1/sync",
                                 encode(SyncRequest(cursor=amina.cursor)))
    assert decode(body, SyncResponse) == SyncResponse(amina.cursor)
    assert len(body) <= 1 + 1 + 9  # {3: cursor}: a map head, a key, at most a 9-byte integer
