"""The wire and the server's life: a virtual network that loses, repeats, delays and
damages requests and responses, and a server that crashes and restarts.

Theory of operation. ``Network.exchange`` sends one request for a phone and
decides its fate; every copy that reaches the server runs ``harness.serve``
on the live ``SyncService`` to completion. A request may be armed with a
crash point (see ``harness.CrashPoint``): the server then dies inside a
transaction (nothing kept), after the commit but before the answer (the ops
are stored, unacked), or after the answer was built (it never leaves). A
crash closes the storage and starts a new service on the same file, so
counters held only in memory are gone, as in a real restart.

Each damaged, duplicated or late copy is judged on the spot. A truncated
request is ``malformed``; a corrupted one is refused before its counter is
taken; neither changes the database. A copy whose counter is not above the
highest the server accepted (in memory since its last start, or durably) is
refused as ``replayed`` and changes nothing; one whose counter is above it
must not be called a replay.
"""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import (
    AuthedRequest,
    AuthedResponse,
    ErrorCode,
    ErrorFrame,
    ProtocolError,
    decode,
    encode,
    request_tag,
    response_tag,
    tags_equal,
)
from protocol.ops import Op
from syncd.service import SyncService

from .checker import DeviceLog
from .harness import CrashingStorage, CrashPoint, Reply, SimulatedCrash, serve
from .phone import Phone

DEFAULT_STEPS = 200
REPLAY = "SYNCD_SIM_SEED={seed}{steps} pytest tests/simulation -k replay"
EPOCH = 1_700_000_000


class SimulationFailure(AssertionError):
    """An invariant broke; the message names the seed and how to replay it."""

    def __init__(self, seed: int, message: str, *, steps: int = DEFAULT_STEPS) -> None:
        replay = REPLAY.format(seed=seed, steps="" if steps == DEFAULT_STEPS
                               else f" SYNCD_SIM_STEPS={steps}")
        super().__init__(f"seed={seed}: {message}\nreplay: {replay}")
        self.seed = seed


@dataclass
class Stats:
    """What a run (or many) did, for the reliability figures."""

    seeds: int = 0
    steps: int = 0
    requests: int = 0
    ops_created: int = 0
    ops_pushed: int = 0  # op copies sent in requests, retries included
    ops_acked: int = 0
    ops_retried: int = 0  # acked ops that were pushed more than once
    ops_refused: int = 0
    ops_pulled: int = 0
    chain_fetches: int = 0
    replays_refused: int = 0  # copies of a request already handled, refused by its counter
    late_accepted: int = 0  # delayed requests handled first after later ones were lost
    replays_after_restart: int = 0  # copies handled again: a restart lost an unpushed counter
    devices: int = 0
    conversations: int = 0
    stored_ops: int = 0
    fates: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)

    def add(self, other: Stats) -> None:
        for item in dataclasses.fields(self):
            mine, theirs = getattr(self, item.name), getattr(other, item.name)
            if isinstance(mine, Counter):
                mine.update(theirs)
            else:
                setattr(self, item.name, mine + theirs)

    def as_dict(self) -> dict[str, object]:
        return {item.name: (dict(sorted(value.items())) if isinstance(value := getattr(
            self, item.name), Counter) else value) for item in dataclasses.fields(self)}


@dataclass(frozen=True, slots=True)
class Sent:
    """A request on the wire, kept to deliver again (duplicate) or late (delay)."""

    device_id: int
    session_id: int
    counter: int
    path: str
    raw: bytes
    pushed: tuple[tuple[bytes, Op], ...]


@dataclass(frozen=True, slots=True)
class Received:
    status: int
    body: bytes
    counter: int
    high_water: int


@dataclass(frozen=True, slots=True)
class Rates:
    drop: float
    duplicate: float
    delay: float
    truncate: float
    corrupt: float
    response_drop: float
    response_truncate: float
    response_corrupt: float
    crash: float

    @classmethod
    def draw(cls, rng: random.Random) -> Rates:
        scale = rng.choice((0.0, 0.5, 1.0, 1.0, 2.0))
        return cls(0.08 * scale, 0.05 * scale, 0.06 * scale, 0.04 * scale, 0.03 * scale,
                   0.08 * scale, 0.05 * scale, 0.03 * scale, 0.03 * scale)


