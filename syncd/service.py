"""The sync service: the protocol's rules applied to storage. No HTTP in here.

Theory of operation. Each method takes a decoded protocol frame and returns
one, or raises ``ProtocolError`` (the client's fault, mapped to 4xx by the
HTTP edge) or ``StorageUnavailable`` (503). A sync runs in two steps:

1. **Push**, when the request carries ops: every signature is checked first,
   outside any transaction; then one write transaction classifies each op as
   a replay or new (``protocol.classify_push``), authorises every new op
   against the roster as it stands at that point of the push (``push.py``), stores them,
   and records the device's highest op id and the request counter. Any
   refusal raises before the commit, so nothing of the push is kept. Acks are
   built only after the commit returned, i.e. after the fsync.
2. **Pull**, from one read snapshot: the high-water mark, then per lane the
   ops after the cursor that the device may see, packed by
   ``protocol.pack_response`` into the client's budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from protocol import (
    AuthedRequest,
    AuthedResponse,
    Candidate,
    ChainRequest,
    ChainResponse,
    ChallengeRequest,
    ChallengeResponse,
    DeviceEntry,
    DirectoryRequest,
    DirectoryResponse,
    ErrorCode,
    LaneBatch,
    ProtocolError,
    PullBlock,
    PulledOp,
    RegisterRequest,
    RegisterResponse,
    SessionRequest,
    SessionResponse,
    SyncRequest,
    SyncResponse,
    UserEntry,
    check_cursor,
    classify_push,
    derive_session_keys,
    encode,
    hkdf_sha256,
    loads,
    op_digest,
    op_signing_input,
    pack_response,
    register_signing_input,
    request_tag,
    response_frame_size,
    response_tag,
    session_grant_signing_input,
    session_seal_info,
    session_signing_input,
    tags_equal,
)
from protocol.auth import SESSION_SECRET_BYTES
from protocol.frames import LANES
from protocol.ops import Op, op_from_fields

from .keys import ServerIdentity, hpke_key_usable, seal_to_device, signature_valid
from .notify import Commit, LocalNotifier
from .push import PushApplier
from .storage import (
    InviteRefused,
    SessionRecord,
    Storage,
    StorageUnavailable,
)

log = logging.getLogger("syncd.service")

SMALLEST_PULLED_OP = 72  # bytes: a 64-byte signature plus the least framing
CHALLENGE_TTL = 60
SESSION_TTL = 30 * 24 * 3600
MAX_WAIT = 25  # seconds: under the idle timeouts of the NATs and proxies between 2G phones


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated device, for one request."""

    session: SessionRecord
    counter: int
    path: str

    @property
    def device_id(self) -> int:
        return self.session.device_id

    @property
    def user_id(self) -> int:
        return self.session.user_id


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    response: SyncResponse
    pushed: int
    pulled: int


def _refuse(code: ErrorCode, message: str, index: int | None = None) -> ProtocolError:
    return ProtocolError(code, message, op_index=index)


