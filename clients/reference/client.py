"""The reference client: a home folder, a server, end-to-end encrypted conversations.

    client = Client.init(home, "http://127.0.0.1:8787", "+254700000001", code)
    conv = client.create_group("Field team", ["+254700000002"])
    client.send(conv, "Clinic opens at 9")      # offline: queued in the outbox
    client.sync()                               # push and pull until there is no more
    client.messages(conv)

Writes that only touch the local state (``send``) never need the network.
Creating, adding and removing ask the directory for the current devices of
the members, to seal the conversation key to each. Every op is built,
encrypted and signed when it is queued, and its exact bytes are kept until
the server acks them (SPEC.md, sections 7 and 10).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from protocol import (
    AddMembers,
    ChainRequest,
    ChainResponse,
    ContentOp,
    CreateConversation,
    DirectoryRequest,
    EnvelopeOp,
    Member,
    MembershipOp,
    OpType,
    PulledOp,
    RemoveMembers,
    Role,
    UserEntry,
    decode,
    dumps,
    encode,
    roster_hash,
)
from protocol.e2e import MessageBody, MessageKind, OpRef
from protocol.messages import MessageEvent, reconcile_messages
from protocol.ops import Op, push_op_to_value

from .connection import Connection, ResponseForged, ServerError, Session
from .crypto import DeviceKeys, encrypt_payload, seal_key_for_device, sign_op
from .store import LAST_SEQ, PENDING_SEQ, Store

__all__ = ["Client", "ClientError"]

PLACEHOLDER = bytes(64)
CLOCK_SKEW_MS = 5 * 60 * 1000
REFRESH_SECONDS = 15 * 60  # how often sync re-reads the directory for the groups we run


class ClientError(Exception):
    """Something the person can act on; the message says what."""


def conv_hex(conv: bytes) -> str:
    return conv.hex()


def parse_conv(text: str) -> bytes:
    try:
        conv = bytes.fromhex(text)
    except ValueError:
        conv = b""
    if len(conv) != 8:
        raise ClientError(f"{text!r} is not a conversation id (16 hex digits)")
    return conv


class Client:
    """One device's view of one server, kept in a home folder."""

    def __init__(self, home: Path, *, timeout: float = 30.0) -> None:
        if not (home / "device.key").exists():
            raise ClientError(f"{home} is not set up: run `syncref --home {home} init` first")
        self.store = Store(home)
        self.timeout = timeout
        if self.store.get("device_id") is None:
            self.store.close()
            raise ClientError(f"{home} is not set up: run `syncref --home {home} init` first")
        self.keys = self.store.load_keys()
        self._connection: Connection | None = None

    # ------------------------------------------------------------ set-up

    @classmethod
    def init(cls, home: Path, server: str, phone: str, code: str, *,
             timeout: float = 30.0) -> Client:
        store = Store(home)
        if store.get("device_id") is not None:
            store.close()
            raise ClientError(f"{home} already holds a device; use another --home")
        # Keys reach the disk before the server hears of them: a crash here leaves a
        # home that init can finish with the same keys, not a spent code.
        if store.key_path.exists():
            keys = store.load_keys()
        else:
            keys = DeviceKeys.generate()
            store.save_keys(keys)
        with Connection(server, timeout=timeout) as connection:
            try:
                answer = connection.register(phone, code, keys)
            except ServerError as error:
                store.close()
                raise ClientError(f"the server refused the enrolment: {error.frame.message}") \
                    from error
        with store.transaction() as db:
            for key, value in (("server", server), ("phone", phone),
                               ("user_id", answer.user_id), ("device_id", answer.device_id),
                               ("server_key", answer.server_key)):
                store.put(key, value, db)
            db.execute("INSERT OR REPLACE INTO devices VALUES (?, ?, ?, ?, ?, 0)",
                       (answer.device_id, answer.user_id, phone, keys.sign_public,
                        keys.hpke_public))
        store.close()
        return cls(home, timeout=timeout)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self.store.close()

    @property
    def phone(self) -> str:
        return str(self.store.get("phone"))

    @property
    def user_id(self) -> int:
        return int(self.store.get("user_id"))

    @property
    def device_id(self) -> int:
        return int(self.store.get("device_id"))

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = Connection(str(self.store.get("server")), timeout=self.timeout)
        return self._connection

    def use_connection(self, connection: Connection) -> None:
        """Talk to the server through another connection (a proxy, a test link)."""
        self._connection = connection

    # ------------------------------------------------------------ session

    def session(self) -> Session:
        saved = self.store.get("session")
        if saved is not None:
            return Session(*saved)
        session = self.connection.open_session(self.device_id, self.keys,
                                               bytes(self.store.get("server_key")))
        self.save_session(session)
        return session

    def save_session(self, session: Session | None) -> None:
        value = None if session is None else [session.session_id, session.expires_at,
                                              session.request_key, session.response_key,
                                              session.counter]
        self.store.put("session", value)

    def call(self, path: str, body: bytes) -> bytes:
        """One authenticated call; the counter is on disk before the request leaves."""
        session = self.session()
        session.counter += 1
        self.save_session(session)
        session.counter -= 1  # Connection.call adds it again
        try:
            return self.connection.call(session, path, body)
        except ServerError as error:
            if error.status == 401:
                self.save_session(None)  # a new session next time
            raise

    def chain(self, conv: bytes, after: int) -> list[PulledOp]:
        """The conversation's membership ops above seq ``after`` (SPEC.md section 9)."""
        ops: list[PulledOp] = []
        while True:
            body = self.call("/v1/chain", encode(ChainRequest(conv, after)))
            answer = decode(body, ChainResponse)
            if answer.block is not None:
                ops.extend(answer.block.ops)
                after = answer.block.ops[-1].seq
            if not answer.more or answer.block is None:
                return ops

    # ------------------------------------------------------------ directory

    def lookup(self, phones: tuple[str, ...] = (), user_ids: tuple[int, ...] = (),
               device_ids: tuple[int, ...] = ()) -> list[UserEntry]:
        """Ask the directory; pin keys seen for the first time, report keys that changed."""
        from protocol import DirectoryResponse

        request = DirectoryRequest(phones, user_ids, device_ids)
        answer = decode(self.call("/v1/directory", encode(request)), DirectoryResponse)
        with self.store.transaction() as db:
            for user in answer.users:
                for device in user.devices:
                    self._pin(db, user, device.device_id, device.sign_key, device.hpke_key,
                              device.revoked)
        return list(answer.users)

    def _pin(self, db: sqlite3.Connection, user: UserEntry, device_id: int, sign_key: bytes,
             hpke_key: bytes, revoked: bool) -> None:
        row = db.execute("SELECT sign_key, hpke_key FROM devices WHERE device_id = ?",
                         (device_id,)).fetchone()
        if row is None:
            known = db.execute("SELECT 1 FROM devices WHERE user_id = ? LIMIT 1",
                               (user.user_id,)).fetchone()
            db.execute("INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?)",
                       (device_id, user.user_id, user.phone, sign_key, hpke_key, int(revoked)))
            if known and not revoked:
                # The server could add a device behind a user's back: always said out loud.
                db.execute("INSERT INTO notices (text) VALUES (?)",
                           (f"NEW DEVICE {device_id} for {user.phone}: compare safety numbers "
                            "if you did not expect it",))
            return
        if bytes(row[0]) != sign_key or bytes(row[1]) != hpke_key:
            # Never accepted silently: the pinned key stays, the change is reported (once).
            changed = db.execute("INSERT OR IGNORE INTO key_changes VALUES (?, ?, ?)",
                                 (device_id, bytes(row[0]), sign_key))
            if changed.rowcount:
                self.store.problem(db, f"KEY CHANGED for device {device_id} of {user.phone}: "
                                       "the new key is not trusted", from_device=device_id)
        if revoked:
            db.execute("UPDATE devices SET revoked = 1 WHERE device_id = ?", (device_id,))

    def devices_of(self, user_ids: set[int]) -> list[tuple[int, bytes]]:
        """Pinned, unrevoked devices of these users: (device id, HPKE key)."""
        if not user_ids:
            return []
        marks = ",".join("?" * len(user_ids))
        rows = self.store.db.execute(
            f"SELECT device_id, hpke_key FROM devices WHERE revoked = 0 AND user_id IN ({marks})"
            " ORDER BY device_id", sorted(user_ids)).fetchall()
        return [(int(d), bytes(k)) for d, k in rows]

    def user_of_phone(self, phone: str) -> int:
        row = self.store.db.execute("SELECT user_id FROM devices WHERE phone = ? LIMIT 1",
                                    (phone,)).fetchone()
        if row is not None:
            return int(row[0])
        users = self.lookup(phones=(phone,))
        if not users:
            raise ClientError(f"{phone} is not registered on this server")
        return users[0].user_id

    def fingerprint(self, phone: str) -> str:
        """A safety number for this user and another, the same on both sides."""
        other = self.user_of_phone(phone)
        if phone != self.phone:
            self.lookup(user_ids=(other,))
        parts = []
        for user in sorted({self.user_id, other}):
            rows = self.store.db.execute(
                "SELECT sign_key FROM devices WHERE user_id = ? AND revoked = 0 ORDER BY "
                "device_id", (user,)).fetchall()
            parts.append(dumps([user, [bytes(r[0]) for r in rows]]))
        digest = hashlib.sha256(b"syncd/1 safety number" + b"".join(parts)).digest()
        number = int.from_bytes(digest[:16], "big") % 10**30
        text = f"{number:030d}"
        return " ".join(text[i : i + 5] for i in range(0, 30, 5))

    # ------------------------------------------------------------ queueing ops

    def _queue(self, db: sqlite3.Connection, conv: bytes, ops: list[Op]) -> None:
        """Queue the ops one command built; if the server refuses one for good, the
        whole batch goes (an envelope without its removal must not travel alone)."""
        if not ops:
            return
        batch = ops[0].op_id
        for op in ops:
            db.execute("INSERT INTO outbox (op_id, conv, op, batch) VALUES (?, ?, ?, ?)",
                       (op.op_id, conv, dumps(push_op_to_value(op)), batch))

    def _sign(self, conv: bytes, op: Op) -> Op:
        return sign_op(self.keys, conv, self.device_id, op)

    def _current_key(self, conv: bytes) -> tuple[int, bytes]:
        """The key to send with: the highest epoch sealed by someone still an admin (or by
        us), lowest seq first (SPEC.md section 10). A removed member's keys are never used."""
        roster = self.store.current_roster(conv) or {}
        for epoch, key, device in self.store.db.execute(
                "SELECT epoch, key, from_device FROM epoch_keys WHERE conv = ?"
                " ORDER BY epoch DESC, seq ASC, from_device ASC", (conv,)):
            owner = self.store.db.execute("SELECT user_id FROM devices WHERE device_id = ?",
                                          (device,)).fetchone()
            if device == self.device_id or (owner and roster.get(owner[0]) is Role.ADMIN):
                return int(epoch), bytes(key)
        raise ClientError("no key for this conversation yet: sync first")

    def _content(self, conv: bytes, op_id: int, op_type: OpType, body: MessageBody) -> ContentOp:
        return self._content_bytes(conv, op_id, op_type, body.to_bytes())

    def _content_bytes(self, conv: bytes, op_id: int, op_type: OpType,
                       plaintext: bytes) -> ContentOp:
        epoch, key = self._current_key(conv)
        payload = encrypt_payload(key, conv, epoch, self.device_id, int(op_type), op_id,
                                  plaintext)
        op = self._sign(conv, ContentOp(op_type, op_id, payload, PLACEHOLDER))
        assert isinstance(op, ContentOp)
        return op

    def _envelopes(self, db: sqlite3.Connection, conv: bytes, op_ids: list[int],
                   devices: list[tuple[int, bytes]], epoch: int, key: bytes) -> list[Op]:
        ops: list[Op] = []
        for op_id, (device, hpke_key) in zip(op_ids, devices, strict=True):
            sealed = seal_key_for_device(hpke_key, conv, self.device_id, device, epoch, key)
            ops.append(self._sign(conv, EnvelopeOp(op_id, device, sealed, PLACEHOLDER)))
            db.execute("INSERT OR IGNORE INTO key_holders VALUES (?, ?, ?)", (conv, epoch, device))
        return ops

    def refresh_keys(self) -> dict[str, int]:
        """Keep conversations we administer keyed right (SPEC.md section 10):
        a member's new device gets the current epoch (not history); a revoked
        device of a member starts a new epoch that it never receives. Needs the
        directory, so ``sync`` runs it now and then, not on every round trip."""
        report = {"devices_keyed": 0, "epochs_started": 0}
        for (conv,) in self.store.db.execute("SELECT conv FROM conversations").fetchall():
            conv = bytes(conv)
            roster = self.store.current_roster(conv)
            if roster is None or roster.get(self.user_id) is not Role.ADMIN:
                continue
            users = sorted(roster)
            for start in range(0, len(users), 64):
                self.lookup(user_ids=tuple(users[start : start + 64]))
            try:
                epoch, key = self._current_key(conv)
            except ClientError:
                continue
            holders = {row[0] for row in self.store.db.execute(
                "SELECT device_id FROM key_holders WHERE conv = ? AND epoch = ?", (conv, epoch))}
            marks = ",".join("?" * len(users))
            revoked = {row[0] for row in self.store.db.execute(
                f"SELECT device_id FROM devices WHERE revoked = 1 AND user_id IN ({marks})"
                " AND device_id NOT IN (SELECT device_id FROM handled_revocations)", users)}
            live = [d for d in self.devices_of(set(roster)) if d[0] != self.device_id]
            with self.store.transaction() as db:
                if revoked:
                    # Whoever started the current epoch, a member's revoked device may hold
                    # it: start a new one that it never gets.
                    db.executemany("INSERT OR IGNORE INTO handled_revocations VALUES (?)",
                                   [(device,) for device in revoked])
                    op_ids = self.store.next_op_ids(db, len(live))
                    fresh = self._new_epoch_key(db, conv, epoch + 1, op_ids[0] if op_ids else 0)
                    self._queue(db, conv, self._envelopes(db, conv, op_ids, live, epoch + 1,
                                                          fresh))
                    report["epochs_started"] += 1
                    continue
                missing = [d for d in live if d[0] not in holders]
                op_ids = self.store.next_op_ids(db, len(missing))
                self._queue(db, conv, self._envelopes(db, conv, op_ids, missing, epoch, key))
                report["devices_keyed"] += len(missing)
        self.store.put("refreshed_at", int(time.time()))
        return report

    def _head(self, conv: bytes) -> bytes | None:
        """The chain head our next membership change builds on (our pending ones included)."""
        found = self.store.roster_row(conv, LAST_SEQ)
        return None if found is None else found[1]

    def _membership(self, db: sqlite3.Connection, conv: bytes, op_id: int,
                    change: CreateConversation | AddMembers | RemoveMembers,
                    members: dict[int, Role]) -> MembershipOp:
        op = self._sign(conv, MembershipOp(op_id, self._head(conv), change, PLACEHOLDER))
        assert isinstance(op, MembershipOp)
        head = roster_hash(conv, self.device_id, op)
        broadcast = isinstance(change, CreateConversation) and change.broadcast
        db.execute("INSERT OR IGNORE INTO conversations (conv, broadcast) VALUES (?, ?)",
                   (conv, int(broadcast)))
        self.store.save_roster(db, conv, PENDING_SEQ + op_id, members, head)
        return op

    def _record_message(self, db: sqlite3.Connection, conv: bytes, op_id: int,
                        body: MessageBody) -> None:
        db.execute(
            "INSERT INTO messages VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self.device_id, op_id, conv, self.user_id, int(body.kind), body.text,
             body.reply_to.device if body.reply_to else None,
             body.reply_to.op_id if body.reply_to else None,
             body.target.device if body.target else None,
             body.target.op_id if body.target else None, body.sent_at))

    def _new_epoch_key(self, db: sqlite3.Connection, conv: bytes, epoch: int,
                       first_op_id: int) -> bytes:
        key = os.urandom(32)
        db.execute("INSERT OR REPLACE INTO epoch_keys VALUES (?, ?, ?, ?, ?)",
                   (conv, epoch, self.device_id, key, PENDING_SEQ + first_op_id))
        return key

    # ------------------------------------------------------------ groups

    def create_group(self, name: str, phones: list[str], broadcast: bool = False) -> bytes:
        others = {self.user_of_phone(phone) for phone in phones} - {self.user_id}
        self.lookup(user_ids=tuple(sorted(others | {self.user_id})))
        members = {self.user_id: Role.ADMIN, **{user: Role.MEMBER for user in others}}
        devices = [d for d in self.devices_of(set(members)) if d[0] != self.device_id]
        conv = os.urandom(8)
        with self.store.transaction() as db:
            op_ids = self.store.next_op_ids(db, 2 + len(devices))
            change = CreateConversation(tuple(Member(u, r) for u, r in sorted(members.items())),
                                        broadcast)
            create = self._membership(db, conv, op_ids[0], change, members)
            key = self._new_epoch_key(db, conv, 0, op_ids[0])
            envelopes = self._envelopes(db, conv, op_ids[1:-1], devices, 0, key)
            title = MessageBody(MessageKind.TITLE, name, sent_at=_now())
            named = self._content(conv, op_ids[-1], OpType.CHAT, title)
            self._queue(db, conv, [create, *envelopes, named])
            self._record_message(db, conv, op_ids[-1], title)
        return conv

    def _admin_roster(self, conv: bytes) -> dict[int, Role]:
        roster = self.store.current_roster(conv)
        if roster is None:
            raise ClientError("no such conversation here: sync first")
        if roster.get(self.user_id) is not Role.ADMIN:
            raise ClientError("only an admin of the conversation can change its members")
        return roster

    def add_member(self, conv: bytes, phone: str) -> None:
        roster = self._admin_roster(conv)
        user = self.user_of_phone(phone)
        if user in roster:
            raise ClientError(f"{phone} is already a member")
        self.lookup(user_ids=(user,))
        devices = self.devices_of({user})
        epoch, key = self._current_key(conv)
        with self.store.transaction() as db:
            op_ids = self.store.next_op_ids(db, 1 + len(devices))
            members = {**roster, user: Role.MEMBER}
            add = self._membership(db, conv, op_ids[0], AddMembers((Member(user),)), members)
            envelopes = self._envelopes(db, conv, op_ids[1:], devices, epoch, key)
            self._queue(db, conv, [add, *envelopes])

    def remove_member(self, conv: bytes, phone: str) -> None:
        roster = self._admin_roster(conv)
        user = self.user_of_phone(phone)
        if user not in roster:
            raise ClientError(f"{phone} is not a member")
        members = {u: r for u, r in roster.items() if u != user}
        self.lookup(user_ids=tuple(sorted(members)))
        devices = [d for d in self.devices_of(set(members)) if d[0] != self.device_id]
        epoch, _ = self._current_key(conv)
        with self.store.transaction() as db:
            op_ids = self.store.next_op_ids(db, 1 + len(devices))
            remove = self._membership(db, conv, op_ids[0], RemoveMembers((user,)), members)
            # A removal starts a new epoch: the removed member never gets its key.
            key = self._new_epoch_key(db, conv, epoch + 1, op_ids[0])
            envelopes = self._envelopes(db, conv, op_ids[1:], devices, epoch + 1, key)
            self._queue(db, conv, [remove, *envelopes])

    def groups(self) -> list[dict[str, Any]]:
        result = []
        for (conv,) in self.store.db.execute("SELECT conv FROM conversations ORDER BY conv"):
            conv = bytes(conv)
            roster = self.store.current_roster(conv) or {}
            row = self.store.db.execute("SELECT broadcast FROM conversations WHERE conv = ?",
                                        (conv,)).fetchone()
            result.append({
                "id": conv_hex(conv), "name": self.title(conv), "broadcast": bool(row[0]),
                "role": None if self.user_id not in roster else roster[self.user_id].name.lower(),
                "members": [{"phone": self.phone_of_user(u), "user_id": u,
                             "role": r.name.lower()} for u, r in sorted(roster.items())],
            })
        return result

    def phone_of_user(self, user_id: int) -> str | None:
        row = self.store.db.execute("SELECT phone FROM devices WHERE user_id = ? LIMIT 1",
                                    (user_id,)).fetchone()
        return None if row is None else str(row[0])

    def title(self, conv: bytes) -> str | None:
        for text, seq, author in self.store.db.execute(
                "SELECT text, seq, author FROM messages WHERE conv = ? AND kind = ?"
                " ORDER BY coalesce(seq, ?) DESC", (conv, int(MessageKind.TITLE), PENDING_SEQ)):
            roster = self.store.roster_at(conv, LAST_SEQ if seq is None else seq) or {}
            if roster.get(author) is Role.ADMIN:
                return str(text)
        return None

    # ------------------------------------------------------------ messages

    def send(self, conv: bytes, text: str, *, announce: bool = False,
             reply_to: OpRef | None = None) -> str:
        """Queue a message; works offline. Returns its id (device:op)."""
        roster = self.store.current_roster(conv)
        if roster is None or self.user_id not in roster:
            raise ClientError("no such conversation here (or you are not a member)")
        body = MessageBody(MessageKind.TEXT, text, reply_to=reply_to, sent_at=_now())
        op_type = OpType.ANNOUNCE if announce else OpType.CHAT
        with self.store.transaction() as db:
            (op_id,) = self.store.next_op_ids(db, 1)
            self._queue(db, conv, [self._content(conv, op_id, op_type, body)])
            self._record_message(db, conv, op_id, body)
        return f"{self.device_id}:{op_id}"

    def messages(self, conv: bytes) -> list[dict[str, Any]]:
        if self.store.db.execute("SELECT 1 FROM conversations WHERE conv = ?",
                                 (conv,)).fetchone() is None:
            raise ClientError("no such conversation here (sync first, or check the id)")
        rows = self.store.db.execute(
            "SELECT from_device, op_id, seq, author, kind, text, reply_device, reply_op,"
            " target_device, target_op, sent_at FROM messages WHERE conv = ?",
            (conv,)).fetchall()
        events: list[MessageEvent] = []
        listed: list[tuple[int, int, int, dict[str, Any]]] = []
        for (device, op_id, seq, author, kind, text, r_dev, r_op, t_dev, t_op,
             sent_at) in rows:
            position = PENDING_SEQ + op_id if seq is None else seq
            if kind in (MessageKind.TEXT, MessageKind.EDIT, MessageKind.DELETE):
                events.append(MessageEvent(position, device, op_id, author, MessageBody(
                    MessageKind(kind), text,
                    reply_to=None if r_dev is None else OpRef(r_dev, r_op),
                    target=None if t_dev is None else OpRef(t_dev, t_op), sent_at=sent_at)))
            elif kind >= FIRST_FORM_KIND:  # a kind this client cannot show: listed as such
                listed.append((position, device, op_id, self._entry(
                    device, op_id, seq, None, None, sent_at, unsupported=True)))
        for view in reconcile_messages(events):
            reply = view.reply_to
            entry = self._entry(view.ref.device, view.ref.op_id,
                                None if view.seq >= PENDING_SEQ else view.seq, view.text,
                                None if reply is None else f"{reply.device}:{reply.op_id}",
                                view.sent_at)
            entry.update(edited=view.edited, deleted=view.deleted)
            listed.append((view.seq, view.ref.device, view.ref.op_id, entry))
        return [entry for *_, entry in sorted(listed, key=lambda item: item[:3])]

    def _entry(self, device: int, op_id: int, seq: int | None, text: str | None,
               reply_to: str | None, sent_at: int | None, *,
               unsupported: bool = False) -> dict[str, Any]:
        return {"id": f"{device}:{op_id}", "seq": seq, "sender_phone": self._phone_of(device),
                "sender_device": device, "time": _iso(sent_at), "text": text,
                "reply_to": reply_to, "edited": False, "deleted": False,
                "pending": seq is None, "unsupported": unsupported}

    def _phone_of(self, device: int) -> str | None:
        row = self.store.db.execute("SELECT phone FROM devices WHERE device_id = ?",
                                    (device,)).fetchone()
        return None if row is None else str(row[0])

    def problems(self) -> list[dict[str, Any]]:
        return [{"seq": seq, "conv": None if conv is None else conv_hex(bytes(conv)),
                 "from_device": device, "op_id": op_id, "reason": reason}
                for seq, conv, device, op_id, reason in self.store.db.execute(
                    "SELECT seq, conv, from_device, op_id, reason FROM problems ORDER BY id")]

    def notices(self) -> list[str]:
        """Things the person should know: new devices of the people they talk to."""
        return [row[0] for row in self.store.db.execute("SELECT text FROM notices ORDER BY id")]

    def whoami(self) -> dict[str, Any]:
        pending = self.store.db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        return {"server": self.store.get("server"), "phone": self.phone,
                "user_id": self.user_id, "device_id": self.device_id,
                "sign_key": self.keys.sign_public.hex(), "pending_ops": pending,
                "cursor": list(self.store.cursor.lanes)}

    # ------------------------------------------------------------ clock

    def next_clock(self) -> tuple[int, int]:
        """The next hybrid logical clock value: never behind one we have seen."""
        wall, counter = self.store.get("hlc", [0, 0])
        now = int(time.time() * 1000)
        if now > wall:
            clock = (now, 0)
        elif counter < 2**32:
            clock = (wall, counter + 1)
        else:
            clock = (wall + 1, 0)
        self.store.put("hlc", list(clock))
        return clock

    def observe_clock(self, clock: tuple[int, int]) -> None:
        """Move our clock up to one seen in an op, but never more than five minutes past
        our own time: a member cannot push everyone's clock to its limit."""
        wall, counter = self.store.get("hlc", [0, 0])
        if clock[0] > time.time() * 1000 + CLOCK_SKEW_MS or clock[1] > 2**32:
            return
        if tuple(clock) > (wall, counter):
            self.store.put("hlc", list(clock))

    # ------------------------------------------------------------ sync

    def sync(self, *, budget: int = 16 * 1024, timeout: float = 120.0,
             progress: Callable[[dict[str, int]], None] | None = None,
             refresh_every: float = REFRESH_SECONDS) -> dict[str, int]:
        from .engine import SyncEngine
        from .forms import Forms

        Forms(self).close_due()
        engine = SyncEngine(self)
        report = engine.run(budget=budget, timeout=timeout, progress=progress)
        if time.time() - int(self.store.get("refreshed_at", 0)) >= refresh_every:
            try:
                keyed = self.refresh_keys()
            except (ClientError, ServerError, ResponseForged, httpx.HTTPError, OSError):
                return report  # the sync itself is done; the refresh waits for next time
            if keyed["devices_keyed"] or keyed["epochs_started"]:
                more = SyncEngine(self).run(budget=budget, timeout=timeout, progress=progress)
                report = {name: report[name] + more[name] for name in report}
        return report


def _now() -> int:
    return int(datetime.now(UTC).timestamp())


FIRST_FORM_KIND = 16


def _iso(sent_at: int | None) -> str | None:
    """The sender's clock as ISO 8601, or None when it is absent or absurd."""
    if sent_at is None:
        return None
    try:
        return datetime.fromtimestamp(sent_at, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None

