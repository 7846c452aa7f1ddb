"""Hostile input over real HTTP: only 4xx, and the server stays up and ready."""

from __future__ import annotations

import random
import socket
import time

import httpx
import pytest

from tests.support.server import ServerProcess

ENDPOINTS = ["/v1/register", "/v1/challenge", "/v1/session", "/v1/sync", "/v1/directory"]


def post(server: ServerProcess, path: str, body: bytes) -> int:
    return httpx.post(server.url + path, content=body, timeout=30,
                      headers={"content-type": "application/cbor"}).status_code


def assert_ready(server: ServerProcess) -> None:
    assert server.alive()
    assert httpx.get(server.url + "/readyz", timeout=10).status_code == 200


def test_random_bytes_get_4xx(server: ServerProcess) -> None:
    rng = random.Random(11)
    for _ in range(150):
        body = rng.randbytes(rng.randint(0, 300))
        assert 400 <= post(server, rng.choice(ENDPOINTS), body) < 500
    assert_ready(server)


@pytest.mark.parametrize("body", [
    b"\x81" * 100_000,  # deep nesting
    b"\x5b" + (2**32).to_bytes(8, "big") + b"\x00",  # a declared length of 2^32
    b"\x9b" + (2**32).to_bytes(8, "big") + b"\x00",
    b"\xbb" + (2**32).to_bytes(8, "big") + b"\x00",
    b"\x85\x01\x19\x10\x92\x11\x5a\xff\xff\xff\xff",  # a body of 4 GiB, announced
])
def test_structural_bombs_get_4xx(server: ServerProcess, body: bytes) -> None:
    for path in ENDPOINTS:
        assert 400 <= post(server, path, body) < 500
    assert_ready(server)


def test_ten_mebibyte_body_is_413_without_being_read(server: ServerProcess) -> None:
    for path in ENDPOINTS:
        assert post(server, path, bytes(10 * 1024 * 1024)) == 413
    # Declared but never sent: refused on the header alone.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/sync HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 413")
    assert_ready(server)


def test_a_trickling_client_is_cut_and_others_are_served(tmp_path_factory:
                                                          pytest.TempPathFactory) -> None:
    server = ServerProcess(tmp_path_factory.mktemp("slow") / "slow.db",
                           env={"SYNCD_READ_DEADLINE_SECONDS": "1.5"}).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/sync HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            closed = False
            while time.monotonic() - started < 8:
                try:
                    sock.sendall(b"X")  # one byte of header at a time
                    time.sleep(0.2)
                    assert_ready(server)  # everyone else is served meanwhile
                except OSError:
                    closed = True
                    break
            if not closed:
                sock.settimeout(2)
                closed = sock.recv(10) == b""
            assert closed, "the trickling connection was never cut"
        assert_ready(server)
    finally:
        server.stop()
