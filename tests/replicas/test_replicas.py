"""Two syncd replicas on one PostgreSQL database.

* Devices spread over both, behind the GPRS link emulator: every message
  reaches every member exactly once, whichever replica took it.
* A long-poll waiting on replica A returns promptly when a message is pushed
  to replica B (PostgreSQL LISTEN/NOTIFY).
* SIGKILL one replica under load: devices fail over to the other, as behind a
  load balancer; nothing acked is lost, nothing is stored or delivered twice,
  and a device pulling all along misses nothing (no cursor skipped an op).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from clients.reference.client import Client
from clients.reference.connection import Connection
from protocol import (
    AuthedRequest,
    AuthedResponse,
    ErrorCode,
    ErrorFrame,
    Role,
    SyncRequest,
    SyncResponse,
    decode,
    encode,
    request_tag,
)
from tests.reliability.test_kill import Puller, Pusher, Worker
from tests.support.device import Device
from tests.support.linkemu import PROFILES, LinkEmulator, ThreadedLink
from tests.support.report import record
from tests.support.server import ServerProcess
from tests.syncd.test_longpoll import held

MESSAGES = int(os.environ.get("SYNCD_REPLICA_MESSAGES", "4"))


@pytest.fixture
def replicas(postgres_url: str, tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}pool_size=4"  # as documented
    first = ServerProcess(tmp_path / "replica-a.db", database=url).start()
    second = ServerProcess(tmp_path / "replica-b.db", database=url).start()
    yield first, second
    for server in (first, second):
        if server.alive():
            server.stop()


def stored_ops(url: str) -> dict[tuple[int, int], int]:
    async def read() -> dict[tuple[int, int], int]:
        connection = await asyncpg.connect(url)
        try:
            rows = await connection.fetch("SELECT device_id, op_id, seq FROM ops")
        finally:
            await connection.close()
        return {(row[0], row[1]): row[2] for row in rows}
    return asyncio.run(read())


def test_devices_on_both_replicas_over_gprs_converge_exactly_once(
        replicas: tuple[ServerProcess, ServerProcess], tmp_path: Path) -> None:
    first, second = replicas
    phones = [f"+25478800000{n}" for n in range(4)]
    clients: list[Client] = []
    links: list[ThreadedLink] = []
    try:
        for n, phone in enumerate(phones):
            home, other = (first, second) if n % 2 == 0 else (second, first)
            link = ThreadedLink(LinkEmulator("127.0.0.1", home.port, PROFILES["gprs"], seed=n,
                                             fallback_ports=(other.port,)))
            links.append(link.__enter__())
            clients.append(Client.init(tmp_path / f"home-{n}", home.url, phone,
                                       first.invite(phone)))
            clients[-1].use_connection(Connection(link.url, timeout=30))
        conv = clients[0].create_group("Two replicas", phones[1:])
        for client in clients:
            client.sync(budget=8 * 1024, timeout=240)
        for n in range(MESSAGES):
            for client in clients:
                client.send(conv, f"{client.phone} says {n}")
        for _ in range(3):
            for client in clients:
                client.sync(budget=8 * 1024, timeout=240)
        views = [client.messages(conv) for client in clients]
    finally:
        for client in clients:
            client.close()
        for link in links:
            link.__exit__(None, None, None)
    assert all(view == views[0] for view in views)
    assert len(views[0]) == len(clients) * MESSAGES
    assert len({m["id"] for m in views[0]}) == len(views[0])
    assert not any(m["pending"] for m in views[0])
    assert sum(link.counters.connections for link in links) > 0


def test_a_long_poll_on_one_replica_wakes_for_a_push_to_the_other(
        replicas: tuple[ServerProcess, ServerProcess]) -> None:
    first, second = replicas
    waiter = Device.enrol(first.url, "+254788100001", first.invite("+254788100001"))
    sender = Device.enrol(second.url, "+254788100002", first.invite("+254788100002"))
    conv, create = sender.create({waiter.user_id: Role.MEMBER})
    sender.push(conv, create)
    waiter.drain()
    latencies = []
    for n in range(10):
        result: dict[str, object] = {}

        def wait(result: dict[str, object] = result) -> None:
            result["response"] = waiter.sync(wait=20)
            result["at"] = time.monotonic()

        thread = threading.Thread(target=wait)
        thread.start()
        held(first.url)  # the waiter is held on replica A: only a NOTIFY can wake it
        pushed = time.monotonic()
        sender.push(conv, sender.chat(conv, f"wake {n}".encode()))
        thread.join(timeout=30)
        response = result["response"]
        assert isinstance(response, SyncResponse) and response.op_count == 1
        latencies.append(float(result["at"]) - pushed)  # type: ignore[arg-type]
    assert max(latencies) < 5, latencies  # a wait of 20 s: it was the push that ended it
    record("replica_wakeup", wakeups=len(latencies),
           p50_ms=round(1000 * statistics.median(latencies), 1),
           max_ms=round(1000 * max(latencies), 1))


def test_killing_one_replica_under_load_loses_nothing_acked(
        replicas: tuple[ServerProcess, ServerProcess], postgres_url: str) -> None:
    first, second = replicas
    phones = [f"+25478820000{n}" for n in range(4)]
    links = [ThreadedLink(LinkEmulator("127.0.0.1", first.port,
                                       fallback_ports=(second.port,))).__enter__()
             for _ in phones[:3]]
    links.append(ThreadedLink(LinkEmulator("127.0.0.1", second.port,
                                           fallback_ports=(first.port,))).__enter__())
    stop = threading.Event()
    workers: list[Worker] = []
    try:
        devices = []
        for phone, link in zip(phones, links, strict=True):
            devices.append(Device.enrol(link.url, phone, first.invite(phone)))
        owner = devices[0]
        conv, create = owner.create({d.user_id: Role.MEMBER for d in devices[1:]})
        owner.push(conv, create)
        pushers = [Pusher(device, conv, stop) for device in devices[:3]]
        puller = Puller(devices[3], stop)
        workers = [*pushers, puller]
        for worker in workers:
            worker.start()
        time.sleep(1.5)
        first.kill()  # the replica most devices were using
        before_kill = [len(p.acked) for p in pushers]
        time.sleep(2.0)
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        for worker in workers:
            assert worker.error is None, repr(worker.error)
        puller.drain()
    finally:
        stop.set()
        for link in links:
            link.__exit__(None, None, None)
    stored = stored_ops(postgres_url)
    acked = {(p.device.device_id, op_id): seq for p in pushers for op_id, seq in p.acked.items()}
    # Every device went on through the surviving replica.
    assert all(len(p.acked) > n for p, n in zip(pushers, before_kill, strict=True))
    lost = [key for key, seq in acked.items() if stored.get(key) != seq]
    assert not lost, f"{len(lost)} acked ops lost"
    for pusher in pushers:
        for group in pusher.groups:
            present = sum((pusher.device.device_id, op_id) in stored for op_id in group)
            assert present in (0, len(group)), "a push is half there"
    others = {key for key in stored if key[0] != devices[3].device_id}
    assert others == set(puller.received), "the puller missed or invented ops"
    assert puller.duplicates == 0 and puller.out_of_order == 0
    record("replica_kill", ops_acked=len(acked), ops_lost=len(lost),
           delivered=len(puller.received), duplicates=puller.duplicates)




def test_a_request_replayed_to_the_other_replica_is_refused(
        replicas: tuple[ServerProcess, ServerProcess]) -> None:
    first, second = replicas
    device = Device.enrol(first.url, "+254788300001", first.invite("+254788300001"))
    session = device.session
    assert session is not None
    body = encode(SyncRequest())
    counter = session.counter + 1
    tag = request_tag(session.request_key, path="/v1/sync", session_id=session.session_id,
                      counter=counter, body=body)
    request = encode(AuthedRequest(session.session_id, counter, body, tag))
    assert httpx.post(first.url + "/v1/sync", content=request).status_code == 200
    replayed = httpx.post(second.url + "/v1/sync", content=request)  # a pull: no op to dedupe
    frame = decode(decode(replayed.content, AuthedResponse).body, ErrorFrame)
    assert ErrorCode(frame.code) is ErrorCode.REPLAYED
    assert replayed.status_code == ErrorCode.REPLAYED.http_status
