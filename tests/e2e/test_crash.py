"""SIGKILL the server at random moments under concurrent pushes: an ack means durable.

After every kill: every acked op is in the database exactly once with the seq
its ack carried, every push is there whole or not at all, and SQLite's
integrity check passes. CI kills 12 times; SYNCD_SOAK_KILLS raises it.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time

import httpx
import pytest

from clients.reference.connection import ResponseForged, ServerError
from protocol import Role
from tests.support.device import Device
from tests.support.server import ServerProcess

KILLS = int(os.environ.get("SYNCD_SOAK_KILLS", "12"))
DEVICES = 4
OPS_PER_PUSH = 3


class Pusher(threading.Thread):
    def __init__(self, device: Device, conv: bytes, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.device, self.conv, self.stop = device, conv, stop
        self.acked: dict[int, int] = {}
        self.groups: list[tuple[int, ...]] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop.is_set():
            ops = tuple(self.device.chat(self.conv, os.urandom(40)) for _ in range(OPS_PER_PUSH))
            with self.lock:
                self.groups.append(tuple(op.op_id for op in ops))
            while not self.stop.is_set():
                try:
                    response = self.device.push(self.conv, *ops)
                except (httpx.HTTPError, ResponseForged):
                    time.sleep(0.02)
                    continue
                except ServerError as error:
                    if error.status == 401:  # the server lost the session: log in again
                        self._login()
                        continue
                    if error.status == 503:
                        time.sleep(0.05)
                        continue
                    raise
                with self.lock:
                    self.acked.update(zip((op.op_id for op in ops), response.acks, strict=True))
                break

    def _login(self) -> None:
        try:
            self.device.login()
        except (httpx.HTTPError, ServerError):
            time.sleep(0.05)


def check_database(db: str, pushers: list[Pusher]) -> int:
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        total = 0
        for pusher in pushers:
            stored = dict(connection.execute("SELECT op_id, seq FROM ops WHERE device_id = ?",
                                             (pusher.device.device_id,)).fetchall())
            with pusher.lock:
                acked, groups = dict(pusher.acked), list(pusher.groups)
            for op_id, seq in acked.items():
                assert stored.get(op_id) == seq, "an acked op is missing or moved"
            for group in groups:
                present = sum(op_id in stored for op_id in group)
                assert present in (0, len(group)), "a push is half there"
            total += len(acked)
    return total


@pytest.mark.slow
def test_sigkill_under_load_loses_no_acked_op(tmp_path_factory: pytest.TempPathFactory) -> None:
    db = tmp_path_factory.mktemp("crash") / "syncd.db"
    server = ServerProcess(db).start()
    phones = [f"+25472200000{n}" for n in range(DEVICES)]
    devices = [Device.enrol(server.url, phone, server.invite(phone)) for phone in phones]
    owner = devices[0]
    conv, create = owner.create({d.user_id: Role.MEMBER for d in devices[1:]})
    owner.push(conv, create)
    stop = threading.Event()
    pushers = [Pusher(device, conv, stop) for device in devices]
    for pusher in pushers:
        pusher.start()
    rng = random.Random(int(os.environ.get("SYNCD_SOAK_SEED", "1")))
    acked_total = 0
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.1, 0.6))
            server.kill()
            acked_total = check_database(str(db), pushers)
            server.start()
        time.sleep(0.3)
    finally:
        stop.set()
        for pusher in pushers:
            pusher.join(timeout=30)
        if server.alive():
            server.stop()
    final = check_database(str(db), pushers)
    assert final >= acked_total > 0