class SyncService:
    """Registration, sessions, authenticated sync and directory look-ups."""

    def __init__(self, storage: Storage, identity: ServerIdentity, *,
                 clock: Callable[[], float] = time.time,
                 session_ttl: int = SESSION_TTL, notifier: LocalNotifier | None = None,
                 max_wait: float = MAX_WAIT) -> None:
        self.storage = storage
        self.notifier = notifier or LocalNotifier()
        self.max_wait = max_wait
        self.identity = identity
        self.clock = clock
        self.session_ttl = session_ttl
        # Highest accepted counter per session. Authoritative while running; written to
        # the database with every push and by ``flush_counters`` for pull-only syncs.
        self._counters: dict[int, int] = {}
        self._dirty_counters: set[int] = set()
        self._challenge_key = hkdf_sha256(identity.seed, salt=b"",
                                          info=b"syncd/1 challenge key")

    @classmethod
    async def create(cls, storage: Storage, **kwargs: object) -> SyncService:
        identity = ServerIdentity(await storage.server_seed())
        return cls(storage, identity, **kwargs)  # type: ignore[arg-type]

    def now(self) -> int:
        return int(self.clock())

    # ------------------------------------------------------------ identity

    async def register(self, request: RegisterRequest) -> RegisterResponse:
        proof_input = register_signing_input(request.phone, request.code, request.sign_key,
                                             request.hpke_key)
        if not signature_valid(request.sign_key, request.proof, proof_input):
            raise _refuse(ErrorCode.BAD_SIGNATURE, "proof of the signing key does not verify")
        if not hpke_key_usable(request.hpke_key):
            raise _refuse(ErrorCode.BAD_FRAME, "the HPKE key is not a usable X25519 key")
        code_hash = hashlib.sha256(request.code.encode()).digest()
        try:
            user_id, device_id = await self.storage.register(
                code_hash, request.phone, request.sign_key, request.hpke_key, self.now())
        except InviteRefused as exc:
            raise _refuse(ErrorCode.ENROLMENT_REFUSED, "enrolment code refused") from exc
        return RegisterResponse(user_id, device_id, self.identity.public_key)

    def _challenge_tag(self, device_id: int, expires_at: bytes, salt: bytes) -> bytes:
        message = device_id.to_bytes(8, "big") + expires_at + salt
        return hmac.new(self._challenge_key, message, hashlib.sha256).digest()[:8]

    async def challenge(self, request: ChallengeRequest) -> ChallengeResponse:
        """A stateless challenge: expiry, salt and a MAC under a key only this server has.

        Asking for one writes nothing, whoever asks and for whichever device id,
        so challenges cannot flood the database or evict a device's challenge.
        """
        expires_at = (self.now() + CHALLENGE_TTL).to_bytes(4, "big")
        salt = os.urandom(4)
        tag = self._challenge_tag(request.device_id, expires_at, salt)
        return ChallengeResponse(expires_at + salt + tag)

    async def session(self, request: SessionRequest) -> SessionResponse:
        stamp, salt, tag = request.nonce[:4], request.nonce[4:8], request.nonce[8:]
        issued = hmac.compare_digest(tag, self._challenge_tag(request.device_id, stamp, salt))
        fresh = int.from_bytes(stamp, "big") >= self.now()
        device = await self.storage.device(request.device_id)
        signed = session_signing_input(request.device_id, request.nonce)
        if (not issued or not fresh or device is None
                or not signature_valid(device.sign_key, request.signature, signed)):
            raise _refuse(ErrorCode.UNAUTHENTICATED, "challenge answer refused")
        # Single use, recorded only once a real device answered it.
        if not await self.storage.use_challenge(request.nonce, int.from_bytes(stamp, "big"),
                                                self.now()):
            raise _refuse(ErrorCode.UNAUTHENTICATED, "challenge answer refused")
        if device.revoked:  # told only to the holder of the device's key
            raise _refuse(ErrorCode.DEVICE_REVOKED, "this device was revoked")
        secret = os.urandom(SESSION_SECRET_BYTES)
        keys = derive_session_keys(secret)
        now = self.now()
        expires_at = now + self.session_ttl
        session_id = await self.storage.create_session(
            device.device_id, keys.request_key, keys.response_key, now, expires_at)
        sealed = seal_to_device(device.hpke_key, secret,
                                session_seal_info(device.device_id, session_id, expires_at))
        grant = session_grant_signing_input(device.device_id, request.nonce, session_id,
                                            expires_at, sealed)
        return SessionResponse(session_id, expires_at, sealed, self.identity.sign(grant))

    # ------------------------------------------------------------ authentication

    async def authenticate(self, path: str, request: AuthedRequest) -> Caller:
        """Check the session and the tag (SPEC.md section 6, steps 1-2)."""
        session = await self.storage.session(request.session_id)
        if session is None:
            raise _refuse(ErrorCode.UNAUTHENTICATED, "unknown session or bad tag")
        expected = request_tag(session.request_key, path=path, session_id=session.session_id,
                               counter=request.counter, body=request.body)
        if not tags_equal(expected, request.tag):
            raise _refuse(ErrorCode.UNAUTHENTICATED, "unknown session or bad tag")
        return Caller(session, request.counter, path)

    async def admit(self, caller: Caller) -> None:
        """Steps 3-4: revocation, expiry, replay; consumes the counter. Refusals from here
        on are answered tagged, since the caller proved it holds the session key.

        One process (SQLite): the counters in this process's memory are authoritative,
        persisted with every push and every few seconds for pulls. Replicas on a shared
        database: each request claims its counter in the database, so a request replayed
        to another replica is refused as surely as to this one."""
        session = caller.session
        if session.revoked:
            raise _refuse(ErrorCode.DEVICE_REVOKED, "this device was revoked")
        if session.expires_at <= self.now():
            raise _refuse(ErrorCode.SESSION_EXPIRED, "session expired")
        if self.storage.shared:
            if not await self.storage.claim_counter(session.session_id, caller.counter):
                if await self.storage.session(session.session_id) is None:  # revoked meanwhile
                    raise _refuse(ErrorCode.DEVICE_REVOKED, "this device was revoked")
                raise _refuse(ErrorCode.REPLAYED, "counter already used")
            return
        highest = max(session.highest_counter, self._counters.get(session.session_id, 0))
        if caller.counter <= highest:
            raise _refuse(ErrorCode.REPLAYED, "counter already used")
        # No await between the check and the update: concurrent requests cannot both pass.
        self._counters[session.session_id] = caller.counter
        self._dirty_counters.add(session.session_id)

    def seal(self, caller: Caller, body: bytes) -> AuthedResponse:
        tag = response_tag(caller.session.response_key, path=caller.path,
                           session_id=caller.session.session_id, counter=caller.counter, body=body)
        return AuthedResponse(body, tag)

    async def flush_counters(self) -> None:
        """Persist counters of sessions that only pulled since the last flush."""
        if not self._dirty_counters:
            return
        dirty, self._dirty_counters = self._dirty_counters, set()
        try:
            async with self.storage.transaction() as tx:
                await tx.set_counters({s: self._counters[s] for s in dirty})
        except BaseException:
            self._dirty_counters |= dirty  # not written: try again next time
            raise

    # ------------------------------------------------------------ directory

    async def directory(self, caller: Caller, request: DirectoryRequest) -> DirectoryResponse:
        owners = [device.user_id for device_id in request.device_ids
                  if (device := await self.storage.device(device_id)) is not None]
        users = await self.storage.lookup(request.phones, (*request.user_ids, *owners))
        return DirectoryResponse(tuple(
            UserEntry(user.user_id, user.phone, tuple(
                DeviceEntry(d.device_id, d.sign_key, d.hpke_key, d.revoked)
                for d in user.devices))
            for user in users))

    # ------------------------------------------------------------ sync

    async def sync(self, caller: Caller, request: SyncRequest,
                   idle: Callable[[], AbstractContextManager[object]] = nullcontext
                   ) -> SyncOutcome:
        """Push, then pull; with ``wait`` and nothing to push or deliver, hold the request
        until an op this device may see is committed (on any replica) or the wait ends.
        ``idle`` brackets the waiting, during which the request holds no connection."""
        acks: tuple[int, ...] = ()
        if request.push:
            acks = await self._push(caller, request)
        wait = min(float(request.wait_seconds), self.max_wait)
        if request.push or wait <= 0:
            response = await self._pull(caller, request, acks)
            return SyncOutcome(response, len(acks), response.op_count)
        # Subscribe before the pull, so no commit slips between the two; one wait per
        # session, so a phone that retries does not stack up waits.
        with self.notifier.subscribe(caller.session.session_id) as sub:
            response = await self._pull(caller, request, acks)
            if response.op_count or response.more:
                return SyncOutcome(response, 0, response.op_count)
            async with self.storage.snapshot() as snap:
                convs = await snap.conversations_of(caller.user_id)
            sub.narrow(convs, caller.user_id)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait
            while True:
                with idle():  # counted as waiting, not in flight, only while it waits
                    woke = await sub.wait(deadline - loop.time())
                if sub.ended:  # shutting down, or a newer wait took over: answer now
                    break
                # Woken, or at the end of the wait (which also covers a lost wake-up):
                # look again, for a device that may still sync.
                await self._still_admitted(caller)
                try:
                    response = await self._pull(caller, request, acks)
                except StorageUnavailable:
                    break  # what we had is a correct answer; better than a 503 now
                if response.op_count or response.more or not woke:
                    break
        return SyncOutcome(response, 0, response.op_count)

    async def _still_admitted(self, caller: Caller) -> None:
        """A device revoked, or a session that expired, while its request waited gets
        nothing committed since: the refusal it would get if it asked now."""
        session = await self.storage.session(caller.session.session_id)
        if session is None or session.revoked:
            raise _refuse(ErrorCode.DEVICE_REVOKED, "this device was revoked")
        if session.expires_at <= self.now():
            raise _refuse(ErrorCode.SESSION_EXPIRED, "session expired")

    async def _push(self, caller: Caller, request: SyncRequest) -> tuple[int, ...]:
        pushed: list[tuple[bytes, Op]] = [(block.conv, op) for block in request.push
                                         for op in block.ops]
        for index, (conv, op) in enumerate(pushed):
            signed = op_signing_input(conv, caller.device_id, op)
            if not signature_valid(caller.session.sign_key, op.signature, signed):
                raise _refuse(ErrorCode.BAD_SIGNATURE, "op signature does not verify", index)
        digests = [op_digest(conv, op) for conv, op in pushed]
        try:
            return await self._store_push(caller, request, pushed, digests)
        except ProtocolError:
            # The refusal is final: were the counter left to the lazy flush, a replay after
            # a restart could store what the device was told to drop (once, say, its user
            # was added back). So a refused push's counter is made durable too (if the
            # database cannot take it now, the refusal still goes out; the flush retries).
            with contextlib.suppress(StorageUnavailable):
                async with self.storage.transaction() as tx:
                    await tx.set_counter(caller.session.session_id, caller.counter)
            raise

    async def _store_push(self, caller: Caller, request: SyncRequest,
                          pushed: list[tuple[bytes, Op]], digests: list[bytes]
                          ) -> tuple[int, ...]:
        async with self.storage.transaction() as tx:
            check_cursor(request.cursor, await tx.high_water())
            stored = await tx.ops_by_id(caller.device_id, [op.op_id for _, op in pushed])
            highest = await tx.highest_op_id(caller.device_id)
            earlier = classify_push([(op.op_id, digest) for (_, op), digest
                                     in zip(pushed, digests, strict=True)], stored, highest)
            apply = PushApplier(tx, device_id=caller.device_id, user_id=caller.user_id)
            acks = []
            for index, ((conv, op), digest, seq) in enumerate(
                    zip(pushed, digests, earlier, strict=True)):
                if seq is None:
                    try:
                        seq = await apply.op(conv, op, digest)
                    except ProtocolError as exc:
                        exc.op_index = index
                        raise
                acks.append(seq)
            new_ids = [op.op_id for (_, op), seq in zip(pushed, earlier, strict=True)
                       if seq is None]
            if new_ids:
                await tx.set_highest_op_id(caller.device_id, max(new_ids))
            await tx.set_counter(caller.session.session_id, caller.counter)
        if new_ids:  # committed: wake the devices waiting for these conversations
            await self.notifier.publish(Commit(
                frozenset(conv for (conv, _), seq in zip(pushed, earlier, strict=True)
                          if seq is None), frozenset(apply.moved_users)))
        return tuple(acks)

    async def _pull(self, caller: Caller, request: SyncRequest,
                    acks: tuple[int, ...]) -> SyncResponse:
        budget = request.effective_budget
        limit = budget // SMALLEST_PULLED_OP + 1
        async with self.storage.snapshot() as snap:
            high_water = await snap.high_water()
            check_cursor(request.cursor, high_water)
            lanes = []
            read = 0
            for lane in LANES:
                if request.cursor[lane] >= high_water:  # nothing committed since: no query
                    lanes.append(LaneBatch((), complete=True))
                    continue
                if read > budget:  # earlier lanes already fill the budget: read no further
                    lanes.append(LaneBatch((), complete=False))
                    continue
                rows = await snap.pull(user_id=caller.user_id, device_id=caller.device_id,
                                       lane=lane, after=request.cursor[lane], upto=high_water,
                                       limit=limit)
                read += sum(len(row.fields) for row in rows)
                candidates = [
                    Candidate(row.conv, PulledOp(row.seq, row.device_id, op_from_fields(
                        row.op_type, row.op_id, loads(row.fields), pulled=True)))
                    for row in rows]
                lanes.append(LaneBatch(candidates, complete=len(rows) < limit))
        response = pack_response(acks=acks, lanes=lanes, cursor=request.cursor,
                                 high_water=high_water, budget=budget)
        return response

    async def chain(self, caller: Caller, request: ChainRequest) -> ChainResponse:
        """A conversation's membership chain above ``after``, for a member, within the budget."""
        budget = request.effective_budget
        limit = budget // SMALLEST_PULLED_OP + 1
        async with self.storage.snapshot() as snap:
            rows = await snap.chain(user_id=caller.user_id, conv=request.conv,
                                    after=request.after, limit=limit)
        if rows is None:
            raise _refuse(ErrorCode.NOT_FOUND, "no such conversation")
        ops: list[PulledOp] = []
        answer = ChainResponse()
        for row in rows:
            pulled = PulledOp(row.seq, row.device_id, op_from_fields(
                row.op_type, row.op_id, loads(row.fields), pulled=True))
            candidate = ChainResponse(PullBlock(request.conv, (*ops, pulled)), more=True)
            if ops and response_frame_size(len(encode(candidate))) > budget:
                return answer
            ops.append(pulled)
            answer = candidate
        return ChainResponse(answer.block, more=len(rows) == limit)
