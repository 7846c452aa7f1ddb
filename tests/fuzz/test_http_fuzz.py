"""Hostile bodies against a live server: every answer a typed 4xx, and the server unharmed.

One real ``syncd serve`` per module, on loopback, over a real SQLite file.
Unauthenticated routes get hostile bodies directly; authenticated routes get
them both as the envelope (refused before authentication, with a plain error
frame) and inside a validly tagged envelope from an enrolled phone (refused
after it, with a tagged error frame whose tag must verify). After each test
the server must be alive and ready, serve a normal sync, and have logged no
traceback.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

import protocol
from protocol import (
    AuthedRequest,
    AuthedResponse,
    ErrorCode,
    ErrorFrame,
    decode,
    encode,
    request_tag,
    response_tag,
    tags_equal,
)
from protocol.limits import MAX_BODY_BYTES, MAX_RESPONSE_BYTES
from protocol.membership import Role
from tests.support.device import Device
from tests.support.server import ServerProcess

from . import strategies as hs
from .budget import COUNTS, MAX_HTTP_SECONDS, fuzz_settings

# route: (what its body is, what a success answers with)
OPEN_ROUTES: dict[str, tuple[Any, Any]] = {
    "/v1/register": (protocol.RegisterRequest, protocol.RegisterResponse),
    "/v1/challenge": (protocol.ChallengeRequest, protocol.ChallengeResponse),
    "/v1/session": (protocol.SessionRequest, protocol.SessionResponse),
}
AUTHED_ROUTES: dict[str, tuple[Any, Any]] = {
    "/v1/sync": (protocol.SyncRequest, protocol.SyncResponse),
    "/v1/directory": (protocol.DirectoryRequest, protocol.DirectoryResponse),
    "/v1/chain": (protocol.ChainRequest, protocol.ChainResponse),
}
_phones = itertools.count(254_712_000_001)
# A process that allocated by what a head declares would pass this at once
# (2^32 items); decoding the largest body it accepts takes ~25 MiB.
MAX_SERVER_RSS_BYTES = 512 * 1024 * 1024


def post(http: httpx.Client, path: str, body: bytes) -> httpx.Response:
    COUNTS["requests"] += 1
    started = time.perf_counter()
    # A dropped connection or a hang raises here and fails the test.
    response = http.post(path, content=body)
    elapsed = time.perf_counter() - started
    assert elapsed < MAX_HTTP_SECONDS, f"{elapsed:.1f} s for {path} <- {body[:200].hex()}"
    assert response.status_code < 500, f"{response.status_code} for {path} <- {body.hex()}"
    return response


def assert_plain_answer(response: httpx.Response, answer_type: Any, note: str) -> None:
    """A success of the route's answer type, or a plain error frame whose code is the status."""
    if response.status_code == 200:
        decode(response.content, answer_type, max_bytes=MAX_RESPONSE_BYTES)
        return
    assert 400 <= response.status_code < 500, note
    frame = decode(response.content, ErrorFrame)
    assert frame.known_code is not None, note
    assert frame.known_code.http_status == response.status_code, note


def assert_tagged_answer(response: httpx.Response, phone: Device, path: str, counter: int,
                         answer_type: Any, note: str) -> None:
    """After authentication every answer, success or refusal, carries a valid response tag."""
    session = phone.session
    assert session is not None
    sealed = decode(response.content, AuthedResponse, max_bytes=MAX_RESPONSE_BYTES)
    expected = response_tag(session.response_key, path=path, session_id=session.session_id,
                            counter=counter, body=sealed.body)
    assert tags_equal(expected, sealed.tag), f"untagged or forged answer: {note}"
    if response.status_code == 200:
        decode(sealed.body, answer_type, max_bytes=MAX_RESPONSE_BYTES)
        return
    assert 400 <= response.status_code < 500, note
    frame = decode(sealed.body, ErrorFrame)
    assert frame.known_code is not None, note
    assert frame.known_code.http_status == response.status_code, note


def authed_post(http: httpx.Client, phone: Device, path: str, body: bytes) -> None:
    session = phone.session
    assert session is not None
    session.counter += 1
    counter = session.counter
    tag = request_tag(session.request_key, path=path, session_id=session.session_id,
                      counter=counter, body=body)
    response = post(http, path, encode(AuthedRequest(session.session_id, counter, body, tag)))
    assert_tagged_answer(response, phone, path, counter, AUTHED_ROUTES[path][1],
                         f"{response.status_code} for {path} <- inner {body.hex()}")


def peak_rss(server: ServerProcess) -> int | None:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def assert_healthy(server: ServerProcess, http: httpx.Client, phone: Device) -> None:
    """Alive and ready; a new phone enrols, and a message the fuzzed phone sends to it
    arrives; no traceback was logged."""
    assert server.alive()
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 200
    number = f"+{next(_phones)}"
    newcomer = Device.enrol(server.url, number, server.invite(number))
    conv, create = phone.create({newcomer.user_id: Role.MEMBER})
    pushed = phone.push(conv, create, phone.encrypted(conv, "still here"))
    assert len(pushed.acks) == 2
    assert set(pushed.acks) <= set(newcomer.drain())
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
    rss = peak_rss(server)
    assert rss is None or rss < MAX_SERVER_RSS_BYTES, f"server peak RSS {rss} bytes"


# ---------------------------------------------------------------- open routes


