"""Long-poll: a sync with ``wait`` returns as soon as an op the device may see is
committed, and not for ops it may not see; waiting costs no database work."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from clients.reference.connection import ServerError
from protocol import ErrorCode, Role, SyncResponse
from syncd import admin
from syncd.config import Settings
from syncd.storage import ReadTx
from syncd.storage.sqlite import SQLiteStorage
from tests.support.device import Device
from tests.support.inprocess import invite, serve_in_thread
from tests.support.server import ServerProcess

from .conftest import next_phone


def wait_in_thread(device: Device, wait: int) -> tuple[threading.Thread, dict[str, object]]:
    result: dict[str, object] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            result["response"] = device.sync(wait=wait)
        except Exception as exc:
            result["error"] = exc
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def held(url: str, count: int = 1, timeout: float = 20.0) -> None:
    """Return once the server holds ``count`` waiting syncs (its metrics say so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in httpx.get(url + "/metrics").text.splitlines():
            if line.startswith("syncd_waiting_syncs ") and float(line.split()[1]) >= count:
                return
        time.sleep(0.02)
    raise AssertionError(f"the server never held {count} waiting syncs")


def pair(enrol: Callable[[], Device]) -> tuple[Device, Device, bytes]:
    amina, brian = enrol(), enrol()
    conv, create = amina.create({brian.user_id: Role.MEMBER})
    amina.push(conv, create)
    brian.drain()
    return amina, brian, conv


def test_a_waiting_sync_returns_when_a_message_arrives(enrol: Callable[[], Device],
                                                       server: ServerProcess) -> None:
    amina, brian, conv = pair(enrol)
    thread, result = wait_in_thread(brian, wait=20)
    held(server.url)
    op = amina.chat(conv, os.urandom(40))
    pushed = time.monotonic()
    amina.push(conv, op)
    thread.join(timeout=30)
    woke = time.monotonic() - pushed
    response = result["response"]
    assert isinstance(response, SyncResponse)
    assert [(p.from_device, p.op.op_id) for b in response.blocks for p in b.ops] == [
        (amina.device_id, op.op_id)]
    assert woke < 5, "woke long after the push (the wait was 20 s)"


def test_a_wait_ends_empty_at_its_deadline(enrol: Callable[[], Device]) -> None:
    _, brian, _ = pair(enrol)
    started = time.monotonic()
    response = brian.sync(wait=1)
    assert response.op_count == 0 and not response.more
    assert time.monotonic() - started >= 0.9


def test_ops_the_device_may_not_see_do_not_end_its_wait(enrol: Callable[[], Device],
                                                         server: ServerProcess) -> None:
    amina, brian, _ = pair(enrol)
    chris = enrol()
    other, create = amina.create({chris.user_id: Role.MEMBER})
    amina.push(other, create)
    thread, result = wait_in_thread(brian, wait=2)
    held(server.url)
    amina.push(other, amina.chat(other, os.urandom(40)))  # not brian's conversation
    thread.join(timeout=30)
    response = result["response"]
    assert isinstance(response, SyncResponse) and response.op_count == 0
    assert float(result["seconds"]) >= 1.9  # type: ignore[arg-type]


def test_being_added_to_a_conversation_wakes_a_waiter(enrol: Callable[[], Device],
                                                       server: ServerProcess) -> None:
    amina, brian, _ = pair(enrol)
    other, create = amina.create({})
    amina.push(other, create)
    thread, result = wait_in_thread(brian, wait=20)
    held(server.url)
    amina.push(other, amina.add(other, brian.user_id))
    thread.join(timeout=30)
    response = result["response"]
    assert isinstance(response, SyncResponse)
    assert other in [block.conv for block in response.blocks]
    assert float(result["seconds"]) < 10  # type: ignore[arg-type]


def test_waiting_syncs_do_not_use_up_the_in_flight_limit(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "waits.db", env={"SYNCD_MAX_INFLIGHT": "2"}).start()
    try:
        devices = [Device.enrol(server.url, p, server.invite(p))
                   for p in [next_phone() for _ in range(6)]]
        sender, waiters = devices[0], devices[1:]
        conv, create = sender.create({d.user_id: Role.MEMBER for d in waiters})
        sender.push(conv, create)
        for device in waiters:
            device.drain()
        threads = []
        for n, device in enumerate(waiters):  # one after the other, each held before the next
            threads.append(wait_in_thread(device, wait=20))
            held(server.url, n + 1)
        # Five waits are now held, with a limit of two in flight.
        sender.push(conv, sender.chat(conv, b"wake up"))  # accepted, not shed
        for thread, result in threads:
            thread.join(timeout=30)
            response = result.get("response")
            assert isinstance(response, SyncResponse) and response.op_count == 1, result
    finally:
        server.stop()


def test_shutdown_answers_waiting_syncs_at_once(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "shutdown.db").start()
    phone = next_phone()
    device = Device.enrol(server.url, phone, server.invite(phone))
    thread, result = wait_in_thread(device, wait=25)
    held(server.url)
    assert server.process is not None
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=20) in (0, -signal.SIGTERM)
    thread.join(timeout=20)
    assert time.monotonic() - started < 10  # not the 25 s of the wait
    assert isinstance(result.get("response"), SyncResponse), result


