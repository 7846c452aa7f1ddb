"""The sync loop, and applying what a sync brings, in one transaction per round trip.

Theory of operation. Each round trip pushes the oldest queued ops (exact
bytes, op id order) with the stored cursor, and gets acks plus a batch of
ops. Applying the answer is one local transaction: the acked ops leave the
outbox, pulled ops are verified and applied, and the new cursor is stored.
If the process dies before that commit, the next run pushes the same bytes
(the server answers the same acks) and pulls from the same cursor (ops
already applied are skipped by (author device, op id)): nothing is lost and
nothing applied twice.

Every pulled op is checked before it counts: its signature against the
author device's pinned key; a membership change against the chain and the
roster it applies to; content and envelopes against the roster at their seq
(author a member, announcements and broadcast posts by admins); ciphertext
against its AEAD tag. Anything that fails is recorded as a problem and never
shown.
"""

from __future__ import annotations

import dataclasses
import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from protocol import (
    ContentOp,
    CreateConversation,
    EnvelopeOp,
    ErrorCode,
    MembershipOp,
    OpType,
    ProtocolError,
    PulledOp,
    PushBlock,
    Role,
    Roster,
    SyncRequest,
    SyncResponse,
    decode,
    dumps,
    encode,
    loads,
    op_signing_input,
    roster_hash,
)
from protocol.e2e import FORM_KINDS, MessageBody, SealedPayload
from protocol.forms import PayloadKind, parse_form_payload
from protocol.limits import MAX_RESPONSE_BYTES
from protocol.membership import may_post
from protocol.ops import Op, push_op_from_value

from .connection import ResponseForged, ServerError
from .crypto import CryptoError, decrypt_payload, open_key_envelope, signature_valid
from .store import PENDING_SEQ

KNOWN_FORM_KINDS = {int(kind) for kind in PayloadKind}
MAX_OPS_PER_ROUND = 64
MAX_FIRST_EPOCH = 2**32  # the first key a device gets may be of any sane epoch
PARKED = "parked"
MAX_PUSH_BYTES = 192 * 1024
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 8.0


class SyncIncomplete(Exception):
    """The link did not let the sync finish before the timeout."""

    def __init__(self, message: str, report: dict[str, int]) -> None:
        super().__init__(message)
        self.report = report


class SyncRefused(Exception):
    """The server refused in a way retrying cannot fix (e.g. the device was revoked)."""


@dataclasses.dataclass
class Queued:
    op_id: int
    conv: bytes
    op: Op


