"""Slow and oversize clients are refused within their deadlines while a normal
phone keeps its latency.

Six tricklers send a request one byte at a time, two clients declare bodies
over the limit and two send one without declaring it. Meanwhile a normal
device syncs every 50 ms; every one of its syncs must succeed, and quickly.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from pathlib import Path

from tests.support.device import Device
from tests.support.report import record
from tests.support.server import ServerProcess

DEADLINE = 2.0
TRICKLERS = 6


def trickle(port: int, cut_after: list[float]) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(b"POST /v1/sync HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n")
            while time.monotonic() - started < DEADLINE + 8:
                sock.sendall(b"X")
                time.sleep(0.1)
            sock.settimeout(3)
            data = sock.recv(200)  # the server must have answered or closed by now
            assert data == b"" or data.startswith(b"HTTP/1.1 408"), data
        except OSError:
            pass
    cut_after.append(time.monotonic() - started)


def oversize(port: int, declared: bool, answers: list[tuple[bytes, float]]) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = b"POST /v1/sync HTTP/1.1\r\nHost: x\r\n"
        if declared:
            sock.sendall(head + b"Content-Length: 50000000\r\n\r\n")
        else:
            sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
            try:
                for _ in range(200):  # 200 chunks of 64 KiB, well over the limit
                    sock.sendall(b"10000\r\n" + bytes(65536) + b"\r\n")
            except OSError:
                pass  # cut off once refused
        sock.settimeout(10)
        try:
            answer = sock.recv(100)
        except OSError:
            answer = b""
    answers.append((answer, time.monotonic() - started))


def test_slow_and_oversize_clients_do_not_slow_a_normal_phone(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "slow.db",
                           env={"SYNCD_READ_DEADLINE_SECONDS": str(DEADLINE)}).start()
    try:
        phone = "+254766000001"
        device = Device.enrol(server.url, phone, server.invite(phone))
        baseline = []
        for _ in range(20):
            started = time.perf_counter()
            device.sync()
            baseline.append(time.perf_counter() - started)

        cut_after: list[float] = []
        answers: list[tuple[bytes, float]] = []
        attackers = [threading.Thread(target=trickle, args=(server.port, cut_after))
                     for _ in range(TRICKLERS)]
        attackers += [threading.Thread(target=oversize, args=(server.port, declared, answers))
                      for declared in (True, True, False, False)]
        for thread in attackers:
            thread.start()
        during: list[float] = []
        while any(thread.is_alive() for thread in attackers) and len(during) < 1000:
            started = time.perf_counter()
            device.sync()  # raises on any failure
            during.append(time.perf_counter() - started)
            time.sleep(0.05)
        for thread in attackers:
            thread.join(timeout=30)

        assert len(cut_after) == TRICKLERS
        assert max(cut_after) < DEADLINE + 3  # cut at the read deadline, not at the end
        assert len(answers) == 4
        assert all(answer.startswith(b"HTTP/1.1 413") for answer, _ in answers), answers
        assert max(seconds for _, seconds in answers) < 5
        assert statistics.median(during) < max(10 * statistics.median(baseline), 0.25)
    finally:
        server.stop()
    during.sort()
    record("slow_clients", tricklers=TRICKLERS, oversize=4, read_deadline_s=DEADLINE,
           normal_syncs=len(during), normal_failures=0,
           normal_p50_ms=round(1000 * statistics.median(during), 2),
           normal_p99_ms=round(1000 * during[int(0.99 * (len(during) - 1))], 2),
           baseline_p50_ms=round(1000 * statistics.median(baseline), 2),
           oversize_refused_413=len(answers))
