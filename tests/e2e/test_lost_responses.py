"""Responses cut after the server committed: clients retry, each op is stored once, and the
retried ack is the seq the first, lost, response carried."""

from __future__ import annotations

import random
import sqlite3

import httpx

from clients.reference.connection import Connection, ResponseForged
from protocol import Role, SyncResponse
from tests.support.device import Device
from tests.support.linkemu import LinkEmulator, ThreadedLink
from tests.support.server import ServerProcess

MESSAGES = 25
ATTEMPTS = 40


def cut_half_the_responses(rng: random.Random, index: int) -> tuple[str, int] | None:
    # A keep-alive connection carries a few responses, then dies in the middle of one.
    return ("down", rng.randint(5, 400)) if rng.random() < 0.9 else None


def with_retries(call: object) -> SyncResponse:
    for _ in range(ATTEMPTS):
        try:
            return call()  # type: ignore[operator, no-any-return]
        except (httpx.HTTPError, ResponseForged):
            continue
    raise AssertionError("no response got through")


def test_cut_responses_never_duplicate_or_lose_an_op(server: ServerProcess) -> None:
    phones = ("+254711000001", "+254711000002")
    amina = Device.enrol(server.url, phones[0], server.invite(phones[0]))
    brian = Device.enrol(server.url, phones[1], server.invite(phones[1]))
    conv, create = amina.create({brian.user_id: Role.MEMBER})
    amina.push(conv, create)
    emulator = LinkEmulator("127.0.0.1", server.port, seed=3, plan=cut_half_the_responses)
    acks: dict[int, int] = {}
    with ThreadedLink(emulator) as link:
        amina.connection = Connection(link.url, timeout=10)
        brian.connection = Connection(link.url, timeout=10)
        for n in range(MESSAGES):
            op = amina.chat(conv, f"ciphertext {n}".encode())
            response = with_retries(lambda op=op: amina.push(conv, op))
            acks[op.op_id] = response.acks[0]
        received: list[int] = []
        for _ in range(200):
            response = with_retries(lambda: brian.sync(budget=600))
            received += [p.seq for block in response.blocks for p in block.ops]
            if not response.more:
                break
        assert link.counters.cuts > 5  # the test did lose responses
    with sqlite3.connect(f"file:{server.db}?mode=ro", uri=True) as db:
        stored = dict(db.execute("SELECT op_id, seq FROM ops WHERE device_id = ?",
                                 (amina.device_id,)).fetchall())
    assert stored == {create.op_id: stored[create.op_id], **acks}  # once each, acks identical
    # Brian saw every message; a retried pull may repeat ops, his store keeps them once.
    assert set(acks.values()) <= set(received)
    assert {seq for (device, _), seq in brian.seen.items() if device == amina.device_id} == (
        set(acks.values()) | {stored[create.op_id]})
