"""Every error code of the spec's table, over real HTTP, and the database unchanged after each."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from clients.reference.connection import ServerError
from protocol import (
    AuthedRequest,
    AuthedResponse,
    ContentOp,
    Cursor,
    ErrorCode,
    ErrorFrame,
    OpType,
    ProtocolError,
    Role,
    SyncRequest,
    decode,
    dumps,
    encode,
    request_tag,
)
from tests.support.device import PLACEHOLDER, Device
from tests.support.server import ServerProcess, free_port

from .conftest import next_phone

STATE_TABLES = ("users", "devices", "conversations", "members", "spans", "ops", "invites",
                "sessions")


def fingerprint(db: Path) -> str:
    """A digest of every row that a refused request must leave alone.

    Sessions are included without their counter: a request whose tag verified
    consumes its counter even when it is then refused (SPEC.md section 6).
    """
    digest = hashlib.sha256()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        for table in STATE_TABLES:
            columns = "id, device_id, request_key, expires_at" if table == "sessions" else "*"
            for row in connection.execute(f"SELECT {columns} FROM {table} ORDER BY 1, 2"):
                digest.update(repr(row).encode())
    return digest.hexdigest()


Check = Callable[[], None]


@pytest.fixture
def unchanged(server: ServerProcess) -> Iterator[Callable[[], Check]]:
    """``check = unchanged()`` before the refused request, ``check()`` after it."""

    def snapshot() -> Check:
        before = fingerprint(server.db)

        def check() -> None:
            assert fingerprint(server.db) == before

        return check

    yield snapshot


def refused(call: Callable[[], object]) -> ServerError:
    with pytest.raises(ServerError) as error:
        call()
    return error.value


def raw(server: ServerProcess, path: str, body: bytes) -> httpx.Response:
    return httpx.post(server.url + path, content=body,
                      headers={"content-type": "application/cbor"}, timeout=30)


def error_of(response: httpx.Response) -> ErrorFrame:
    """The error frame of a refusal, plain or tagged (inside an authed response)."""
    try:
        return decode(response.content, ErrorFrame)
    except ProtocolError:
        return decode(decode(response.content, AuthedResponse).body, ErrorFrame)


def authed_raw(device: Device, body: bytes) -> ServerError:
    session = device.session
    assert session is not None
    return refused(lambda: device.connection.call(session, "/v1/sync", body))


# ----------------------------------------------------------------- 400s


@pytest.mark.parametrize(("body", "code"), [
    (b"\xff\x00garbage", ErrorCode.MALFORMED),
    (bytes.fromhex("9f01ff"), ErrorCode.MALFORMED),
    (bytes.fromhex("a0"), ErrorCode.BAD_FRAME),
    (bytes.fromhex("850219109211" "4100" "50") + bytes(16), ErrorCode.UNSUPPORTED_VERSION),
    (b"\x81" * 40 + b"\x00", ErrorCode.LIMIT_EXCEEDED),
    (bytes.fromhex("5b0000000100000000aa"), ErrorCode.MALFORMED),
])
def test_bad_frames_are_400_with_the_spec_code(server: ServerProcess, body: bytes,
                                               code: ErrorCode,
                                               unchanged: Callable[[], Check]) -> None:
    check = unchanged()
    response = raw(server, "/v1/sync", body)
    assert response.status_code == 400
    assert error_of(response).code == code
    check()


def test_unknown_version_in_the_path(server: ServerProcess) -> None:
    response = raw(server, "/v2/sync", b"\xa0")
    assert response.status_code == 400
    frame = error_of(response)
    assert frame.code == ErrorCode.UNSUPPORTED_VERSION and frame.supported_versions == (1,)
    assert raw(server, "/v1/nothing", b"").status_code == 404


def test_bad_op_signature(enrol: Callable[[], Device], unchanged: Callable[[], Check]) -> None:
    amina = enrol()
    conv, create = amina.create({})
    forged = ContentOp(OpType.CHAT, amina.op_id(), b"x", b"\x01" * 64)
    check = unchanged()
    error = refused(lambda: amina.push(conv, create, forged))
    assert error.code is ErrorCode.BAD_SIGNATURE and error.authenticated
    assert error.frame.op_index == 1
    check()


def test_budget_too_small(enrol: Callable[[], Device], unchanged: Callable[[], Check]) -> None:
    amina = enrol()
    check = unchanged()
    error = authed_raw(amina, dumps({3: 100}))
    assert error.status == 400 and error.code is ErrorCode.BUDGET_TOO_SMALL
    check()


def test_body_over_the_limit_is_413(server: ServerProcess, unchanged: Callable[[], Check]) -> None:
    check = unchanged()
    response = raw(server, "/v1/sync", bytes(300 * 1024))
    assert response.status_code == 413 and error_of(response).code == ErrorCode.TOO_LARGE
    check()


# ----------------------------------------------------------------- 401s


def test_bad_tag_and_unknown_session(enrol: Callable[[], Device],
                                     unchanged: Callable[[], Check]) -> None:
    amina = enrol()
    assert amina.session is not None
    body = encode(SyncRequest())
    check = unchanged()
    bad_tag = AuthedRequest(amina.session.session_id, 99, body, bytes(16))
    response = raw_device(amina, bad_tag)
    assert response.status_code == 401
    assert error_of(response).code == ErrorCode.UNAUTHENTICATED
    unknown = AuthedRequest(10**12, 1, body, bytes(16))
    assert error_of(raw_device(amina, unknown)).code == ErrorCode.UNAUTHENTICATED
    check()


def raw_device(device: Device, frame: AuthedRequest) -> httpx.Response:
    return httpx.post(device.url + "/v1/sync", content=encode(frame),
                      headers={"content-type": "application/cbor"}, timeout=30)


def test_replayed_request_is_refused(enrol: Callable[[], Device]) -> None:
    amina = enrol()
    assert amina.session is not None
    body = encode(SyncRequest())
    counter = amina.session.counter + 1
    amina.session.counter = counter
    tag = request_tag(amina.session.request_key, path="/v1/sync",
                      session_id=amina.session.session_id, counter=counter, body=body)
    frame = AuthedRequest(amina.session.session_id, counter, body, tag)
    assert raw_device(amina, frame).status_code == 200
    again = raw_device(amina, frame)
    assert again.status_code == 401
    assert error_of(again).code == ErrorCode.REPLAYED


def test_expired_session(server: ServerProcess, enrol: Callable[[], Device]) -> None:
    amina = enrol()
    assert amina.session is not None
    with sqlite3.connect(server.db) as connection:
        connection.execute("UPDATE sessions SET expires_at = 1 WHERE id = ?",
                           (amina.session.session_id,))
    error = refused(lambda: amina.sync())
    assert error.status == 401 and error.code is ErrorCode.SESSION_EXPIRED
    amina.login()
    amina.sync()


def test_revoked_device_is_refused_at_once(server: ServerProcess,
                                           enrol: Callable[[], Device]) -> None:
    import asyncio

    from syncd import admin

    amina = enrol()
    amina.sync()
    asyncio.run(admin.revoke(str(server.db), amina.device_id))
    assert refused(lambda: amina.sync()).status == 401  # its sessions ended
    error = refused(lambda: amina.login())
    assert error.code is ErrorCode.DEVICE_REVOKED


def test_wrong_challenge_answer(enrol: Callable[[], Device],
                                unchanged: Callable[[], Check]) -> None:
    amina, other = enrol(), enrol()
    keys, amina.keys = amina.keys, other.keys  # sign with someone else's key
    check = unchanged()
    error = refused(lambda: amina.login())
    amina.keys = keys
    assert error.code is ErrorCode.UNAUTHENTICATED
    check()


# ----------------------------------------------------------------- 403, 404


def test_enrolment_code_refused(server: ServerProcess) -> None:
    phone = next_phone()
    code = server.invite(phone)
    unchanged_before = fingerprint(server.db)
    for bad in ("AAAAA-AAAAA", code.lower()):
        with pytest.raises(ServerError) as wrong:
            Device.enrol(server.url, phone, bad)
        assert wrong.value.status == 403 and wrong.value.code is ErrorCode.ENROLMENT_REFUSED
    error = refused(lambda: Device.enrol(server.url, next_phone(), code))  # another phone
    assert error.code is ErrorCode.ENROLMENT_REFUSED
    assert fingerprint(server.db) == unchanged_before
    Device.enrol(server.url, phone, code)
    error = refused(lambda: Device.enrol(server.url, phone, code))  # single use
    assert error.code is ErrorCode.ENROLMENT_REFUSED


def test_only_admins_change_membership(enrol: Callable[[], Device]) -> None:
    amina, brian, chris = enrol(), enrol(), enrol()
    conv, create = amina.create({brian.user_id: Role.MEMBER})
    amina.push(conv, create)
    brian.heads[conv] = amina.heads[conv]
    error = refused(lambda: brian.push(conv, brian.add(conv, chris.user_id)))
    assert error.status == 403 and error.code is ErrorCode.FORBIDDEN and error.authenticated


def test_only_admins_post_to_broadcast(enrol: Callable[[], Device]) -> None:
    amina, brian = enrol(), enrol()
    conv, create = amina.create({brian.user_id: Role.MEMBER}, broadcast=True)
    amina.push(conv, create, amina.chat(conv, b"from the admin"))
    error = refused(lambda: brian.push(conv, brian.chat(conv, b"from a member")))
    assert error.code is ErrorCode.FORBIDDEN
    error = refused(lambda: brian.push(conv, brian.chat(conv, b"x", OpType.ANNOUNCE)))
    assert error.code is ErrorCode.FORBIDDEN


def test_foreign_and_unknown_conversations_look_the_same(
        enrol: Callable[[], Device], unchanged: Callable[[], Check]) -> None:
    amina, eve = enrol(), enrol()
    conv, create = amina.create({})
    amina.push(conv, create)
    check = unchanged()
    foreign = refused(lambda: eve.push(conv, eve.chat(conv, b"intrusion")))
    other = os.urandom(8)
    unknown = refused(lambda: eve.push(other, eve.chat(other, b"x")))
    assert foreign.status == unknown.status == 404
    assert foreign.code is unknown.code is ErrorCode.NOT_FOUND
    assert foreign.frame.message == unknown.frame.message
    check()


# ----------------------------------------------------------------- 409s


def test_op_conflict_and_out_of_order(enrol: Callable[[], Device]) -> None:
    amina = enrol()
    conv, create = amina.create({})
    first = amina.chat(conv, b"one")
    amina.push(conv, create, first)
    other = amina.sign(conv, ContentOp(OpType.CHAT, first.op_id, b"two", PLACEHOLDER))
    assert refused(lambda: amina.push(conv, other)).code is ErrorCode.OP_CONFLICT
    stale = amina.sign(conv, ContentOp(OpType.CHAT, 1_000, b"three", PLACEHOLDER))
    amina.push(conv, stale)
    old = amina.sign(conv, ContentOp(OpType.CHAT, 999, b"four", PLACEHOLDER))
    error = refused(lambda: amina.push(conv, old))
    assert error.status == 409 and error.code is ErrorCode.OP_OUT_OF_ORDER


def test_roster_conflict_and_existing_conversation(enrol: Callable[[], Device]) -> None:
    amina, brian, chris = enrol(), enrol(), enrol()
    conv, create = amina.create({brian.user_id: Role.ADMIN})
    amina.push(conv, create)
    brian.heads[conv] = amina.heads[conv]
    amina.push(conv, amina.add(conv, chris.user_id))
    error = refused(lambda: brian.push(conv, brian.remove(conv, amina.user_id)))
    assert error.code is ErrorCode.ROSTER_CONFLICT
    _, again = chris.create({}, conv=conv)
    assert refused(lambda: chris.push(conv, again)).code is ErrorCode.CONVERSATION_EXISTS


def test_cursor_ahead(enrol: Callable[[], Device]) -> None:
    amina = enrol()
    error = refused(lambda: amina.sync(cursor=Cursor.at(10**15)))
    assert error.status == 409 and error.code is ErrorCode.CURSOR_AHEAD


# ----------------------------------------------------------------- 429, 503, 500


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "limited.db", env={
        "SYNCD_RATE_PER_SECOND": "0.5", "SYNCD_RATE_BURST": "3"}).start()
    try:
        phone = next_phone()
        device = Device.enrol(server.url, phone, server.invite(phone))
        statuses = []
        for _ in range(6):
            try:
                device.sync()
                statuses.append(200)
            except ServerError as error:
                statuses.append(error.status)
                assert error.code is ErrorCode.RATE_LIMITED
                assert error.frame.retry_after is not None and error.frame.retry_after >= 1
        assert statuses[:3] == [200, 200, 200] and 429 in statuses
        response = raw(server, "/v1/sync", b"")
        assert response.status_code == 400  # unauthenticated junk is not counted as the device
    finally:
        server.stop()


def test_locked_database_answers_503_and_writes_nothing(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "busy.db", env={"SYNCD_BUSY_TIMEOUT_MS": "200"}).start()
    try:
        phone = next_phone()
        device = Device.enrol(server.url, phone, server.invite(phone))
        conv, create = device.create({})
        before = fingerprint(server.db)
        blocker = sqlite3.connect(server.db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            error = refused(lambda: device.push(conv, create))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert error.status == 503 and error.code is ErrorCode.UNAVAILABLE
        assert error.frame.retry_after is not None
        assert fingerprint(server.db) == before
        assert device.push(conv, create).acks  # and it recovers
    finally:
        server.stop()


def test_full_database_answers_503_and_recovers_when_there_is_room(tmp_path: Path) -> None:
    db = tmp_path / "full.db"
    port = free_port()
    server = ServerProcess(db, port=port).start()
    phone = next_phone()
    device = Device.enrol(server.url, phone, server.invite(phone))
    server.stop()
    size = db.stat().st_size
    server = ServerProcess(db, port=port, env={"SYNCD_MAX_DB_BYTES": str(size)}).start()
    try:
        device.login()
        conv, create = device.create({})
        big = [device.chat(conv, os.urandom(60_000)) for _ in range(3)]
        before = fingerprint(db)
        error = refused(lambda: device.push(conv, create, *big))
        assert error.status == 503 and error.code is ErrorCode.UNAVAILABLE
        assert fingerprint(db) == before  # no ack without a commit, nothing half-written
    finally:
        server.stop()
    server = ServerProcess(db, port=port).start()  # room again: the same push goes through
    try:
        device.login()
        assert len(device.push(conv, create, *big).acks) == 4
    finally:
        server.stop()


def test_only_admins_hand_out_keys(enrol: Callable[[], Device]) -> None:
    from protocol import EnvelopeOp

    amina, brian, chris = enrol(), enrol(), enrol()
    conv, create = amina.create({brian.user_id: Role.MEMBER, chris.user_id: Role.MEMBER})
    amina.push(conv, create)
    planted = brian.sign(conv, EnvelopeOp(brian.op_id(), chris.device_id, os.urandom(84),
                                          PLACEHOLDER))
    error = refused(lambda: brian.push(conv, planted))
    assert error.status == 403 and error.code is ErrorCode.FORBIDDEN and error.authenticated