class Network:
    """The server (real service, real storage, crash points) and the wire to it."""

    def __init__(self, seed: int, path: Path, rng: random.Random, steps: int) -> None:
        self.seed = seed
        self.steps = steps
        self.rng = rng
        self.path = path
        self.rates = Rates.draw(rng)
        self.reliable = False
        self.now = EPOCH
        self.point = CrashPoint()
        self.storage = CrashingStorage(path, self.point)
        self.service: SyncService | None = None
        self.db: sqlite3.Connection | None = None
        self.logs: dict[int, DeviceLog] = {}  # device id -> its log, for the server's acks
        self.held: list[Sent] = []
        self.admitted: dict[int, int] = {}  # session -> highest counter admitted since restart
        self.handled: dict[tuple[int, int], str] = {}  # (session, counter) -> how it ended
        self.stats = Stats(seeds=1)

    def fail(self, message: str) -> SimulationFailure:
        return SimulationFailure(self.seed, message, steps=self.steps)

    def clock(self) -> float:
        return float(self.now)

    async def close(self) -> None:
        await self.storage.close()
        if self.db is not None:
            self.db.close()

    # ------------------------------------------------------------ the server

    @property
    def server(self) -> SyncService:
        assert self.service is not None
        return self.service

    async def start(self) -> None:
        await self.storage.open()
        self.service = await SyncService.create(self.storage, clock=self.clock)
        if self.db is None:
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.execute("PRAGMA query_only = ON")

    async def restart(self, how: str) -> None:
        """The process died: lose memory, reopen the database, start a new service."""
        self.stats.crashes[how] += 1
        self.point.disarm()
        await self.storage.close()
        self.storage = CrashingStorage(self.path, self.point)
        self.admitted.clear()
        await self.start()

    def query(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        assert self.db is not None
        return list(self.db.execute(sql, args).fetchall())

    def high_water(self) -> int:
        value = self.query("SELECT max(seq) FROM ops")[0][0]
        return int(value) if isinstance(value, int) else 0

    def db_state(self) -> tuple[object, ...]:
        """Everything a refused request must leave as it was."""
        return tuple(self.query(sql) for sql in (
            "SELECT count(*), max(seq) FROM ops",
            "SELECT id, highest_counter FROM sessions ORDER BY id",
            "SELECT id, head FROM conversations ORDER BY id",
            "SELECT conv_id, user_id, role FROM members ORDER BY 1, 2",
            "SELECT conv_id, user_id, joined_seq, left_seq FROM spans ORDER BY 1, 2, 3",
            "SELECT id, highest_op_id FROM devices ORDER BY id"))

    async def deliver(self, sent: Sent, *, crash: bool) -> Reply | None:
        """The server handles one request; None if it died before its answer left."""
        stored = self.high_water()
        if crash:
            self.point.arm(self.rng.randrange(14))
        try:
            reply = await serve(self.server, sent.path, sent.raw)
        except SimulatedCrash:
            # Before the commit nothing is kept; after it the ops are stored, unacked.
            await self.restart("after commit" if self.high_water() > stored
                               else "mid-transaction")
            return None
        if reply.admitted:
            self.handled.setdefault((sent.session_id, sent.counter),
                                    "refused" if reply.error is not None else "done")
        if reply.admitted:
            self.admitted[sent.session_id] = max(self.admitted.get(sent.session_id, 0),
                                                 sent.counter)
        if reply.sync is not None:
            if len(reply.sync.acks) != len(sent.pushed):
                raise self.fail(f"{len(sent.pushed)} ops pushed, {len(reply.sync.acks)} acks")
            log = self.logs[sent.device_id]
            for (_, op), seq in zip(sent.pushed, reply.sync.acks, strict=True):
                log.server_acks.setdefault(op.op_id, []).append(seq)
        if crash and self.point.remaining is not None:
            await self.restart("after the answer")  # done, maybe committed, never sent
            return None
        return reply

    async def deliver_again(self, sent: Sent) -> None:
        """A copy that arrives after the original or after later requests: a replay."""
        durable = self.query("SELECT highest_counter FROM sessions WHERE id = ?",
                             sent.session_id)
        highest = max(int(durable[0][0]) if durable else 0, self.admitted.get(sent.session_id, 0))
        before = self.db_state()
        first = self.handled.get((sent.session_id, sent.counter))
        reply = await self.deliver(sent, crash=False)
        assert reply is not None
        if sent.counter <= highest:
            if reply.error is not ErrorCode.REPLAYED:
                raise self.fail(f"a replay of counter {sent.counter} (highest {highest}) was "
                                f"answered {reply.status} {reply.error}")
            if self.db_state() != before:
                raise self.fail("a refused replay changed the database")
            self.stats.replays_refused += 1
        else:
            if reply.error is ErrorCode.REPLAYED:
                raise self.fail(f"counter {sent.counter} refused as a replay; highest accepted "
                                f"is {highest}")
            if first is None:
                self.stats.late_accepted += 1
            else:
                self.stats.replays_after_restart += 1
                if first == "refused" and self.db_state() != before:
                    raise self.fail(f"a push refused the first time was applied when counter "
                                    f"{sent.counter} was replayed after a restart")

    async def deliver_damaged(self, sent: Sent, raw: bytes, how: str) -> None:
        before = self.db_state()
        reply = await serve(self.server, sent.path, raw)
        if reply.status < 400 or reply.status >= 500 or reply.admitted:
            raise self.fail(f"a {how} request was answered {reply.status}")
        if how == "truncated" and reply.error is not ErrorCode.MALFORMED:
            raise self.fail(f"a truncated request was refused as {reply.error}, not malformed")
        if self.db_state() != before:
            raise self.fail(f"a {how} request changed the database")

    # ------------------------------------------------------------ the network

    def chance(self, probability: float) -> bool:
        return not self.reliable and self.rng.random() < probability

    async def exchange(self, phone: Phone, path: str, body: bytes,
                       pushed: tuple[tuple[bytes, Op], ...] = ()) -> Received | None:
        """One request over the network; what came back, or None if nothing did."""
        session = phone.session
        session.counter += 1
        tag = request_tag(session.request_key, path=path, session_id=session.session_id,
                          counter=session.counter, body=body)
        raw = encode(AuthedRequest(session.session_id, session.counter, body, tag))
        sent = Sent(phone.device_id, session.session_id, session.counter, path, raw, pushed)
        self.stats.requests += 1
        rates = self.rates
        if self.chance(rates.drop):
            self.stats.fates["request dropped"] += 1
            return None
        if self.chance(rates.delay):
            self.stats.fates["request delayed"] += 1
            self.held.append(sent)
            return None
        if self.chance(rates.truncate):
            self.stats.fates["request truncated"] += 1
            await self.deliver_damaged(sent, raw[:self.rng.randrange(len(raw))], "truncated")
            return None
        if self.chance(rates.corrupt):
            self.stats.fates["request corrupted"] += 1
            await self.deliver_damaged(sent, self.flip(raw), "corrupted")
            return None
        reply = await self.deliver(sent, crash=self.chance(rates.crash))
        high_water = self.high_water()
        if self.chance(rates.duplicate):
            self.stats.fates["request duplicated"] += 1
            await self.deliver_again(sent)
        if reply is None:
            return None
        if self.chance(rates.response_drop):
            self.stats.fates["response dropped"] += 1
            return None
        answer = reply.body
        if self.chance(rates.response_truncate):
            self.stats.fates["response truncated"] += 1
            answer = answer[:self.rng.randrange(len(answer))]
        elif self.chance(rates.response_corrupt):
            self.stats.fates["response corrupted"] += 1
            answer = self.flip(answer)
        return Received(reply.status, answer, session.counter, high_water)

    def flip(self, raw: bytes) -> bytes:
        position = self.rng.randrange(len(raw))
        return raw[:position] + bytes([raw[position] ^ (1 << self.rng.randrange(8))]) + raw[
            position + 1:]

    def unseal(self, phone: Phone, path: str, got: Received) -> bytes | None:
        """The response body if its tag verifies (else the response counts as lost)."""
        try:
            reply = decode(got.body, AuthedResponse)
        except ProtocolError:
            return None
        expected = response_tag(phone.session.response_key, path=path,
                                session_id=phone.session.session_id, counter=got.counter,
                                body=reply.body)
        return reply.body if tags_equal(expected, reply.tag) else None

    def refusal(self, phone: Phone, path: str, got: Received) -> ErrorFrame | None:
        """A tagged error the phone may act on; None for a lost or untagged answer."""
        body = self.unseal(phone, path, got)
        if body is None:
            return None
        frame = decode(body, ErrorFrame)
        if frame.known_code is ErrorCode.UNAVAILABLE:
            return None
        if frame.known_code is ErrorCode.REPLAYED:
            raise self.fail(f"device {phone.device_id}'s fresh counter {got.counter} was "
                            "refused as a replay")
        return frame
