"""The link emulator itself: it counts, delays, throttles and cuts."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from tests.support.linkemu import PROFILES, LinkEmulator, Profile, ThreadedLink
from tests.support.server import ServerProcess


def test_counts_bytes_both_ways_headers_included(server: ServerProcess) -> None:
    with ThreadedLink(LinkEmulator("127.0.0.1", server.port)) as link:
        response = httpx.get(link.url + "/healthz", timeout=10)
        assert response.status_code == 200
        up, down = link.counters.snapshot()
    assert up > len("GET /healthz HTTP/1.1\r\n")
    assert down >= len(response.content) + len("HTTP/1.1 200 OK\r\n")


def test_bandwidth_and_latency_are_at_least_the_profile(server: ServerProcess) -> None:
    profile = Profile("slow", down_bps=40_000, up_bps=20_000, rtt=0.4)
    body = bytes(5000)  # 2 s up at 20 kbit/s
    with ThreadedLink(LinkEmulator("127.0.0.1", server.port, profile)) as link:
        started = time.monotonic()
        httpx.post(link.url + "/v1/sync", content=body, timeout=30)
        elapsed = time.monotonic() - started
    # Lower bounds only: a busy machine can make it slower, never faster.
    assert elapsed >= len(body) * 8 / profile.up_bps + profile.rtt * 0.9


@pytest.mark.parametrize("direction", ["up", "down"])
def test_cuts_a_connection_after_a_number_of_bytes(server: ServerProcess, direction: str) -> None:
    emulator = LinkEmulator("127.0.0.1", server.port, plan=lambda rng, i: (direction, 30))
    with ThreadedLink(emulator) as link:
        with pytest.raises(httpx.HTTPError):
            httpx.get(link.url + "/healthz", timeout=10)
        assert link.counters.cuts == 1
        if direction == "up":
            assert link.counters.up == 30
        else:
            assert link.counters.down == 30


def test_refuses_to_forward_anywhere_but_loopback() -> None:
    with pytest.raises(ValueError):
        LinkEmulator("10.0.0.1", 80)
    assert PROFILES["gprs"].rtt == 0.8 and PROFILES["edge"].down_bps == 240_000


def test_latency_is_paid_once_per_burst_not_once_per_chunk() -> None:
    """32 KiB down in 1 KiB chunks at a high rate and a 400 ms round trip: about one
    one-way delay, not 32 of them (a stop-and-wait link would take over 6 s)."""
    payload = bytes(32 * 1024)

    def serve(listener: socket.socket) -> None:
        connection, _ = listener.accept()
        with connection:
            connection.sendall(payload)

    profile = Profile("long-fat", down_bps=100_000_000, up_bps=100_000_000, rtt=0.4)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        server = threading.Thread(target=serve, args=(listener,), daemon=True)
        server.start()
        with ThreadedLink(LinkEmulator("127.0.0.1", listener.getsockname()[1], profile)) as link:
            started = time.monotonic()
            received = b""
            with socket.create_connection(("127.0.0.1", link.emulator.port), timeout=10) as sock:
                while chunk := sock.recv(65536):
                    received += chunk
            elapsed = time.monotonic() - started
        server.join(timeout=10)
    assert received == payload
    assert profile.one_way() * 0.9 <= elapsed < profile.rtt * 4
