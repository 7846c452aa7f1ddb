"""A seeded simulation of many phones syncing with the real service over a bad network.

Theory of operation. One ``random.Random(seed)`` decides everything: which
phone acts, what it does (post, create a conversation, change a roster, hand
out a key envelope, sync, fetch a chain, register a new device, open a new
session), what the network does to each request (deliver, drop, duplicate,
delay past later requests, truncate, corrupt) and to each response (deliver,
drop, truncate, corrupt), and when the server crashes: mid-transaction (the
transaction rolls back), after it answered but before the answer left, or
between requests. A crash closes the storage, reopens the same SQLite file
and starts a new ``SyncService``, so every in-memory counter is lost.

Requests run one at a time to completion on the real service and storage,
through the real wire encoding (``network.Network``), so a run is a pure
function of its seed: the HPKE and challenge randomness of session set-up
never steers it. After the chaos, the network turns reliable and every phone
syncs until nothing moves; then ``checker.check`` judges the whole run.

Run many seeds from a shell::

    python -m tests.simulation.sim --seeds 2000
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from clients.reference.connection import Session
from clients.reference.crypto import DeviceKeys
from protocol import (
    AddMembers,
    ChainRequest,
    ChainResponse,
    ChallengeRequest,
    ContentOp,
    CreateConversation,
    EnvelopeOp,
    ErrorCode,
    ErrorFrame,
    Member,
    MembershipOp,
    OpType,
    RegisterRequest,
    RemoveMembers,
    Role,
    SessionRequest,
    SyncRequest,
    SyncResponse,
    UnknownOp,
    decode,
    derive_session_keys,
    encode,
    op_digest,
    register_signing_input,
    session_seal_info,
    session_signing_input,
)
from protocol.ops import Op
from syncd.service import SyncService

from .checker import ChainEvent, Delivered, DeviceLog, Outcome, PullEvent, Row, check
from .harness import CHAIN_PATH, SYNC_PATH, SimulatedCrash
from .network import DEFAULT_STEPS, Network, SimulationFailure, Stats
from .phone import PLACEHOLDER, Phone

DROPPED_ON_REFUSAL = {ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND, ErrorCode.ROSTER_CONFLICT,
                      ErrorCode.BAD_FRAME, ErrorCode.CONVERSATION_EXISTS}
SETTLE_ROUNDS = 50
SYNCS_PER_ROUND = 200
CHAIN_PAGES = 100


@dataclass(frozen=True, slots=True)
class SimConfig:
    """The size of a run. Fault rates are drawn per seed (calm runs and stormy ones)."""

    steps: int = DEFAULT_STEPS
    users: tuple[int, int] = (3, 5)
    max_devices: int = 12
    max_push: int = 6


class Simulation:
    """Phones, what they do, and the run from the first registration to quiescence."""

    def __init__(self, seed: int, path: Path, config: SimConfig) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.config = config
        self.net = Network(seed, path, self.rng, config.steps)
        self.stats = self.net.stats
        self.phones: list[Phone] = []
        self.users: dict[int, str] = {}  # user id -> phone number
        self.invites = 0

    def fail(self, message: str) -> SimulationFailure:
        return self.net.fail(message)

    @property
    def server(self) -> SyncService:
        return self.net.server

    # ------------------------------------------------------------ phones

    async def register(self, user_id: int | None) -> Phone:
        self.invites += 1
        number = self.users[user_id] if user_id else f"+2547{len(self.users) + 1:08d}"
        code = f"code-{self.invites}"
        await self.net.storage.create_invite(number, hashlib.sha256(code.encode()).digest(),
                                         self.net.now, self.net.now + 3600)
        keys = DeviceKeys(self.rng.randbytes(32), self.rng.randbytes(32))
        proof = keys.sign(register_signing_input(number, code, keys.sign_public,
                                                 keys.hpke_public))
        joined = self.net.high_water()
        answer = await self.server.register(RegisterRequest(number, code, keys.sign_public,
                                                            keys.hpke_public, proof))
        self.users[answer.user_id] = number
        log = DeviceLog(answer.device_id, answer.user_id, joined)
        phone = Phone(answer.device_id, answer.user_id, keys,
                      await self.open_session(answer.device_id, keys), log)
        self.phones.append(phone)
        self.net.logs[phone.device_id] = log
        self.stats.devices += 1
        return phone

    async def open_session(self, device_id: int, keys: DeviceKeys) -> Session:
        challenge = await self.server.challenge(ChallengeRequest(device_id))
        signature = keys.sign(session_signing_input(device_id, challenge.nonce))
        grant = await self.server.session(SessionRequest(device_id, challenge.nonce, signature))
        secret = keys.open_sealed(grant.sealed, session_seal_info(device_id, grant.session_id,
                                                                  grant.expires_at))
        derived = derive_session_keys(secret)
        return Session(grant.session_id, grant.expires_at, derived.request_key,
                       derived.response_key)

    def member_convs(self, phone: Phone, *, admin: bool = False) -> list[bytes]:
        convs = []
        for conv in sorted(phone.chains):
            role = phone.roster(conv).get(phone.user_id)
            if role is not None and (role is Role.ADMIN or not admin):
                convs.append(conv)
        return convs

    def post(self, phone: Phone) -> None:
        convs = self.member_convs(phone)
        if self.rng.random() < 0.05:
            convs = sorted(phone.chains)  # a phone may post where it was removed
        if not convs:
            return
        op_type = self.rng.choices((OpType.CHAT, OpType.ANNOUNCE, OpType.BULK), (70, 15, 15))[0]
        payload = self.rng.randbytes(self.rng.randint(8, 160))
        phone.queue(self.rng.choice(convs),
                    ContentOp(op_type, phone.take_op_id(), payload, PLACEHOLDER))
        self.stats.ops_created += 1

    def create(self, phone: Phone) -> None:
        others = [user for user in self.users if user != phone.user_id]
        chosen = self.rng.sample(others, k=self.rng.randint(0, min(3, len(others))))
        members = [Member(phone.user_id, Role.ADMIN), *(
            Member(user, Role.ADMIN if self.rng.random() < 0.3 else Role.MEMBER)
            for user in chosen)]
        change = CreateConversation(tuple(members), broadcast=self.rng.random() < 0.15)
        phone.queue(self.rng.randbytes(8), MembershipOp(phone.take_op_id(), None, change,
                                                        PLACEHOLDER))
        self.stats.ops_created += 1
        self.stats.conversations += 1

    def change(self, phone: Phone) -> None:
        convs = [conv for conv in self.member_convs(phone)
                 if conv not in phone.pending_heads and not phone.chain_broken(conv)]
        if not convs:
            return
        conv = self.rng.choice(convs)
        roster = phone.roster(conv)
        others = sorted(user for user in roster if user != phone.user_id)
        outsiders = sorted(user for user in self.users if user not in roster)
        kind = self.rng.choice(("add", "add", "remove", "promote", "leave"))
        change: AddMembers | RemoveMembers
        if kind == "add" and outsiders:
            role = Role.ADMIN if self.rng.random() < 0.2 else Role.MEMBER
            change = AddMembers((Member(self.rng.choice(outsiders), role),))
        elif kind == "remove" and others:
            change = RemoveMembers((self.rng.choice(others),))
        elif kind == "promote" and others:
            change = AddMembers((Member(self.rng.choice(others), Role.ADMIN),))
        elif kind == "leave":
            change = RemoveMembers((phone.user_id,))
        else:
            return
        phone.queue(conv, MembershipOp(phone.take_op_id(), phone.head(conv), change,
                                       PLACEHOLDER))
        self.stats.ops_created += 1

    def envelope(self, phone: Phone) -> None:
        convs = self.member_convs(phone, admin=True)
        if not convs:
            return
        conv = self.rng.choice(convs)
        targets = [other.device_id for other in self.phones
                   if other.user_id in phone.roster(conv) and other is not phone]
        if not targets:
            return
        sealed = self.rng.randbytes(84)
        phone.queue(conv, EnvelopeOp(phone.take_op_id(), self.rng.choice(targets), sealed,
                                     PLACEHOLDER))
        self.stats.ops_created += 1

    async def sync(self, phone: Phone) -> SyncResponse | None:
        """Push the head of the outbox and pull; the response, or None if it was lost."""
        pushed = tuple(phone.outbox[:self.rng.randint(1, self.config.max_push)])
        least = 128 + 9 * len(pushed)
        budget = self.rng.choice((None, least + 100, least + 600, 2000, 6000))
        request = SyncRequest(push=phone.push_blocks(list(pushed)), cursor=phone.cursor,
                              budget=budget)
        for _, op in pushed:
            phone.push_counts[op.op_id] = phone.push_counts.get(op.op_id, 0) + 1
        self.stats.ops_pushed += len(pushed)
        got = await self.net.exchange(phone, SYNC_PATH, encode(request), pushed)
        if got is None:
            return None
        if got.status != 200:
            frame = self.net.refusal(phone, SYNC_PATH, got)
            if frame is not None:
                self.refused(phone, pushed, frame)
            return None
        body = self.net.unseal(phone, SYNC_PATH, got)
        if body is None:
            return None
        response = decode(body, SyncResponse)
        for (conv, op), seq in zip(pushed, response.acks, strict=True):
            phone.acked(conv, op, seq)
            self.stats.ops_acked += 1
            self.stats.ops_retried += phone.push_counts[op.op_id] > 1
        delivered = []
        for block in response.blocks:
            for pulled in block.ops:
                received = pulled.op
                if isinstance(received, UnknownOp):
                    raise self.fail(f"the server sent an op of unknown type {received.op_type}")
                digest = op_digest(block.conv, phone.push_form(received))
                delivered.append(Delivered(pulled.seq, pulled.from_device, received.op_id,
                                           digest))
                if isinstance(received, MembershipOp):
                    phone.learn(block.conv, pulled.seq, pulled.from_device, received)
        self.stats.ops_pulled += len(delivered)
        phone.log.pulls.append(PullEvent(got.high_water, phone.cursor.lanes,
                                         response.cursor.lanes, tuple(delivered)))
        phone.cursor = response.cursor
        return response

    def refused(self, phone: Phone, pushed: tuple[tuple[bytes, Op], ...],
                frame: ErrorFrame) -> None:
        code, index = frame.known_code, frame.op_index
        if code not in DROPPED_ON_REFUSAL or index is None or index >= len(pushed):
            raise self.fail(f"device {phone.device_id}'s sync was refused: {code} "
                            f"{frame.message!r} (op index {index})")
        phone.refused(*pushed[index])
        self.stats.ops_refused += 1

    async def fetch_chain(self, phone: Phone, conv: bytes) -> bool:
        """Read a conversation's whole membership chain; False if the network lost it."""
        after = 0
        for _ in range(CHAIN_PAGES):
            request = ChainRequest(conv, after, self.rng.choice((None, 300)))
            got = await self.net.exchange(phone, CHAIN_PATH, encode(request))
            if got is None:
                return False
            if got.status != 200:
                frame = self.net.refusal(phone, CHAIN_PATH, got)
                if frame is not None:
                    raise self.fail(f"device {phone.device_id}'s chain request was refused: "
                                    f"{frame.known_code} {frame.message!r}")
                return False
            body = self.net.unseal(phone, CHAIN_PATH, got)
            if body is None:
                return False
            answer = decode(body, ChainResponse)
            ops = answer.block.ops if answer.block is not None else ()
            if answer.block is not None and answer.block.conv != conv:
                raise self.fail("a chain response for another conversation")
            delivered = []
            for pulled in ops:
                if not isinstance(pulled.op, MembershipOp):
                    raise self.fail(f"a chain response carried a {pulled.op.op_type} op")
                phone.learn(conv, pulled.seq, pulled.from_device, pulled.op)
                delivered.append(Delivered(pulled.seq, pulled.from_device, pulled.op.op_id,
                                           op_digest(conv, pulled.op)))
            phone.log.chains.append(ChainEvent(got.high_water, conv, tuple(delivered)))
            self.stats.chain_fetches += 1
            if not answer.more:
                return True
            if not ops:
                raise self.fail("a chain response says more but carries nothing")
            after = ops[-1].seq
        raise self.fail(f"the chain of {conv.hex()} never ended")

    async def repair_chains(self, phone: Phone) -> bool:
        """Fetch every chain with a hole in it; False if one fetch was lost."""
        for conv in sorted(phone.chains):
            if phone.chain_broken(conv) and not await self.fetch_chain(phone, conv):
                return False
        return True

    # ------------------------------------------------------------ the run

    async def step(self) -> None:
        rng = self.rng
        self.net.now += rng.randint(1, 3)
        phone = rng.choice(self.phones)
        action = rng.choices(
            ("sync", "post", "create", "change", "envelope", "chain", "register", "session",
             "late", "flush", "crash"),
            (34, 26, 4, 9, 5, 3, 2, 2, 6, 3, 2 if self.net.rates.crash else 0))[0]
        if action == "sync":
            await self.sync(phone)
            await self.repair_chains(phone)
        elif action == "post":
            self.post(phone)
        elif action == "create":
            self.create(phone)
        elif action == "change":
            self.change(phone)
        elif action == "envelope":
            self.envelope(phone)
        elif action == "chain" and phone.chains:
            await self.fetch_chain(phone, rng.choice(sorted(phone.chains)))
        elif action == "register" and len(self.phones) < self.config.max_devices:
            existing = rng.random() < 0.6
            await self.register(rng.choice(sorted(self.users)) if existing else None)
        elif action == "session":
            phone.session = await self.open_session(phone.device_id, phone.keys)
        elif action == "late" and self.net.held:
            await self.net.deliver_again(self.net.held.pop(rng.randrange(len(self.net.held))))
        elif action == "flush":
            if self.net.chance(self.net.rates.crash * 5):
                self.net.point.arm(0)
            try:
                await self.server.flush_counters()
            except SimulatedCrash:
                await self.net.restart("mid-flush")
            self.net.point.disarm()  # nothing to flush: the crash did not happen
        elif action == "crash":
            await self.net.restart("idle")

    async def settle(self) -> None:
        """Reliable network, no crashes: sync everything until nothing moves."""
        self.net.reliable = True
        while self.net.held:
            await self.net.deliver_again(self.net.held.pop(0))
        for _ in range(SETTLE_ROUNDS):
            moved = False
            for phone in self.phones:
                for _ in range(SYNCS_PER_ROUND):
                    pending = len(phone.outbox)
                    response = await self.sync(phone)
                    if not await self.repair_chains(phone):
                        raise self.fail("a chain fetch failed on a reliable network")
                    if response is None:
                        if len(phone.outbox) == pending:
                            raise self.fail(f"device {phone.device_id}'s sync got no answer "
                                            "on a reliable network")
                        moved = True  # an op was refused and dropped
                        continue
                    moved = moved or bool(response.acks or response.blocks)
                    if not phone.outbox and not response.more:
                        break
                else:
                    raise self.fail(f"device {phone.device_id} never caught up")
            if not moved:
                return
        raise self.fail("the phones never settled")

    async def run(self) -> tuple[Outcome, Stats]:
        try:
            await self.net.start()
            for _ in range(self.rng.randint(*self.config.users)):
                user = await self.register(None)
                if self.rng.random() < 0.4:
                    await self.register(user.user_id)
            for _ in range(2):
                self.create(self.rng.choice(self.phones))
            for _ in range(self.config.steps):
                await self.step()
            self.stats.steps += self.config.steps
            await self.settle()
            for phone in self.phones:
                phone.log.final_cursor = phone.cursor.lanes
            if self.net.query("PRAGMA integrity_check") != [("ok",)]:
                raise self.fail("the database is corrupt")
            rows = [Row(seq, bytes(conv), op_type, device, op_id, to, bytes(fields), bytes(digest))
                    for seq, conv, op_type, device, op_id, to, fields, digest in self.net.query(
                        "SELECT o.seq, c.conv, o.op_type, o.device_id, o.op_id, o.to_device,"
                        " o.fields, o.digest FROM ops o JOIN conversations c ON c.id = o.conv_id"
                        " ORDER BY o.seq")]
            self.stats.stored_ops += len(rows)
        finally:
            await self.net.close()
        return Outcome(self.seed, {p.device_id: p.log for p in self.phones}, rows), self.stats


