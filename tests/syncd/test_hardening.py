"""Abuse a server should shrug off, and the index plans that keep syncs cheap."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from clients.reference.connection import ServerError
from clients.reference.crypto import DeviceKeys
from protocol import (
    ChainRequest,
    ChainResponse,
    ChallengeRequest,
    EnvelopeOp,
    ErrorCode,
    Role,
    decode,
    encode,
)
from syncd.storage.sqlite import SQLiteStorage
from tests.support.device import PLACEHOLDER, Device
from tests.support.server import ServerProcess

from .conftest import next_phone
from .test_errors import fingerprint


def test_pull_queries_use_their_indexes(tmp_path: Path) -> None:
    async def build() -> None:
        storage = SQLiteStorage(tmp_path / "plan.db")
        await storage.open()
        await storage.close()

    asyncio.run(build())
    with sqlite3.connect(tmp_path / "plan.db") as db:
        stream = " ".join(row[3] for row in db.execute(
            "EXPLAIN QUERY PLAN SELECT seq FROM ops WHERE conv_id = ? AND op_type = ?"
            " AND seq > ? AND seq <= ? AND device_id != ? ORDER BY seq LIMIT ?",
            (1, 3, 0, 10, 1, 5)))
        inbox = " ".join(row[3] for row in db.execute(
            "EXPLAIN QUERY PLAN SELECT seq FROM ops WHERE to_device = ? AND seq > ?"
            " AND seq <= ? AND device_id != ? ORDER BY seq LIMIT ?", (1, 0, 10, 1, 5)))
    assert "ops_stream" in stream and "SCAN" not in stream
    assert "ops_inbox" in inbox and "SCAN" not in inbox


def test_challenges_write_nothing_whoever_asks(server: ServerProcess) -> None:
    before = fingerprint(server.db)
    with sqlite3.connect(server.db) as db:
        used_before = db.execute("SELECT count(*) FROM used_challenges").fetchone()
    for device_id in range(1, 300):
        response = httpx.post(server.url + "/v1/challenge",
                              content=encode(ChallengeRequest(device_id * 7919)), timeout=10)
        assert response.status_code == 200
    assert fingerprint(server.db) == before
    with sqlite3.connect(server.db) as db:
        assert db.execute("SELECT count(*) FROM used_challenges").fetchone() == used_before


def test_an_answered_challenge_cannot_be_answered_again(enrol: Callable[[], Device]) -> None:
    amina = enrol()
    from protocol import ChallengeResponse, SessionRequest, SessionResponse, session_signing_input

    connection = amina.connection
    challenge = decode(connection.post("/v1/challenge", encode(ChallengeRequest(amina.device_id))),
                       ChallengeResponse)
    answer = SessionRequest(amina.device_id, challenge.nonce, amina.keys.sign(
        session_signing_input(amina.device_id, challenge.nonce)))
    decode(connection.post("/v1/session", encode(answer)), SessionResponse)
    with pytest.raises(ServerError) as again:
        connection.post("/v1/session", encode(answer))
    assert again.value.code is ErrorCode.UNAUTHENTICATED


def test_a_low_order_hpke_key_is_refused_at_registration(server: ServerProcess) -> None:
    from clients.reference.connection import Connection
    from protocol import RegisterRequest, register_signing_input

    phone = next_phone()
    code = server.invite(phone)
    keys = DeviceKeys.generate()
    bad_hpke = bytes(32)  # the all-zero point: HPKE cannot seal to it
    proof = keys.sign(register_signing_input(phone, code, keys.sign_public, bad_hpke))
    with Connection(server.url) as connection, pytest.raises(ServerError) as refused:
        connection.post("/v1/register", encode(
            RegisterRequest(phone, code, keys.sign_public, bad_hpke, proof)))
    assert refused.value.status == 400 and refused.value.code is ErrorCode.BAD_FRAME
    Device.enrol(server.url, phone, code)  # the code was not spent


def test_envelopes_a_device_sends_are_not_echoed_to_it(enrol: Callable[[], Device]) -> None:
    amina, brian = enrol(), enrol()
    conv, create = amina.create({brian.user_id: Role.MEMBER})
    own = amina.sign(conv, EnvelopeOp(amina.op_id(), amina.device_id, os.urandom(84),
                                      PLACEHOLDER))
    amina.push(conv, create, own)
    assert (amina.device_id, own.op_id) not in set(amina.seen) | {
        (p.from_device, p.op.op_id) for b in amina.sync(keep=False).blocks for p in b.ops}


def test_chain_is_for_members_only(enrol: Callable[[], Device]) -> None:
    amina, brian, eve = enrol(), enrol(), enrol()
    conv, create = amina.create({brian.user_id: Role.MEMBER})
    amina.push(conv, create, amina.add(conv, eve.user_id), amina.remove(conv, eve.user_id))
    assert brian.session is not None and eve.session is not None
    chain = decode(brian.connection.call(brian.session, "/v1/chain",
                                         encode(ChainRequest(conv))), ChainResponse)
    assert chain.block is not None and len(chain.block.ops) == 3 and not chain.more
    stranger = enrol()
    assert stranger.session is not None
    with pytest.raises(ServerError) as refused:
        stranger.connection.call(stranger.session, "/v1/chain", encode(ChainRequest(conv)))
    assert refused.value.status == 404 and refused.value.authenticated
    with pytest.raises(ServerError) as unknown:
        stranger.connection.call(stranger.session, "/v1/chain",
                                 encode(ChainRequest(os.urandom(8))))
    assert unknown.value.frame.message == refused.value.frame.message


def test_an_upload_cut_midway_is_not_a_server_error(server: ServerProcess) -> None:
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/sync HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
                         + bytes(100))
    time.sleep(0.5)
    metrics = httpx.get(server.url + "/metrics").text
    assert 'route="sync",status="500"' not in metrics


def test_the_read_deadline_also_covers_later_requests_on_a_connection(
        tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "deadline.db",
                           env={"SYNCD_READ_DEADLINE_SECONDS": "1.5"}).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(200).startswith(b"HTTP/1.1 200")
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # the second request trickles
            started = time.monotonic()
            closed = False
            while time.monotonic() - started < 8:
                try:
                    sock.sendall(b"X")
                    time.sleep(0.2)
                except OSError:
                    closed = True
                    break
            if not closed:
                sock.settimeout(2)
                try:
                    closed = sock.recv(10) == b""
                except OSError:
                    closed = True
            assert closed
    finally:
        server.stop()
