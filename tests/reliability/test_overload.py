"""Overload at several times capacity: fast 503 or 429 with Retry-After, never a 500,
no acked op lost, and normal latency once the load is gone.

The server takes ``SYNCD_MAX_INFLIGHT=4`` requests at once; 32 devices push
as fast as they can, eight times that. Per-device limits are set so that the
busiest devices also meet 429.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import threading
import time
from pathlib import Path

import httpx

from clients.reference.connection import ServerError
from protocol import ErrorCode, Role
from tests.support.device import Device
from tests.support.report import record
from tests.support.server import ServerProcess

CLIENTS = 32
INFLIGHT = 4
SECONDS = float(os.environ.get("SYNCD_OVERLOAD_SECONDS", "4"))


def median_sync_seconds(device: Device, rounds: int = 30) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        device.sync()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def test_overload_is_shed_fast_and_loses_nothing(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "overload.db", env={
        "SYNCD_MAX_INFLIGHT": str(INFLIGHT), "SYNCD_RATE_PER_SECOND": "40",
        "SYNCD_RATE_BURST": "40"}).start()
    try:
        devices = [Device.enrol(server.url, f"+2547550{n:05d}", server.invite(f"+2547550{n:05d}"))
                   for n in range(CLIENTS + 1)]
        probe, pushers = devices[0], devices[1:]
        conv, create = probe.create({d.user_id: Role.MEMBER for d in pushers})
        probe.push(conv, create)
        before = median_sync_seconds(probe)

        lock = threading.Lock()
        statuses: dict[int, int] = {}
        refusal_seconds: list[float] = []
        success_seconds: list[float] = []
        missing_retry_after = 0
        acked: dict[tuple[int, int], int] = {}
        stop = time.monotonic() + SECONDS

        errors: list[BaseException] = []

        def hammer(device: Device) -> None:
            try:
                push_until_stop(device)
            except BaseException as exc:  # reported by the test, not lost in the thread
                errors.append(exc)

        def push_until_stop(device: Device) -> None:
            nonlocal missing_retry_after
            while time.monotonic() < stop:
                op = device.chat(conv, os.urandom(40))
                started = time.perf_counter()
                try:
                    response = device.push(conv, op)
                except ServerError as error:
                    elapsed = time.perf_counter() - started
                    with lock:
                        statuses[error.status] = statuses.get(error.status, 0) + 1
                        refusal_seconds.append(elapsed)
                        if error.frame.retry_after is None:
                            missing_retry_after += 1
                    assert error.code in (ErrorCode.UNAVAILABLE, ErrorCode.RATE_LIMITED)
                    continue
                elapsed = time.perf_counter() - started
                with lock:
                    statuses[200] = statuses.get(200, 0) + 1
                    success_seconds.append(elapsed)
                    acked[(device.device_id, op.op_id)] = response.acks[0]

        threads = [threading.Thread(target=hammer, args=(d,)) for d in pushers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=SECONDS + 60)

        assert not errors, errors
        assert set(statuses) <= {200, 429, 503}, statuses
        assert statuses.get(503, 0) > 0, f"the load never exceeded capacity: {statuses}"
        assert statuses.get(200, 0) > 0
        assert missing_retry_after == 0
        # Refusals are answered without queueing: faster than the typical accepted push.
        assert statistics.median(refusal_seconds) < statistics.median(success_seconds)
        after = median_sync_seconds(probe)
        assert after < max(10 * before, 0.25), (before, after)
        assert httpx.get(server.url + "/healthz").status_code == 200
        with sqlite3.connect(server.db) as connection:
            kept = {(d, o): s for d, o, s in connection.execute(
                "SELECT device_id, op_id, seq FROM ops")}
        lost = [key for key, seq in acked.items() if kept.get(key) != seq]
        assert not lost
    finally:
        server.stop()
    assert "Traceback" not in server.log.read_text()
    refusals = sorted(refusal_seconds)
    record("overload", clients=CLIENTS, max_inflight=INFLIGHT, seconds=SECONDS,
           statuses={str(k): v for k, v in sorted(statuses.items())}, ops_acked=len(acked),
           ops_lost=len(lost), status_500=statuses.get(500, 0),
           refusal_p50_ms=round(1000 * statistics.median(refusals), 1),
           refusal_p99_ms=round(1000 * refusals[int(0.99 * (len(refusals) - 1))], 1),
           accepted_p50_ms=round(1000 * statistics.median(success_seconds), 1),
           sync_before_ms=round(1000 * before, 2), sync_after_ms=round(1000 * after, 2))
