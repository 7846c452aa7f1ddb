"""syncd at scale: many ops and devices stored, and one conversation of 5,000 members.

Run by ``python bench/compare.py`` (``--only scale`` for this part alone).

* Empty-sync latency (one device, one request after another) and empty syncs
  per second (8 devices at once) with 1k, 100k and 1M ops stored and 10,000
  registered devices. The ops and the devices are written straight into the
  SQLite file before the server starts (1,000 other conversations hold the
  ops); the 8 measuring devices enrol and sync over HTTP.
* One conversation of 5,000 members, every one a device with its own keys
  and session. Storage cost of one post: the growth of the database's used
  pages over 100 posts, divided by 100, next to the same in a conversation of
  two. Fan-out time: once the post is acked, every member syncs once (8 at a
  time, each on its own connection); the time until the last member's pull
  has returned with the post.
"""

from __future__ import annotations

import asyncio
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
sys.path.insert(0, str(ROOT / "bench"))

from compare import syncd_worker  # noqa: E402
from loadgen import Worker, hammer, percentile, texts  # noqa: E402
from report import machine  # noqa: E402
from server_bench import authed_sync, enrol, message_op, populate  # noqa: E402

from clients.reference.connection import Connection, Session  # noqa: E402
from clients.reference.crypto import DeviceKeys  # noqa: E402
from protocol import AddMembers, Cursor, Member, Role, SyncRequest  # noqa: E402
from tests.support.device import Device  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402

BEGIN, END = "<!-- scale:begin -->", "<!-- scale:end -->"
REGISTERED = 10_000
CONCURRENT = 8
PER_CHANGE = 1024  # MAX_MEMBERS_PER_CHANGE
POSTS = 100


def add_devices(db: Path, count: int, prefix: str,
                keys: list[DeviceKeys] | None = None) -> list[tuple[int, int]]:
    """``count`` users with one device each, straight into the database; their
    (user id, device id). With ``keys``, the devices get those public keys."""
    made = []
    with sqlite3.connect(db) as connection:
        for n in range(count):
            user = connection.execute("INSERT INTO users (phone, created_at) VALUES (?, 0)",
                                      (f"+{prefix}{n:07d}",)).lastrowid
            sign, hpke = ((keys[n].sign_public, keys[n].hpke_public) if keys is not None
                          else (bytes(32), bytes(32)))
            device = connection.execute("INSERT INTO devices (user_id, sign_key, hpke_key,"
                                        " created_at) VALUES (?, ?, ?, 0)",
                                        (user, sign, hpke)).lastrowid
            assert user is not None and device is not None
            made.append((user, device))
    return made


def used_bytes(db: Path) -> int:
    """Bytes in the database's pages that hold data (WAL included, free pages not)."""
    with sqlite3.connect(db) as connection:
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        free = connection.execute("PRAGMA freelist_count").fetchone()[0]
        size = connection.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


# ----------------------------------------------------------------- stored ops


@dataclass(frozen=True)
class ScaleRow:
    ops: int
    p50_ms: float
    p99_ms: float
    syncs_per_s: float
    mib: float


def stored_ops(size: int, samples: int, seconds: float) -> ScaleRow:
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "scale.db"
        ServerProcess(db).start().stop()  # creates the schema
        populate(db, size)
        add_devices(db, REGISTERED, "1777")
        server = ServerProcess(db).start()
        try:
            devices = [enrol(server, 900 + n) for n in range(CONCURRENT)]
            owner = devices[0]
            conv, create = owner.create({d.user_id: Role.MEMBER for d in devices[1:]})
            owner.push(conv, create)
            for device in devices:
                device.drain()
            latencies = []
            for _ in range(samples):
                started = time.perf_counter()
                owner.sync()
                latencies.append(time.perf_counter() - started)
            latencies.sort()
            rate = asyncio.run(concurrent_empty_syncs(server, devices, conv, seconds))
            mib = sum(p.stat().st_size for p in Path(folder).glob("scale.db*")) / 2**20
        finally:
            server.stop()
    return ScaleRow(size, statistics.median(latencies) * 1000,
                    percentile(latencies, 0.99) * 1000, rate, mib)


async def concurrent_empty_syncs(server: ServerProcess, devices: list[Device], conv: bytes,
                                 seconds: float) -> float:
    clients = [httpx.AsyncClient(base_url=server.url, timeout=60) for _ in devices]
    workers: list[Worker] = []
    for device, client in zip(devices, clients, strict=True):
        client.headers.clear()
        workers.append(syncd_worker(device, client, conv, 0))
    try:
        return (await hammer(workers, seconds)).per_second
    finally:
        for client in clients:
            await client.aclose()


# ----------------------------------------------------------------- big conversation


@dataclass(frozen=True)
class FanOut:
    members: int
    bytes_per_post: float
    bytes_per_post_two: float
    post_p50_ms: float
    post_p50_ms_two: float
    fan_out_s: float
    pull_p50_ms: float
    pull_p99_ms: float