class SyncEngine:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.store = client.store
        self.report = {"round_trips": 0, "pushed": 0, "pulled": 0, "bytes_up": 0,
                       "bytes_down": 0, "problems": 0}
        self.max_ops = MAX_OPS_PER_ROUND
        self.revoked_answers = 0
        self.new_keys: set[bytes] = set()

    # ------------------------------------------------------------ the loop

    def outbox(self) -> list[Queued]:
        queued: list[Queued] = []
        size = 0
        for op_id, conv, raw in self.store.db.execute(
                "SELECT op_id, conv, op FROM outbox ORDER BY op_id LIMIT ?",
                (self.max_ops,)):
            size += len(raw)
            if queued and size > MAX_PUSH_BYTES:
                break
            queued.append(Queued(op_id, bytes(conv), push_op_from_value(loads(raw))))
        return queued

    def run(self, *, budget: int, timeout: float,
            progress: Callable[[dict[str, int]], None] | None) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        backoff = FIRST_BACKOFF
        while True:
            if time.monotonic() > deadline:
                self.pause(deadline, 0)  # raises SyncIncomplete, saying how far it got
            queued = self.outbox()
            blocks: list[PushBlock] = []
            for item in queued:  # consecutive ops of one conversation share a block
                if blocks and blocks[-1].conv == item.conv:
                    blocks[-1] = PushBlock(item.conv, (*blocks[-1].ops, item.op))
                else:
                    blocks.append(PushBlock(item.conv, (item.op,)))
            request = SyncRequest(push=tuple(blocks), cursor=self.store.cursor,
                                  budget=max(budget, 128 + 9 * len(queued)))
            body = encode(request)
            try:
                reply = self.client.call("/v1/sync", body)
                response = decode(reply, SyncResponse, max_bytes=MAX_RESPONSE_BYTES)
                extra = self.resolve_chains(response)
                self.resolve_authors(response, extra)
            except ServerError as error:
                wait = self.on_refusal(error, queued)
                if wait is None:
                    continue
                backoff = self.pause(deadline, max(backoff, wait))
                continue
            except (httpx.HTTPError, ResponseForged, OSError, ProtocolError):
                backoff = self.pause(deadline, backoff)
                continue
            backoff = FIRST_BACKOFF
            self.report["round_trips"] += 1
            self.report["bytes_up"] += len(body)
            self.report["bytes_down"] += len(reply)
            self.apply(queued, response, extra)
            if progress is not None:
                progress(self.report)
            if not self.store.db.execute("SELECT 1 FROM outbox LIMIT 1").fetchone() \
                    and not response.more:
                return self.report

    def pause(self, deadline: float, backoff: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            left = self.store.db.execute("SELECT count(*) FROM outbox").fetchone()[0]
            raise SyncIncomplete(
                f"the link did not let the sync finish: {self.report['pushed']} ops sent, "
                f"{left} still queued, {self.report['pulled']} received; run sync again",
                self.report)
        time.sleep(min(remaining, backoff * random.uniform(0.5, 1.5)))
        return min(backoff * 2, MAX_BACKOFF)

    def on_refusal(self, error: ServerError, queued: list[Queued]) -> float | None:
        """What to do about a refused sync: None to retry now (after progress), else seconds
        to wait (through the backoff, which keeps to the deadline)."""
        code = error.code
        if error.status == 413:
            if self.max_ops == 1 and queued:
                self.drop(queued[0], "too large for this server")
                return None
            self.max_ops = max(1, self.max_ops // 2)  # smaller pushes
            return None
        if error.status == 401:
            if code is ErrorCode.DEVICE_REVOKED:
                self.revoked_answers += 1
                if error.authenticated:
                    raise SyncRefused("this device was revoked by the operator") from error
                if self.revoked_answers >= 3:  # said again and again, though unverified
                    raise SyncRefused("the server says this device was revoked (unverified); "
                                      "nothing was dropped") from error
            return 0.2  # a new session next round, never in a tight loop
        if not error.authenticated or error.status >= 500:
            # A plain error frame could be forged on the path: only ever retry.
            return float(min(error.frame.retry_after or 1, 60))
        if error.status in (429, 503):
            return float(min(error.frame.retry_after or 1, 300))
        if code is ErrorCode.CURSOR_AHEAD:
            self.store.put("cursor", [0, 0, 0, 0])
            return None
        if code in (ErrorCode.OP_CONFLICT, ErrorCode.OP_OUT_OF_ORDER):
            # Our op ids went backwards (a restored state.db?): sending more could reuse a
            # nonce. Stop; this home must be re-enrolled as a new device.
            raise SyncRefused("the server already holds other ops with these op ids: this "
                              "home's state is older than the server's; enrol it again as a new "
                              "device") from error
        index = error.frame.op_index
        if index is not None and 0 <= index < len(queued) and 400 <= error.status < 500:
            hint = ("another admin changed the members at the same time; run the command "
                    "again" if code is ErrorCode.ROSTER_CONFLICT else error.frame.message)
            self.drop(queued[index], hint)
            return None
        raise SyncRefused(f"the server refused the sync: {error.frame.message}") from error

    def drop(self, item: Queued, reason: str) -> None:
        """The server refused one queued op for good: take out the whole batch it was
        queued with (a removal with its new epoch's envelopes, say) and say so."""
        me = self.client.device_id
        with self.store.transaction() as db:
            (batch,) = db.execute("SELECT batch FROM outbox WHERE op_id = ?",
                                  (item.op_id,)).fetchone() or (item.op_id,)
            op_ids = [row[0] for row in db.execute(
                "SELECT op_id FROM outbox WHERE batch = ?", (batch,))] or [item.op_id]
            for op_id in op_ids:
                db.execute("DELETE FROM outbox WHERE op_id = ?", (op_id,))
                db.execute("DELETE FROM messages WHERE from_device = ? AND op_id = ?",
                           (me, op_id))
                db.execute("DELETE FROM form_ops WHERE from_device = ? AND op_id = ?",
                           (me, op_id))
                for table in ("rosters", "epoch_keys"):
                    db.execute(f"DELETE FROM {table} WHERE conv = ? AND seq = ?",
                               (item.conv, PENDING_SEQ + op_id))
            self.store.problem(db, f"the server refused our op: {reason}", conv=item.conv,
                               from_device=me, op_id=item.op_id)
        self.report["problems"] += 1

    def resolve_chains(self, response: SyncResponse) -> list[tuple[bytes, PulledOp]]:
        """Fetch the part of a membership chain we lack (we were just added to an existing
        conversation, or re-added after a removal), so every change can be verified."""
        extra: list[tuple[bytes, PulledOp]] = []
        fetched: set[bytes] = set()
        for block in response.blocks:
            for pulled in block.ops:
                op = pulled.op
                if not isinstance(op, MembershipOp) or op.prev is None or block.conv in fetched:
                    continue
                before = self.store.roster_row(block.conv, pulled.seq - 1)
                if before is not None and before[1] == op.prev:
                    continue
                after = self.store.db.execute(
                    "SELECT coalesce(max(seq), 0) FROM rosters WHERE conv = ? AND seq < ?",
                    (block.conv, PENDING_SEQ)).fetchone()[0]
                extra += [(block.conv, p) for p in self.client.chain(block.conv, after)]
                fetched.add(block.conv)
        return extra

    def resolve_authors(self, response: SyncResponse,
                        extra: list[tuple[bytes, PulledOp]]) -> None:
        """Fetch the keys of authors we have not pinned yet (before applying anything)."""
        known = {row[0] for row in self.store.db.execute("SELECT device_id FROM devices")}
        authors = [p.from_device for b in response.blocks for p in b.ops]
        authors += [p.from_device for _, p in extra]
        unknown = sorted({a for a in authors if a and a not in known})
        named: set[int] = set()
        for _, pulled in [*extra, *((b.conv, p) for b in response.blocks for p in b.ops)]:
            if isinstance(pulled.op, MembershipOp):
                change = pulled.op.change
                named |= ({m.user_id for m in change.members} if hasattr(change, "members")
                          else set(getattr(change, "user_ids", ())))
        pinned = {row[0] for row in self.store.db.execute("SELECT DISTINCT user_id FROM devices")}
        missing = sorted(named - pinned)
        for start in range(0, len(missing), 64):  # so every client names members alike
            self.client.lookup(user_ids=tuple(missing[start : start + 64]))
        for start in range(0, len(unknown), 64):
            self.client.lookup(device_ids=tuple(unknown[start : start + 64]))

    # ------------------------------------------------------------ applying

    def apply(self, queued: list[Queued], response: SyncResponse,
              extra: Sequence[tuple[bytes, PulledOp]] = ()) -> None:
        me = self.client.device_id
        pulled = [*extra, *((block.conv, p) for block in response.blocks for p in block.ops)]
        control = sorted((x for x in pulled if x[1].op.op_type in (0, 1)), key=lambda x: x[1].seq)
        content = sorted((x for x in pulled if x[1].op.op_type not in (0, 1)),
                         key=lambda x: x[1].seq)
        with self.store.transaction() as db:
            for item, seq in zip(queued, response.acks, strict=False):
                db.execute("DELETE FROM outbox WHERE op_id = ?", (item.op_id,))
                db.execute("INSERT OR IGNORE INTO applied VALUES (?, ?, ?)", (me, item.op_id, seq))
                db.execute("UPDATE messages SET seq = ? WHERE from_device = ? AND op_id = ?",
                           (seq, me, item.op_id))
                for table in ("rosters", "epoch_keys"):
                    db.execute(f"UPDATE {table} SET seq = ? WHERE conv = ? AND seq = ?",
                               (seq, item.conv, PENDING_SEQ + item.op_id))
                db.execute("UPDATE form_ops SET seq = ? WHERE from_device = ? AND op_id = ?",
                           (seq, me, item.op_id))
                self.report["pushed"] += 1
            for conv, op in [*control, *content]:
                if db.execute("SELECT 1 FROM applied WHERE from_device = ? AND op_id = ?",
                              (op.from_device, op.op.op_id)).fetchone():
                    continue
                reason = self.apply_one(db, conv, op)
                if reason == PARKED:
                    self.report["pulled"] += 1
                    continue  # not applied yet: it stays out of `applied`
                if reason is not None:
                    self.store.problem(db, reason, seq=op.seq, conv=conv,
                                       from_device=op.from_device, op_id=op.op.op_id)
                    self.report["problems"] += 1
                db.execute("INSERT OR IGNORE INTO applied VALUES (?, ?, ?)",
                           (op.from_device, op.op.op_id, op.seq))
                self.report["pulled"] += 1
            self.unpark(db)
            self.store.put("cursor", list(response.cursor.lanes), db)

    def author(self, db: sqlite3.Connection, device: int) -> tuple[int, bytes] | None:
        row = db.execute("SELECT user_id, sign_key FROM devices WHERE device_id = ?",
                         (device,)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def apply_one(self, db: sqlite3.Connection, conv: bytes, pulled: PulledOp) -> str | None:
        """Apply one pulled op; the reason it was refused, or None."""
        op = pulled.op
        if not isinstance(op, ContentOp | MembershipOp | EnvelopeOp):
            return None  # an op type from a newer version: skipped
        author = self.author(db, pulled.from_device)
        if author is None:
            return "op from a device the directory does not know"
        user, sign_key = author
        signed = op
        if isinstance(op, EnvelopeOp):
            signed = dataclasses.replace(op, to_device=self.client.device_id)
        if not signature_valid(sign_key, op.signature,
                               op_signing_input(conv, pulled.from_device, signed)):
            return "signature does not verify: not shown"
        if isinstance(op, MembershipOp):
            return self.apply_membership(db, conv, pulled, op, user)
        roster = self.store.roster_at(conv, pulled.seq)
        if roster is None or user not in roster:
            return "author was not a member at that point"
        if isinstance(op, EnvelopeOp):
            if roster[user] is not Role.ADMIN:
                return "a key envelope from a member who is not an admin"
            try:
                opened = open_key_envelope(self.client.keys, op.sealed, conv,
                                           pulled.from_device, self.client.device_id)
            except (CryptoError, ProtocolError):
                return "key envelope does not open"
            (highest,) = db.execute("SELECT max(epoch) FROM epoch_keys WHERE conv = ?",
                                    (conv,)).fetchone()
            if opened.epoch > (MAX_FIRST_EPOCH if highest is None else highest + 1):
                return "a key envelope for an epoch out of sequence"
            db.execute("INSERT OR IGNORE INTO epoch_keys VALUES (?, ?, ?, ?, ?)",
                       (conv, opened.epoch, pulled.from_device, opened.key, pulled.seq))
            self.new_keys.add(conv)
            return None
        broadcast = db.execute("SELECT broadcast FROM conversations WHERE conv = ?",
                               (conv,)).fetchone()
        if not may_post(roster[user], broadcast=bool(broadcast and broadcast[0]),
                        announce=op.op_type is OpType.ANNOUNCE):
            return "only admins post this"
        return self.apply_content(db, conv, pulled, op, user)

    def apply_membership(self, db: sqlite3.Connection, conv: bytes, pulled: PulledOp,
                         op: MembershipOp, user: int) -> str | None:
        before = self.store.roster_row(conv, pulled.seq - 1)
        broadcast = db.execute("SELECT broadcast FROM conversations WHERE conv = ?",
                               (conv,)).fetchone()
        roster = Roster() if before is None else Roster(before[0], bool(broadcast and broadcast[0]),
                                                        before[1])
        try:
            after = roster.apply(op.change, author=user, prev=op.prev,
                                 new_head=roster_hash(conv, pulled.from_device, op))
        except ProtocolError as error:
            return f"membership change refused: {error.message}"
        if isinstance(op.change, CreateConversation):
            db.execute("INSERT OR IGNORE INTO conversations (conv, broadcast) VALUES (?, ?)",
                       (conv, int(op.change.broadcast)))
        assert after.head is not None
        self.store.save_roster(db, conv, pulled.seq, dict(after.members), after.head)
        return None

    def apply_content(self, db: sqlite3.Connection, conv: bytes, pulled: PulledOp,
                      op: ContentOp, user: int) -> str | None:
        try:
            sealed = SealedPayload.from_bytes(op.payload)
        except ProtocolError:
            return "payload is not a sealed payload"
        keys = db.execute("SELECT key FROM epoch_keys WHERE conv = ? AND epoch = ?",
                          (conv, sealed.epoch)).fetchall()
        for (key,) in keys:
            try:
                plain = decrypt_payload(bytes(key), conv, pulled.from_device, int(op.op_type),
                                        op.op_id, op.payload)
            except CryptoError:
                continue
            try:
                body = MessageBody.from_bytes(plain)
            except ProtocolError:
                return self.unsupported(db, conv, pulled, op, user, plain)
            db.execute(
                "INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (pulled.from_device, op.op_id, conv, pulled.seq, user, int(body.kind), body.text,
                 body.reply_to.device if body.reply_to else None,
                 body.reply_to.op_id if body.reply_to else None,
                 body.target.device if body.target else None,
                 body.target.op_id if body.target else None, body.sent_at))
            return None
        if not keys:
            # Its key has not come yet (a new device before an admin keyed it): keep the op
            # and try again when a key for this conversation arrives.
            db.execute("INSERT OR REPLACE INTO parked VALUES (?, ?, ?, ?, ?)",
                       (pulled.from_device, op.op_id, conv, pulled.seq,
                        dumps([int(op.op_type), op.payload, op.signature])))
            return PARKED
        return "payload does not decrypt with any key of its epoch"

    def unsupported(self, db: sqlite3.Connection, conv: bytes, pulled: PulledOp, op: ContentOp,
                    user: int, plain: bytes) -> str | None:
        """A payload of a kind this client does not know (a form): shown as unsupported,
        kept, never dropped (SPEC.md section 10)."""
        try:
            kind = loads(plain, max_bytes=len(plain)).get(0)
        except (ProtocolError, AttributeError):
            return "content that is not a payload"
        if type(kind) is not int or not FORM_KINDS.start <= kind < FORM_KINDS.stop:
            return "content of an unknown kind"
        if kind in KNOWN_FORM_KINDS:
            try:
                payload = parse_form_payload(plain)
            except ProtocolError as error:
                return f"a form op that does not parse: {error.message}"
            db.execute("INSERT OR IGNORE INTO form_ops VALUES (?, ?, ?, ?, ?, ?)",
                       (pulled.from_device, op.op_id, conv, pulled.seq, user, plain))
            clock = getattr(payload, "clock", None)
            if clock is not None:
                self.client.observe_clock(clock)
            return None
        db.execute("INSERT OR IGNORE INTO messages (from_device, op_id, conv, seq, author, kind)"
                   " VALUES (?, ?, ?, ?, ?, ?)",
                   (pulled.from_device, op.op_id, conv, pulled.seq, user, kind))
        return None

    def unpark(self, db: sqlite3.Connection) -> None:
        """Retry the content parked for want of a key, in conversations that got keys."""
        for conv in sorted(self.new_keys):
            rows = db.execute("SELECT from_device, op_id, seq, op FROM parked WHERE conv = ?"
                              " ORDER BY seq", (conv,)).fetchall()
            for device, op_id, seq, raw in rows:
                op_type, payload, signature = loads(raw)
                op = ContentOp(OpType(op_type), op_id, payload, signature)
                author = self.author(db, device)
                if author is None:
                    continue
                reason = self.apply_content(db, conv, PulledOp(seq, device, op), op, author[0])
                if reason == PARKED:
                    continue
                db.execute("DELETE FROM parked WHERE from_device = ? AND op_id = ?",
                           (device, op_id))
                if reason is not None:
                    self.store.problem(db, reason, seq=seq, conv=conv, from_device=device,
                                       op_id=op_id)