def test_open_routes_answer_hostile_bodies_with_4xx(server: ServerProcess, http: httpx.Client,
                                                    phone: Device) -> None:
    routes = sorted(OPEN_ROUTES)

    @fuzz_settings()
    @given(st.data())
    def run(data: st.DataObject) -> None:
        path = data.draw(st.sampled_from(routes), label="path")
        body_type, answer_type = OPEN_ROUTES[path]
        body = data.draw(hs.hostile_bodies(hs.vectors_of(body_type.__name__)), label="body")
        response = post(http, path, body)
        assert_plain_answer(response, answer_type, f"{response.status_code} for {path} <- "
                                                   f"{body.hex()}")

    run()
    assert_healthy(server, http, phone)


# ---------------------------------------------------------------- authenticated routes


def test_authenticated_routes_refuse_hostile_envelopes_before_authenticating(
        server: ServerProcess, http: httpx.Client, phone: Device) -> None:
    routes = sorted(AUTHED_ROUTES)
    seeds = hs.vectors_of("AuthedRequest")

    @fuzz_settings()
    @given(st.sampled_from(routes), hs.hostile_bodies(seeds))
    def run(path: str, body: bytes) -> None:
        response = post(http, path, body)
        note = f"{response.status_code} for {path} <- {body.hex()}"
        assert 400 <= response.status_code < 500, note
        frame = decode(response.content, ErrorFrame)  # plain: nobody was authenticated
        assert frame.known_code is not None and \
            frame.known_code.http_status == response.status_code, note

    run()
    assert_healthy(server, http, phone)


def test_hostile_bodies_inside_authenticated_envelopes_get_tagged_4xx(
        server: ServerProcess, http: httpx.Client, phone: Device) -> None:
    routes = sorted(AUTHED_ROUTES)

    @fuzz_settings()
    @given(st.data())
    def run(data: st.DataObject) -> None:
        path = data.draw(st.sampled_from(routes), label="path")
        body_type = AUTHED_ROUTES[path][0]
        body = data.draw(hs.hostile_bodies(hs.vectors_of(body_type.__name__)), label="body")
        authed_post(http, phone, path, body)

    run()
    assert_healthy(server, http, phone)


def test_wrong_values_inside_authenticated_envelopes_get_tagged_answers(
        server: ServerProcess, http: httpx.Client, phone: Device) -> None:
    """Deterministic CBOR with a wrong value in one field: past the codec, into the
    schemas and the sync service (cursors, budgets, ids at their extremes)."""
    routes = sorted(AUTHED_ROUTES)

    @fuzz_settings()
    @given(st.data())
    def run(data: st.DataObject) -> None:
        path = data.draw(st.sampled_from(routes), label="path")
        seeds = hs.vectors_of(AUTHED_ROUTES[path][0].__name__)
        body = data.draw(hs.spliced(seeds, replacement=hs.well_formed_leaves, keys=False),
                         label="body")
        authed_post(http, phone, path, body)

    run()
    assert_healthy(server, http, phone)


# ---------------------------------------------------------------- largest bodies, paths


def test_the_largest_hostile_bodies_on_every_route(server: ServerProcess, http: httpx.Client,
                                                   phone: Device) -> None:
    """Bodies at the size limit that make the decoder build the most objects."""
    count = (MAX_BODY_BYTES - 64) // 3
    bombs = {  # body: the code it is refused with, on any route
        hs.head(hs.ARRAY, count) + b"\xa1\x00\xa0" * count: ErrorCode.BAD_FRAME,
        b"\x81" * (MAX_BODY_BYTES - 1) + b"\x00": ErrorCode.LIMIT_EXCEEDED,
        b"\xbb" + (2**64 - 1).to_bytes(8, "big") + bytes(MAX_BODY_BYTES - 9): ErrorCode.MALFORMED,
    }
    for body, code in bombs.items():
        assert len(body) <= MAX_BODY_BYTES
        for path in (*OPEN_ROUTES, *AUTHED_ROUTES):
            response = post(http, path, body)
            assert response.status_code == 400
            assert decode(response.content, ErrorFrame).code == code
        for path in AUTHED_ROUTES:
            inner = body[: MAX_BODY_BYTES - 64]  # room for the envelope around it
            authed_post(http, phone, path, inner)
    assert_healthy(server, http, phone)


REAL_PATHS = {"/healthz", "/readyz", "/metrics", *OPEN_ROUTES, *AUTHED_ROUTES}


def test_hostile_paths_and_methods(server: ServerProcess, http: httpx.Client,
                                   phone: Device) -> None:
    segments = st.one_of(
        st.sampled_from(("v1", "v2", "v0", "v99999999999999999999", "V1", "sync", "..", "%00",
                         "%ff%fe", "healthz", "", "v1%2fsync", "\u00e9")),
        st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                       exclude_characters="?#/"), max_size=12),
    )

    @fuzz_settings()
    @given(st.lists(segments, min_size=1, max_size=4),
           st.sampled_from(("GET", "POST", "PUT", "DELETE", "PATCH")),
           hs.hostile_bodies())
    def run(parts: list[str], method: str, body: bytes) -> None:
        path = "/x/" + "/".join(parts) if parts[0] == "" else "/" + "/".join(parts)
        if path in REAL_PATHS:
            return  # fuzzed above
        response = http.request(method, path, content=body if method != "GET" else None)
        assert 400 <= response.status_code < 500, f"{response.status_code} for {method} {path}"

    run()
    assert_healthy(server, http, phone)