class CountingSnapshots(SQLiteStorage):
    """SQLite that counts read transactions."""

    snapshots = 0

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[ReadTx]:
        self.snapshots += 1
        async with super().snapshot() as snap:
            yield snap


def test_a_wait_reads_nothing_while_unrelated_ops_commit(tmp_path: Path) -> None:
    storage = CountingSnapshots(tmp_path / "count.db")
    settings = Settings(db=storage.path, rate_per_second=1000, rate_burst=1000)
    with serve_in_thread(settings, storage) as url:
        amina, brian, chris = (Device.enrol(url, phone, invite(storage.path, phone))
                               for phone in (next_phone(), next_phone(), next_phone()))
        other, create = amina.create({chris.user_id: Role.MEMBER})
        amina.push(other, create)
        brian.drain()
        before = storage.snapshots
        thread, result = wait_in_thread(brian, wait=3)
        held(url)
        for _ in range(20):
            amina.push(other, amina.chat(other, os.urandom(40)))
        thread.join(timeout=30)
        response = result["response"]
        assert isinstance(response, SyncResponse) and response.op_count == 0
        # Brian's wait read twice (its first pull, then its conversations) and once more
        # at the end of its wait; each of amina's 20 syncs read once for its own pull.
        # Nothing else: unrelated commits cost the waiter nothing, and there is no polling.
        assert storage.snapshots - before == 2 + 20 + 1


def test_a_device_revoked_while_it_waits_gets_nothing_new(enrol: Callable[[], Device],
                                                           server: ServerProcess) -> None:
    amina, brian, conv = pair(enrol)
    thread, result = wait_in_thread(brian, wait=20)
    held(server.url)
    assert asyncio.run(admin.revoke(str(server.db), brian.device_id))
    amina.push(conv, amina.chat(conv, b"after the revocation"))
    thread.join(timeout=30)
    error = result.get("error")
    assert isinstance(error, ServerError), result
    assert error.code is ErrorCode.DEVICE_REVOKED and error.authenticated


def test_a_newer_wait_of_the_same_session_ends_the_older(enrol: Callable[[], Device],
                                                         server: ServerProcess) -> None:
    _, brian, _ = pair(enrol)
    first, first_result = wait_in_thread(brian, wait=20)
    held(server.url)
    second, second_result = wait_in_thread(brian, wait=1)
    first.join(timeout=10)
    assert not first.is_alive(), "the older wait was still held"
    assert isinstance(first_result.get("response"), SyncResponse), first_result
    assert float(first_result["seconds"]) < 10  # type: ignore[arg-type]
    second.join(timeout=10)
    assert isinstance(second_result.get("response"), SyncResponse), second_result