def simulate(seed: int, directory: Path, config: SimConfig | None = None
             ) -> tuple[Outcome, Stats]:
    """Run one seed to quiescence on a database in ``directory``; no invariant checked."""
    config = config or SimConfig()
    directory.mkdir(parents=True, exist_ok=True)
    simulation = Simulation(seed, directory / f"sim-{seed}.db", config)
    try:
        return asyncio.run(simulation.run())
    except SimulationFailure:
        raise
    except Exception as exc:  # a 500, or a frame that does not decode: a bug either way
        raise SimulationFailure(seed, f"{type(exc).__name__}: {exc}",
                                steps=config.steps) from exc


def run_seed(seed: int, directory: Path, config: SimConfig | None = None) -> Stats:
    """Run one seed and check every invariant; raises ``SimulationFailure``."""
    config = config or SimConfig()
    outcome, stats = simulate(seed, directory, config)
    problems = check(outcome)
    if problems:
        raise SimulationFailure(seed, "\n  ".join(["invariants broken:", *problems]),
                                steps=config.steps)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--steps", type=int, default=SimConfig().steps)
    args = parser.parse_args(argv)
    total = Stats(seeds=0)
    failures = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        for seed in range(args.first, args.first + args.seeds):
            try:
                total.add(run_seed(seed, Path(directory), SimConfig(steps=args.steps)))
            except SimulationFailure as failure:
                failures.append(seed)
                print(failure, file=sys.stderr)
            for leftover in Path(directory).iterdir():
                leftover.unlink()
    report = {**total.as_dict(), "failed_seeds": failures,
              "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(report, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
