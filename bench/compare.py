"""syncd next to Synapse, syncd over 2G, and syncd at scale: one command for all three.

    python bench/compare.py [--quick] [--cache DIR] [--only side-by-side,2g,scale]

Runs on this machine, in one run, and writes three sections of
docs/BENCHMARKS.md (each with the date and the machine). Not part of CI.

* Side by side with Synapse, the Matrix homeserver (``matrix-synapse`` from
  PyPI, installed by this script into its own virtual environment under the
  cache folder, reused on later runs; SQLite; loopback only). Same workload
  on both: two users in one conversation; A sends 100 messages of 40
  characters; B, offline meanwhile, catches up; then one empty incremental
  sync. Bytes are counted by the link emulator on the TCP stream, HTTP
  headers included, for the measured phase only. Throughput with 8
  concurrent senders and 8 concurrent syncing clients, straight to loopback.
* Over 2G: see ``phone_2g.py``.
* Scale: see ``scale_bench.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from loadgen import Rate, RequestCounter, Traffic, Worker, hammer, texts  # noqa: E402
from report import machine, write_section  # noqa: E402
from server_bench import TEXT_40, authed_sync, enrol, message_op  # noqa: E402
from synapse_peer import MatrixClient, SynapseServer, synapse_python, synapse_version  # noqa: E402

from clients.reference.connection import Connection  # noqa: E402
from protocol import PushBlock, Role, SyncRequest  # noqa: E402
from tests.support.device import Device  # noqa: E402
from tests.support.linkemu import LinkEmulator, ThreadedLink  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402

BEGIN, END = "<!-- compare-synapse:begin -->", "<!-- compare-synapse:end -->"
MESSAGES = 100
CONCURRENT = 8
TEXTS = texts(MESSAGES)  # different 40-character messages, the same on both sides


def measure(link: ThreadedLink, counter: RequestCounter, phase: Callable[[], object]) -> Traffic:
    before, requests = link.counters.snapshot(), counter.requests
    phase()
    after = link.counters.snapshot()
    return Traffic(after[0] - before[0], after[1] - before[1], counter.requests - requests)


# ----------------------------------------------------------------- bytes


def syncd_bytes(server: ServerProcess) -> dict[str, Traffic]:
    amina, brian = enrol(server, 1), enrol(server, 2)
    conv, create = amina.create({brian.user_id: Role.MEMBER})
    amina.push(conv, create)
    brian.drain()
    counter = RequestCounter()
    with ThreadedLink(LinkEmulator("127.0.0.1", server.port)) as link:
        for device in (amina, brian):
            device.connection = Connection(link.url)
            counter.attach(device.connection.client)
            device.sync()  # opens the connection; not counted
        result = {}
        result["send one by one"] = measure(link, counter, lambda: [
            amina.push(conv, message_op(amina, conv, text)) for text in TEXTS])

        def catch_up() -> None:
            seqs = brian.drain()
            if len(seqs) != MESSAGES:
                raise RuntimeError(f"syncd catch-up got {len(seqs)} ops")

        result["catch up"] = measure(link, counter, catch_up)
        result["empty sync"] = measure(link, counter, brian.sync)
        ops = tuple(message_op(amina, conv, text) for text in TEXTS)  # encrypted and signed
        result["send batched"] = measure(link, counter, lambda: amina.push(conv, *ops))
        if len(brian.drain()) != MESSAGES:
            raise RuntimeError("the batched messages did not all arrive")
        for device in (amina, brian):
            device.connection.close()
    return result


def synapse_bytes(synapse: SynapseServer, tag: str, gzip: bool) -> dict[str, Traffic]:
    counter = RequestCounter()
    with ThreadedLink(LinkEmulator("127.0.0.1", synapse.port)) as link:
        alice = MatrixClient(link.url, *synapse.register(f"alice-{tag}"), gzip=gzip)
        bob = MatrixClient(link.url, *synapse.register(f"bob-{tag}"), gzip=gzip)
        room = alice.create_room([bob.user_id])
        bob.join(room)
        bob.upload_filter()
        bob.sync()  # the initial sync, before B goes offline; not counted
        alice.call("GET", "/_matrix/client/v3/account/whoami")  # opens the connection
        for client in (alice, bob):
            counter.attach(client.client)
        sent: set[str] = set()
        result = {}
        result["send one by one"] = measure(link, counter, lambda: sent.update(
            alice.send(room, text) for text in TEXTS))
        result["catch up"] = measure(link, counter, lambda: bob.catch_up(room, sent))
        result["empty sync"] = measure(link, counter, bob.sync)
        for client in (alice, bob):
            client.close()
    return result


# ----------------------------------------------------------------- throughput


def syncd_throughput(server: ServerProcess, seconds: float) -> dict[str, Rate]:
    devices = [enrol(server, 100 + n) for n in range(CONCURRENT)]
    owner = devices[0]
    conv, create = owner.create({d.user_id: Role.MEMBER for d in devices[1:]})
    owner.push(conv, create)
    for device in devices:
        device.drain()

    async def run(batch: int) -> Rate:
        clients = [httpx.AsyncClient(base_url=server.url, timeout=60) for _ in devices]
        workers: list[Worker] = []
        for device, client in zip(devices, clients, strict=True):
            client.headers.clear()
            workers.append(syncd_worker(device, client, conv, batch))
        try:
            return await hammer(workers, seconds)
        finally:
            for client in clients:
                await client.aclose()

    results = {"empty syncs": asyncio.run(run(0))}
    for batch in (1, 20):
        for device in devices:
            device.drain()
        results[f"send {batch}"] = asyncio.run(run(batch))
    return results


def syncd_worker(device: Device, client: httpx.AsyncClient, conv: bytes, batch: int) -> Worker:
    session = device.session
    assert session is not None
    cursor = device.cursor

    async def one() -> int:
        nonlocal cursor
        push = (PushBlock(conv, tuple(message_op(device, conv) for _ in range(batch))),) \
            if batch else ()
        response = await authed_sync(client, session, SyncRequest(push=push, cursor=cursor))
        cursor = response.cursor
        return batch or 1

    return one


def synapse_throughput(synapse: SynapseServer, seconds: float) -> dict[str, Rate]:
    users = [synapse.register(f"load-{n}") for n in range(CONCURRENT)]
    owner = MatrixClient(synapse.url, *users[0])
    room = owner.create_room([user for user, _ in users[1:]])
    for user, token in users[1:]:
        member = MatrixClient(synapse.url, user, token)
        member.join(room)
        member.close()
    owner.close()
    since: dict[str, str] = {}
    filters: dict[str, str] = {}
    for user, token in users:
        client = MatrixClient(synapse.url, user, token)
        client.upload_filter()
        client.sync()
        since[user], filters[user] = client.since, client.filter_id
        client.close()

    async def run(send: bool) -> Rate:
        clients = []
        workers: list[Worker] = []
        for user, token in users:
            client = httpx.AsyncClient(base_url=synapse.url, timeout=60)
            client.headers.clear()
            client.headers["Authorization"] = f"Bearer {token}"
            clients.append(client)
            workers.append(matrix_worker(client, user, room, send, since, filters[user]))
        try:
            return await hammer(workers, seconds)
        finally:
            for client in clients:
                await client.aclose()

    return {"empty syncs": asyncio.run(run(False)), "send 1": asyncio.run(run(True))}


def matrix_worker(client: httpx.AsyncClient, user: str, room: str, send: bool,
                  since: dict[str, str], filter_id: str) -> Worker:
    txn = 0

    async def one() -> int:
        nonlocal txn
        if send:
            txn += 1
            answer = await client.put(
                f"/_matrix/client/v3/rooms/{room}/send/m.room.message/{time.time_ns()}.{txn}",
                content=b'{"msgtype":"m.text","body":"' + TEXT_40.encode() + b'"}')
        else:
            answer = await client.get("/_matrix/client/v3/sync", params={
                "since": since[user], "timeout": "0", "filter": filter_id})
            if answer.is_success:
                since[user] = answer.json()["next_batch"]
        if not answer.is_success:
            raise RuntimeError(f"synapse: HTTP {answer.status_code} {answer.text[:200]}")
        return 1

    return one


# ----------------------------------------------------------------- report


def ratio(mine: float, theirs: float) -> str:
    return f"{mine / theirs:.2f}" if theirs else "n/a"


def side_by_side_report(ours: dict[str, Traffic], plain: dict[str, Traffic],
                        gzipped: dict[str, Traffic], our_rates: dict[str, Rate],
                        their_rates: dict[str, Rate], version: str, quick: bool,
                        seconds: float) -> str:
    lines = [BEGIN, "## Side by side with Synapse", "",
             f"Measured {datetime.now(UTC):%Y-%m-%d} by `python bench/compare.py"
             f"{' --quick' if quick else ''}` on {machine()}, against Synapse {version} "
             "(`matrix-synapse` from PyPI, on SQLite), both servers in one run on the same "
             "machine, over loopback. The machine is shared with other work and noisy: the "
             "ratios below come from this one run.", "",
             "Synapse carries the 40 characters as plaintext JSON; syncd carries them "
             "encrypted (ChaCha20-Poly1305, 16-byte tag) and signed (Ed25519, 64 bytes), with "
             "an authenticated session (a MAC on every request and response). Matrix has no "
             "batched send, so syncd is measured both ways: one op per sync, as a Matrix "
             "client sends, and all 100 in one sync.", "",
             "### Bytes on the wire, HTTP headers included", "",
             "Two users in one conversation; A sends 100 messages of 40 characters (100 "
             "different ones, made of ordinary words, the same on both sides); B, "
             "offline meanwhile, catches up; then one empty incremental sync. Bytes both ways "
             "on the TCP stream, counted by the link emulator for the measured phase only, "
             "on connections already open (keep-alive, one per client).", "",
             "| phase | syncd bytes | syncd requests | Synapse bytes | Synapse bytes, gzip "
             "| Synapse requests | syncd / Synapse (the smaller) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    rows = [("A sends 100 messages, one per request", "send one by one", "send one by one"),
            ("A sends 100 messages, batched (Synapse: one per request, it has no batch)",
             "send batched", "send one by one"),
            ("B catches up on the 100", "catch up", "catch up"),
            ("one empty incremental sync", "empty sync", "empty sync")]
    for what, mine, theirs in rows:
        best = min(plain[theirs].total, gzipped[theirs].total)
        lines.append(f"| {what} | {ours[mine].total:,} | {ours[mine].requests} | "
                     f"{plain[theirs].total:,} | {gzipped[theirs].total:,} | "
                     f"{plain[theirs].requests} | "
                     f"{ratio(ours[mine].total, best)} |")
    lines += ["", "Per message sent one per request: syncd "
              f"{ours['send one by one'].up / MESSAGES:.0f} B up and "
              f"{ours['send one by one'].down / MESSAGES:.0f} B down; Synapse "
              f"{plain['send one by one'].up / MESSAGES:.0f} B up and "
              f"{plain['send one by one'].down / MESSAGES:.0f} B down "
              f"({gzipped['send one by one'].down / MESSAGES:.0f} B down with gzip). "
              "gzip shrinks Synapse's catch-up because its JSON repeats keys, ids and "
              "plaintext; syncd's messages are ciphertext, which does not compress, and each "
              "carries a 64-byte signature and a 16-byte tag that Synapse's do not.", "",
              "How each side is driven: syncd by its reference client library (headers "
              "cleared: HTTP/1.1 needs only `Host` and `Content-Length`); B's catch-up pulls "
              "with the default 16 KiB budget until the server says there is no more. "
              "Synapse by a minimal httpx client that sends only `Authorization` (and "
              "`Accept-Encoding: gzip` in the gzip column, with compression enabled on the "
              "listener). A sends with `PUT /_matrix/client/v3/rooms/{room}/send/"
              "m.room.message/{txn}`; B uploads a filter once (not counted) and catches up "
              "with `GET /_matrix/client/v3/sync?since=...&timeout=0&filter=ID`, the filter "
              "lazy-loading members (as current clients do), with up to 100 timeline events, "
              "no presence and no account data, paging back through `/messages` if the "
              "timeline came back limited; the empty sync is the same request once more.", "",
              "### Throughput", "",
              f"{CONCURRENT} concurrent clients, each on its own keep-alive connection, "
              f"straight to the server over loopback, for {seconds:g} s per row; the load "
              "generator is one Python process on the same machine.", "",
              "| load | syncd /s | syncd p50 ms | Synapse /s | Synapse p50 ms | "
              "syncd / Synapse |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    rate_rows = [(f"messages accepted, {CONCURRENT} senders, one message per request",
                  "send 1", "send 1"),
                 (f"messages accepted, {CONCURRENT} senders, syncd batching 20 per sync "
                  "(Synapse: one per request)", "send 20", "send 1"),
                 (f"empty incremental syncs, {CONCURRENT} clients", "empty syncs",
                  "empty syncs")]
    for what, mine, theirs in rate_rows:
        lines.append(f"| {what} | {our_rates[mine].per_second:,.0f} | "
                     f"{our_rates[mine].p50_ms:.1f} | {their_rates[theirs].per_second:,.0f} | "
                     f"{their_rates[theirs].p50_ms:.1f} | "
                     f"{ratio(our_rates[mine].per_second, their_rates[theirs].per_second)} |")
    lines += ["", "A syncd send is a sync: it pushes the message and pulls what the other "
              "senders wrote since the device's cursor, in the same round trip, and the ack "
              "means the op is fsynced. Every syncd request carries a session MAC and every "
              "op an Ed25519 signature the server verifies. Synapse's rate limits "
              "(`rc_message`, `rc_login`, `rc_registration`, `rc_joins`, `rc_invites`, "
              "`rc_room_creation`, `rc_joins_per_room`, `rc_key_requests`) are raised to "
              "100,000 per second so that they never bind, and its presence is off; syncd's "
              "per-device limit is raised to 1,000 per second. Synapse keeps its generated "
              "logging configuration.", END]
    return "\n".join(lines)


def side_by_side(cache: Path, quick: bool) -> tuple[str, dict[str, Traffic]]:
    """The section, and Synapse's traffic per phase (the smaller of plain and gzip)."""
    seconds = 3.0 if quick else 10.0
    python = synapse_python(cache)
    version = synapse_version(python)
    with tempfile.TemporaryDirectory() as folder:
        server = ServerProcess(Path(folder) / "bench.db").start()
        try:
            ours = syncd_bytes(server)
            our_rates = syncd_throughput(server, seconds)
        finally:
            server.stop()
        synapse = SynapseServer(python, Path(folder) / "synapse").start()
        try:
            plain = synapse_bytes(synapse, "plain", gzip=False)
            gzipped = synapse_bytes(synapse, "gzip", gzip=True)
            their_rates = synapse_throughput(synapse, seconds)
        finally:
            synapse.stop()
    section = side_by_side_report(ours, plain, gzipped, our_rates, their_rates, version, quick,
                                  seconds)
    return section, {phase: min(plain[phase], gzipped[phase], key=lambda t: t.total)
                     for phase in plain}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="syncd next to Synapse, over 2G, at scale")
    parser.add_argument("--quick", action="store_true",
                        help="short runs: 3 s per load, up to 100k ops, 500 members")
    parser.add_argument("--cache", type=Path, default=ROOT / ".bench-cache",
                        help="where Synapse's virtual environment is kept (default: "
                             ".bench-cache in the repository)")
    parser.add_argument("--only", default="side-by-side,2g,scale",
                        help="comma-separated parts to run (default: all three)")
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    unknown = parts - {"side-by-side", "2g", "scale"}
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    peer: dict[str, Traffic] | None = None
    if "side-by-side" in parts:
        section, peer = side_by_side(args.cache, args.quick)
        print(section, flush=True)
        write_section(section, BEGIN, END)
    if "2g" in parts:
        import phone_2g

        section = phone_2g.run(args.quick, peer)
        print(section, flush=True)
        write_section(section, phone_2g.BEGIN, phone_2g.END)
    if "scale" in parts:
        import scale_bench

        section = scale_bench.run(args.quick)
        print(section, flush=True)
        write_section(section, scale_bench.BEGIN, scale_bench.END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
