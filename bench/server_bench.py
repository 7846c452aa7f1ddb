"""Server benchmarks: bytes on the wire, throughput and latency, and scale.

    python bench/server_bench.py [--quick]

Runs a real ``syncd serve`` in a subprocess on loopback (its own SQLite file
in a temporary folder) and drives it from this process, so the load
generator and the server are separate processes. Prints tables and writes
them into docs/BENCHMARKS.md with the machine they ran on. Not part of CI.

* Wire: bytes counted on the TCP stream by the link emulator, HTTP headers
  included, for an empty sync exchange, one 40-character message sent and
  acked, and 100 such messages delivered to a device that was offline.
* Throughput: syncs and ops per second with N concurrent devices, p50/p99.
* Scale: empty-sync latency with 1k ... 1M ops stored.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clients.reference.connection import Connection, Session  # noqa: E402
from clients.reference.crypto import encrypt_payload  # noqa: E402
from protocol import (  # noqa: E402
    AuthedRequest,
    AuthedResponse,
    ContentOp,
    OpType,
    PushBlock,
    Role,
    SyncRequest,
    SyncResponse,
    decode,
    dumps,
    encode,
    request_tag,
)
from protocol.e2e import MessageBody, MessageKind  # noqa: E402
from protocol.limits import MAX_RESPONSE_BYTES  # noqa: E402
from tests.support.device import PLACEHOLDER, Device  # noqa: E402
from tests.support.linkemu import LinkEmulator, ThreadedLink  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from report import machine, write_section  # noqa: E402

BEGIN, END = "<!-- server-bench:begin -->", "<!-- server-bench:end -->"
TEXT_40 = "Clinic opens at 9 tomorrow, bring cards."  # 40 characters
assert len(TEXT_40) == 40
EPOCH_KEY = bytes(32)


def message_op(device: Device, conv: bytes, text: str = TEXT_40) -> ContentOp:
    op_id = device.op_id()
    body = MessageBody(MessageKind.TEXT, text, sent_at=int(time.time()))
    payload = encrypt_payload(EPOCH_KEY, conv, 0, device.device_id, int(OpType.CHAT), op_id,
                              body.to_bytes())
    op = device.sign(conv, ContentOp(OpType.CHAT, op_id, payload, PLACEHOLDER))
    assert isinstance(op, ContentOp)
    return op


def enrol(server: ServerProcess, n: int) -> Device:
    phone = f"+2547{n:08d}"
    return Device.enrol(server.url, phone, server.invite(phone))


# ----------------------------------------------------------------- wire


@dataclass
class WireRow:
    what: str
    up: float
    down: float
    target: str

    @property
    def total(self) -> float:
        return self.up + self.down


def wire(server: ServerProcess) -> list[WireRow]:
    amina, brian = enrol(server, 1), enrol(server, 2)
    conv, create = amina.create({brian.user_id: Role.MEMBER})
    amina.push(conv, create)
    brian.drain()
    rows = []
    with ThreadedLink(LinkEmulator("127.0.0.1", server.port)) as link:
        amina.connection = Connection(link.url)
        brian.connection = Connection(link.url)
        amina.sync()  # opens the connection; not counted
        brian.sync()
        before = link.counters.snapshot()
        brian.sync()
        after = link.counters.snapshot()
        rows.append(WireRow("empty sync exchange", after[0] - before[0], after[1] - before[1],
                            "<= 200"))
        before = link.counters.snapshot()
        amina.push(conv, message_op(amina, conv))
        after = link.counters.snapshot()
        rows.append(WireRow("one 40-character message sent and acked", after[0] - before[0],
                            after[1] - before[1], "<= 400"))
        for _ in range(99):  # 100 in all, brian offline meanwhile
            amina.push(conv, message_op(amina, conv))
        before = link.counters.snapshot()
        seqs = brian.drain()
        after = link.counters.snapshot()
        assert len(seqs) == 100
        rows.append(WireRow("100 such messages delivered to an offline device, per message",
                            (after[0] - before[0]) / 100, (after[1] - before[1]) / 100,
                            "<= 150"))
    return rows


# ----------------------------------------------------------------- load


async def authed_sync(client: httpx.AsyncClient, session: Session,
                      request: SyncRequest) -> SyncResponse:
    session.counter += 1
    body = encode(request)
    tag = request_tag(session.request_key, path="/v1/sync", session_id=session.session_id,
                      counter=session.counter, body=body)
    reply = await client.post("/v1/sync",
                              content=encode(AuthedRequest(session.session_id, session.counter,
                                                           body, tag)))
    if reply.status_code != 200:
        raise RuntimeError(f"sync failed: HTTP {reply.status_code}")
    frame = decode(reply.content, AuthedResponse, max_bytes=MAX_RESPONSE_BYTES)
    return decode(frame.body, SyncResponse, max_bytes=MAX_RESPONSE_BYTES)


@dataclass
class LoadResult:
    what: str
    clients: int
    syncs_per_s: float
    ops_per_s: float
    p50_ms: float
    p99_ms: float


async def load(devices: list[Device], conv: bytes, seconds: float, ops_per_sync: int,
               what: str) -> LoadResult:
    """Every device in a loop of syncs to its own server (``device.url``) for ``seconds``."""
    latencies: list[float] = []
    ops = 0
    deadline = time.monotonic() + seconds

    async def worker(device: Device) -> None:
        nonlocal ops
        assert device.session is not None
        async with httpx.AsyncClient(base_url=device.url, timeout=30) as client:
            client.headers.clear()
            cursor = device.cursor
            while time.monotonic() < deadline:
                push: tuple[PushBlock, ...] = ()
                if ops_per_sync:
                    push = (PushBlock(conv, tuple(device.chat(conv, os.urandom(66))
                                                  for _ in range(ops_per_sync))),)
                started = time.perf_counter()
                response = await authed_sync(client, device.session,
                                             SyncRequest(push=push, cursor=cursor))
                latencies.append(time.perf_counter() - started)
                cursor = response.cursor
                ops += ops_per_sync

    started = time.monotonic()
    await asyncio.gather(*(worker(device) for device in devices))
    elapsed = time.monotonic() - started
    latencies.sort()
    return LoadResult(what, len(devices), len(latencies) / elapsed, ops / elapsed,
                      statistics.median(latencies) * 1000,
                      latencies[int(len(latencies) * 0.99) - 1] * 1000)


def throughput(server: ServerProcess, seconds: float) -> list[LoadResult]:
    devices = [enrol(server, 100 + n) for n in range(8)]
    owner = devices[0]
    conv, create = owner.create({d.user_id: Role.MEMBER for d in devices[1:]})
    owner.push(conv, create)
    for device in devices:
        device.drain()
    results = []
    for clients in (1, 8):
        results.append(asyncio.run(load(devices[:clients], conv, seconds, 0,
                                        "empty syncs")))
    for clients, batch in ((8, 1), (8, 20)):
        for device in devices:
            device.drain()
        results.append(asyncio.run(load(devices[:clients], conv, seconds, batch,
                                        f"syncs pushing {batch} op(s) each")))
    return results


# ----------------------------------------------------------------- scale


def populate(db: Path, ops: int) -> None:
    """Add ``ops`` ops spread over 1,000 conversations the measuring device is not in."""
    with sqlite3.connect(db) as connection:
        connection.execute("INSERT INTO users (phone, created_at) VALUES ('+19990000000', 0)")
        user = connection.execute("SELECT id FROM users WHERE phone = '+19990000000'").fetchone()[0]
        connection.execute("INSERT INTO devices (user_id, sign_key, hpke_key, created_at)"
                           " VALUES (?, ?, ?, 0)", (user, bytes(32), bytes(32)))
        device = connection.execute("SELECT max(id) FROM devices").fetchone()[0]
        convs = []
        for n in range(1000):
            cursor = connection.execute(
                "INSERT INTO conversations (conv, broadcast, head) VALUES (?, 0, ?)",
                (n.to_bytes(8, "big") + b"", bytes(32)))
            convs.append(cursor.lastrowid)
            connection.execute("INSERT INTO spans VALUES (?, ?, 0, NULL)", (cursor.lastrowid,
                                                                           user))
        fields = dumps([os.urandom(100), bytes(64)])
        batch = []
        for n in range(ops):
            batch.append((convs[n % len(convs)], 3, device, n + 1, fields, n.to_bytes(32, "big")))
            if len(batch) == 50_000:
                connection.executemany("INSERT INTO ops (conv_id, op_type, device_id, op_id,"
                                       " fields, digest) VALUES (?, ?, ?, ?, ?, ?)", batch)
                batch.clear()
        if batch:
            connection.executemany("INSERT INTO ops (conv_id, op_type, device_id, op_id,"
                                   " fields, digest) VALUES (?, ?, ?, ?, ?, ?)", batch)


def scale(sizes: list[int], samples: int) -> list[tuple[int, float, float, float]]:
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as folder:
            db = Path(folder) / "scale.db"
            server = ServerProcess(db).start()  # creates the schema
            server.stop()
            populate(db, size)
            server = ServerProcess(db).start()
            try:
                device = enrol(server, 900)
                conv, create = device.create({})
                device.push(conv, create)
                device.drain()
                latencies = []
                for _ in range(samples):
                    started = time.perf_counter()
                    device.sync()
                    latencies.append(time.perf_counter() - started)
                latencies.sort()
                mib = sum(p.stat().st_size for p in Path(folder).glob("scale.db*")) / 2**20
                rows.append((size, statistics.median(latencies) * 1000,
                             latencies[int(len(latencies) * 0.99) - 1] * 1000, mib))
            finally:
                server.stop()
    return rows


# ----------------------------------------------------------------- report


def report(wire_rows: list[WireRow], loads: list[LoadResult],
           scale_rows: list[tuple[int, float, float, float]], quick: bool) -> str:
    lines = [BEGIN, "## Server", "",
             f"Measured {datetime.now(UTC):%Y-%m-%d} by `python bench/server_bench.py"
             f"{' --quick' if quick else ''}` on {machine()}. The server and the load "
             "generator are separate processes on the same machine, over loopback.", "",
             "### Bytes on the wire, HTTP headers included", "",
             "| exchange | up | down | total | target |", "| --- | ---: | ---: | ---: | --- |"]
    lines += [f"| {r.what} | {r.up:g} | {r.down:g} | {r.total:g} | {r.target} |"
              for r in wire_rows]
    lines += ["", "Messages are real: 40 characters of text with a send time, encrypted with "
              "ChaCha20-Poly1305 and signed with Ed25519 (64 bytes of the total).", "",
              "### Throughput and latency", "",
              "| load | devices | syncs/s | ops/s | p50 ms | p99 ms |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r.what} | {r.clients} | {r.syncs_per_s:,.0f} | {r.ops_per_s:,.0f} | "
              f"{r.p50_ms:.1f} | {r.p99_ms:.1f} |" for r in loads]
    lines += ["", "Every sync is authenticated (MAC check and counter), and every pushed op's "
              "Ed25519 signature is verified before the fsynced commit that acks it.", "",
              "### Empty sync as the database grows", "",
              "| ops stored | p50 ms | p99 ms | database MiB |", "| ---: | ---: | ---: | ---: |"]
    lines += [f"| {size:,} | {p50:.2f} | {p99:.2f} | {mib:,.0f} |"
              for size, p50, p99, mib in scale_rows]
    lines += ["", "The ops belong to 1,000 other conversations; the device syncing is in one. "
              "Its empty sync reads its own memberships and one index range per lane, so the "
              "cost should not grow with the ops stored.", END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="syncd server benchmarks")
    parser.add_argument("--quick", action="store_true", help="short runs, up to 100k ops")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        server = ServerProcess(Path(folder) / "bench.db").start()
        try:
            wire_rows = wire(server)
            loads = throughput(server, 3.0 if args.quick else 10.0)
        finally:
            server.stop()
    sizes = [1_000, 10_000, 100_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]
    scale_rows = scale(sizes, 100 if args.quick else 300)
    section = report(wire_rows, loads, scale_rows, args.quick)
    print(section)
    write_section(section, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