def big_conversation(members: int) -> FanOut:
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "members.db"
        ServerProcess(db).start().stop()
        keys = [DeviceKeys.generate() for _ in range(members - 1)]
        made = add_devices(db, members - 1, "1666", keys)
        server = ServerProcess(db).start()
        try:
            owner, other = enrol(server, 1), enrol(server, 2)
            two, create = owner.create({other.user_id: Role.MEMBER})
            owner.push(two, create)
            users = [user for user, _ in made]
            conv, create = owner.create({u: Role.MEMBER for u in users[:PER_CHANGE - 1]})
            owner.push(conv, create)
            for start in range(PER_CHANGE - 1, len(users), PER_CHANGE):
                change = AddMembers(tuple(Member(u, Role.MEMBER)
                                          for u in users[start:start + PER_CHANGE]))
                owner.push(conv, owner._change(conv, change))
            owner.drain()
            posted = {}
            for name, target in (("big", conv), ("two", two)):
                before = used_bytes(db)
                latencies = []
                for text in texts(POSTS, seed=4):
                    started = time.perf_counter()
                    owner.push(target, message_op(owner, target, text))
                    latencies.append(time.perf_counter() - started)
                posted[name] = ((used_bytes(db) - before) / POSTS,
                                statistics.median(latencies) * 1000)
            sessions = open_sessions(server, owner.server_key, made, keys)
            cursors = asyncio.run(pull_all(server, sessions, {}))  # up to date before the post
            owner.push(conv, message_op(owner, conv, "The one post every member must get."))
            started = time.perf_counter()
            pulls: list[float] = []
            asyncio.run(pull_all(server, sessions, cursors, pulls, expect_one=True))
            fan_out = time.perf_counter() - started
        finally:
            server.stop()
    pulls.sort()
    return FanOut(members, posted["big"][0], posted["two"][0], posted["big"][1],
                  posted["two"][1], fan_out, statistics.median(pulls) * 1000,
                  percentile(pulls, 0.99) * 1000)


def open_sessions(server: ServerProcess, server_key: bytes, made: list[tuple[int, int]],
                  keys: list[DeviceKeys]) -> list[Session]:
    with Connection(server.url) as connection:
        return [connection.open_session(device, key, server_key)
                for (_, device), key in zip(made, keys, strict=True)]


async def pull_all(server: ServerProcess, sessions: list[Session],
                   cursors: dict[int, Cursor], latencies: list[float] | None = None,
                   expect_one: bool = False) -> dict[int, Cursor]:
    """Every session syncs once, ``CONCURRENT`` at a time; their new cursors."""
    queue = list(range(len(sessions)))
    found: dict[int, Cursor] = {}

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            client.headers.clear()
            while queue:
                index = queue.pop()
                cursor = cursors.get(index, Cursor())
                for _ in range(1000):  # a catch-up from zero may take several syncs
                    started = time.perf_counter()
                    response = await authed_sync(client, sessions[index],
                                                 SyncRequest(cursor=cursor))
                    if latencies is not None:
                        latencies.append(time.perf_counter() - started)
                    cursor = response.cursor
                    got = sum(len(block.ops) for block in response.blocks)
                    if expect_one and (got != 1 or response.more):
                        raise RuntimeError(f"member {index} pulled {got} ops, not the one post")
                    if not response.more:
                        break
                found[index] = cursor

    await asyncio.gather(*(worker() for _ in range(CONCURRENT)))
    return found


# ----------------------------------------------------------------- report


def run(quick: bool) -> str:
    sizes = [1_000, 100_000] if quick else [1_000, 100_000, 1_000_000]
    rows = [stored_ops(size, 100 if quick else 300, 3.0 if quick else 10.0) for size in sizes]
    fan_out = big_conversation(500 if quick else 5_000)
    lines = [BEGIN, "## Scale", "",
             f"Measured {datetime.now(UTC):%Y-%m-%d} by `python bench/compare.py"
             f"{' --quick' if quick else ''}` on {machine()}, server and load generator in "
             "separate processes over loopback. The machine is shared and noisy.", "",
             f"### Empty sync with {REGISTERED:,} registered devices", "",
             f"| ops stored | p50 ms | p99 ms | empty syncs/s, {CONCURRENT} devices | "
             "database MiB |", "| ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {row.ops:,} | {row.p50_ms:.2f} | {row.p99_ms:.2f} | {row.syncs_per_s:,.0f} | "
              f"{row.mib:,.0f} |" for row in rows]
    lines += ["", f"{REGISTERED:,} users with a device each and the ops (in 1,000 other "
              "conversations) are written into the SQLite file before the server starts; "
              f"the {CONCURRENT} measuring devices enrol over HTTP and share one "
              "conversation. Latency: one device, one sync after another; throughput: the "
              f"{CONCURRENT} devices at once, each on its own connection.", "",
              f"### One conversation of {fan_out.members:,} members", "",
              "| conversation | storage per post, bytes | post acked, p50 ms |",
              "| --- | ---: | ---: |",
              f"| {fan_out.members:,} members | {fan_out.bytes_per_post:,.0f} | "
              f"{fan_out.post_p50_ms:.1f} |",
              f"| 2 members | {fan_out.bytes_per_post_two:,.0f} | {fan_out.post_p50_ms_two:.1f} |",
              "", f"Fan-out: after the post is acked, each of the {fan_out.members:,} members "
              f"syncs once, {CONCURRENT} at a time: the last member had the post "
              f"{fan_out.fan_out_s:.1f} s later ({fan_out.members / fan_out.fan_out_s:,.0f} "
              f"pulls/s); one member's pull took {fan_out.pull_p50_ms:.1f} ms at the median "
              f"and {fan_out.pull_p99_ms:.1f} ms at p99.", "",
              "Storage per post is the growth of the database's used pages (WAL included, "
              f"free pages not) over {POSTS} posts of 40 characters, divided by {POSTS}: a "
              "post is stored once per conversation, not once per member, so it does not "
              "grow with the members. Every member is a device with its own keys and an "
              "authenticated session; the members were added in changes of 1,024 (the "
              "protocol's limit per change) and had synced up to just before the post.", END]
    return "\n".join(lines)
