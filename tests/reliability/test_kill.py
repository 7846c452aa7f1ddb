"""SIGKILL the server at random moments under concurrent pushes and pulls.

An ack means durable: after every kill, every acked op is in the database
exactly once with the seq its ack carried, every push is there whole or not
at all, and SQLite's integrity check passes. A member that only pulls, through
all the kills, receives every op once, in seq order, and at the end holds
exactly what was stored (its cursor never skipped an op).

CI kills 20 times; ``SYNCD_SOAK_KILLS`` raises it, ``SYNCD_SOAK_SEED`` varies
the moments.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from clients.reference.connection import ResponseForged, ServerError
from protocol import Role, SyncResponse
from tests.support.device import Device
from tests.support.report import record
from tests.support.server import ServerProcess

KILLS = int(os.environ.get("SYNCD_SOAK_KILLS", "20"))
SEED = int(os.environ.get("SYNCD_SOAK_SEED", "1"))
PUSHERS = 4
OPS_PER_PUSH = 3


class Worker(threading.Thread):
    """A device in a loop of requests that retries through kills like a phone would."""

    def __init__(self, device: Device, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.device, self.stop = device, stop
        self.lock = threading.Lock()
        self.retries = 0
        self.error: BaseException | None = None

    def attempt(self, call: Callable[[], SyncResponse]) -> SyncResponse | None:
        """One request; None when it must be retried (server gone, restarting or busy)."""
        try:
            return call()
        except (httpx.HTTPError, ResponseForged):
            pass
        except ServerError as error:
            if error.status == 401:  # the server lost the session: log in again
                with contextlib.suppress(httpx.HTTPError, ServerError):
                    self.device.login()
            elif error.status != 503:
                raise
        self.retries += 1
        time.sleep(0.02)
        return None

    def run(self) -> None:
        try:
            self.loop()
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def loop(self) -> None:
        raise NotImplementedError


class Pusher(Worker):
    def __init__(self, device: Device, conv: bytes, stop: threading.Event) -> None:
        super().__init__(device, stop)
        self.conv = conv
        self.acked: dict[int, int] = {}
        self.groups: list[tuple[int, ...]] = []

    def loop(self) -> None:
        while not self.stop.is_set():
            ops = tuple(self.device.chat(self.conv, os.urandom(40)) for _ in range(OPS_PER_PUSH))
            with self.lock:
                self.groups.append(tuple(op.op_id for op in ops))
            while not self.stop.is_set():
                response = self.attempt(functools.partial(self.device.push, self.conv, *ops))
                if response is not None:
                    with self.lock:
                        self.acked.update(zip((op.op_id for op in ops), response.acks,
                                              strict=True))
                    break


class Puller(Worker):
    """A member that only pulls: every op it receives is counted once and in order."""

    def __init__(self, device: Device, stop: threading.Event) -> None:
        super().__init__(device, stop)
        self.received: dict[tuple[int, int], int] = {}  # (device, op id) -> seq
        self.duplicates = 0
        self.out_of_order = 0
        self.last_seq = 0

    def take(self, response: SyncResponse) -> None:
        with self.lock:
            for block in response.blocks:
                for pulled in block.ops:
                    key = (pulled.from_device, pulled.op.op_id)
                    if key in self.received:
                        self.duplicates += 1
                    if pulled.seq <= self.last_seq:
                        self.out_of_order += 1
                    self.received[key] = pulled.seq
                    self.last_seq = pulled.seq

    def loop(self) -> None:
        while not self.stop.is_set():
            response = self.attempt(self.device.sync)
            if response is not None:
                self.take(response)
            time.sleep(0.01)

    def drain(self) -> None:
        for _ in range(1000):
            response = self.attempt(self.device.sync)
            if response is None:
                continue
            self.take(response)
            if not response.more:
                return
        raise AssertionError("the puller never caught up")


def check_database(db: str, pushers: list[Pusher]) -> int:
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows, distinct = connection.execute(
            "SELECT count(*), count(DISTINCT device_id || ':' || op_id) FROM ops").fetchone()
        assert rows == distinct, "an op is stored twice"
        total = 0
        for pusher in pushers:
            stored = dict(connection.execute("SELECT op_id, seq FROM ops WHERE device_id = ?",
                                             (pusher.device.device_id,)).fetchall())
            with pusher.lock:
                acked, groups = dict(pusher.acked), list(pusher.groups)
            for op_id, seq in acked.items():
                assert stored.get(op_id) == seq, f"seed={SEED}: acked op {op_id} lost or moved"
            for group in groups:
                present = sum(op_id in stored for op_id in group)
                assert present in (0, len(group)), f"seed={SEED}: a push is half there"
            total += len(acked)
    return total


def test_sigkill_under_load_loses_no_acked_op(tmp_path_factory: pytest.TempPathFactory) -> None:
    db = tmp_path_factory.mktemp("kill") / "syncd.db"
    server = ServerProcess(db).start()
    phones = [f"+25472200000{n}" for n in range(PUSHERS + 1)]
    devices = [Device.enrol(server.url, phone, server.invite(phone)) for phone in phones]
    owner, reader = devices[0], devices[-1]
    conv, create = owner.create({d.user_id: Role.MEMBER for d in devices[1:]})
    owner.push(conv, create)
    stop = threading.Event()
    pushers = [Pusher(device, conv, stop) for device in devices[:PUSHERS]]
    puller = Puller(reader, stop)
    workers: list[Worker] = [*pushers, puller]
    for worker in workers:
        worker.start()
    rng = random.Random(SEED)
    acked_total = kills = 0
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.1, 0.5))
            server.kill()
            kills += 1
            acked_total = check_database(str(db), pushers)
            server.start()
        time.sleep(0.3)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    try:
        for worker in workers:
            assert worker.error is None, f"seed={SEED}: {worker.error!r}"
        final = check_database(str(db), pushers)
        assert final >= acked_total > 0
        puller.drain()
        with sqlite3.connect(db) as connection:
            stored = {(device, op_id): seq for device, op_id, seq in connection.execute(
                "SELECT device_id, op_id, seq FROM ops WHERE device_id != ? AND op_type != 1",
                (reader.device_id,))}
        delivered = dict(puller.received)
        missing = stored.keys() - delivered.keys()
        assert not missing, f"seed={SEED}: the puller's cursor skipped {len(missing)} ops"
        assert delivered == {k: v for k, v in stored.items() if k in delivered}
        assert puller.duplicates == 0 and puller.out_of_order == 0, f"seed={SEED}"
    finally:
        server.stop()
    with sqlite3.connect(db) as connection:
        rows, distinct = connection.execute(
            "SELECT count(*), count(DISTINCT device_id || ':' || op_id) FROM ops").fetchone()
        kept = {(device, op_id): seq for device, op_id, seq in connection.execute(
            "SELECT device_id, op_id, seq FROM ops")}
    lost = sum(kept.get((p.device.device_id, op_id)) != seq
               for p in pushers for op_id, seq in p.acked.items())
    record("sigkill", kills=kills, seed=SEED,
           ops_sent=sum(len(group) for p in pushers for group in p.groups),
           ops_acked=final, ops_lost=lost, ops_duplicated=rows - distinct + puller.duplicates,
           delivered=len(delivered), retries=sum(w.retries for w in workers))
