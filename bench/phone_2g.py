"""A phone over 2G: sending queued messages and catching up, next to the floor.

Run by ``python bench/compare.py`` (``--only 2g`` for this part alone).

Real reference clients (``clients.reference.client.Client``: encryption,
signatures, the on-disk store) talk to a real server through the link
emulator on the ``gprs`` and ``edge`` profiles, with its random cuts turned
off so that the timings can be repeated. Timed: a phone sending 100 messages
queued while offline; a phone catching up on 100, and on 1,000.

The floor is what no protocol could beat with the same bytes and round trips:
every byte up at the uplink rate, every byte down at the downlink rate, and
one full round trip of latency per HTTP request. The bytes and the requests
are the ones the emulator and the client measured in the run itself.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from loadgen import RequestCounter, Traffic, texts  # noqa: E402
from report import machine  # noqa: E402

from clients.reference.client import Client  # noqa: E402
from clients.reference.connection import Connection  # noqa: E402
from tests.support.linkemu import PROFILES, LinkEmulator, Profile, ThreadedLink  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402

BEGIN, END = "<!-- over-2g:begin -->", "<!-- over-2g:end -->"


def floor_seconds(traffic: Traffic, profile: Profile) -> float:
    """The least time ``traffic`` can take on ``profile``: its bytes at the link's rates,
    plus one round trip per request."""
    return (traffic.up * 8 / profile.up_bps + traffic.down * 8 / profile.down_bps
            + traffic.requests * profile.rtt)


@dataclass(frozen=True)
class Timed:
    what: str
    profile: Profile
    seconds: float
    traffic: Traffic

    @property
    def floor(self) -> float:
        return floor_seconds(self.traffic, self.profile)

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor


def over_link(server: ServerProcess, client: Client, profile: Profile, what: str,
              phase: Callable[[], object]) -> Timed:
    """Run ``phase`` with ``client`` talking through a fresh link on ``profile``."""
    counter = RequestCounter()
    with ThreadedLink(LinkEmulator("127.0.0.1", server.port, profile)) as link:
        connection = Connection(link.url, timeout=300)
        counter.attach(connection.client)
        client.use_connection(connection)
        client.store.put("refreshed_at", int(time.time()))  # no directory refresh mid-run
        started = time.monotonic()
        phase()
        elapsed = time.monotonic() - started
        up, down = link.counters.snapshot()
        connection.close()
    client.use_connection(Connection(server.url))
    return Timed(what, profile, elapsed, Traffic(up, down, counter.requests))


def phone_runs(server: ServerProcess, base: Path, profile: Profile,
               catch_ups: list[int]) -> list[Timed]:
    def enrol(name: str) -> Client:
        phone = f"+25471{len(name):02d}{abs(hash((profile.name, name))) % 10**6:06d}"
        return Client.init(base / f"{profile.name}-{name}", server.url, phone,
                           server.invite(phone))

    amina, brian = enrol("amina"), enrol("brian")
    conv = amina.create_group("Ward two", [brian.phone])
    amina.sync()
    brian.sync()
    runs = []
    for text in texts(100, seed=2):
        amina.send(conv, text)  # queued while offline
    runs.append(over_link(server, amina, profile, "send 100 queued messages",
                          lambda: amina.sync(timeout=600)))
    received = 0
    for count in catch_ups:
        if count > 100:
            for text in texts(count, seed=3):
                amina.send(conv, text)
            amina.sync(timeout=600)  # straight to the server: not timed
        runs.append(over_link(server, brian, profile, f"catch up on {count:,} messages",
                              lambda: brian.sync(timeout=900)))
        received += count
        shown = [m for m in brian.messages(conv) if m["text"] is not None]
        if len(shown) != received:
            raise RuntimeError(f"{profile.name}: {len(shown)} messages shown, not {received}")
    amina.close()
    brian.close()
    return runs


def run(quick: bool, peer: dict[str, Traffic] | None = None) -> str:
    catch_ups = [100] if quick else [100, 1_000]
    runs: list[Timed] = []
    with tempfile.TemporaryDirectory() as folder:
        server = ServerProcess(Path(folder) / "2g.db").start()
        try:
            for name in ("gprs", "edge"):
                profile = dataclasses.replace(PROFILES[name], cut_probability=0.0)
                runs += phone_runs(server, Path(folder), profile, catch_ups)
        finally:
            server.stop()
    return report(runs, quick, peer)


def report(runs: list[Timed], quick: bool, peer: dict[str, Traffic] | None) -> str:
    lines = [BEGIN, "## Over 2G", "",
             f"Measured {datetime.now(UTC):%Y-%m-%d} by `python bench/compare.py"
             f"{' --quick' if quick else ''}` on {machine()}. Real reference clients "
             "(messages encrypted and signed, state on disk) and a real server, through the "
             "link emulator with its random cuts turned off, so that a run can be repeated; "
             "each phase on a new connection. The machine is shared and noisy.", "",
             "| profile | what | time s | bytes up | bytes down | requests | floor s "
             "| time / floor |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for timed in runs:
        lines.append(f"| {timed.profile.name} | {timed.what} | {timed.seconds:.1f} | "
                     f"{timed.traffic.up:,} | {timed.traffic.down:,} | "
                     f"{timed.traffic.requests} | {timed.floor:.1f} | {timed.ratio:.2f} |")
    lines += ["", "The floor is the bytes up at the uplink rate, plus the bytes down at the "
              "downlink rate, plus one round trip per HTTP request, with the bytes (HTTP "
              "headers included) and the requests measured in the same run: "
              "gprs 20 kbit/s up, 40 kbit/s down, 800 ms round trip; edge 200 kbit/s up, "
              "240 kbit/s down, 400 ms. TCP's handshake is not emulated, so neither the run "
              "nor the floor pays it. The phone pushes its outbox 64 ops per sync and pulls "
              "with a 16 KiB budget, so 100 queued messages take two round trips; the "
              "session was opened beforehand."]
    if peer is not None:
        lines += ["", "For scale, the floor of the same phases for Synapse, from the bytes and "
                  "requests measured side by side above (not timed through the emulator):", "",
                  "| profile | what | Synapse floor s | syncd floor s |",
                  "| --- | --- | ---: | ---: |"]
        for timed in runs:
            key = {"send 100 queued messages": "send one by one",
                   "catch up on 100 messages": "catch up"}.get(timed.what)
            if key is not None and key in peer:
                lines.append(f"| {timed.profile.name} | {timed.what} | "
                             f"{floor_seconds(peer[key], timed.profile):.1f} | "
                             f"{timed.floor:.1f} |")
        lines += ["", "Synapse's figures use its smaller (gzip or plain) byte count; it sends "
                  "one request per message."]
    lines.append(END)
    return "\n".join(lines)
