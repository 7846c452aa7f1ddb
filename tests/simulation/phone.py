"""A virtual phone: keys, a session, an outbox of signed ops, a cursor, what it holds.

It knows only what a real client would: the membership ops it received or
had acked (its view of each conversation's chain and roster) and its own
outbox. The simulator decides what it does and when.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from clients.reference.connection import Session
from clients.reference.crypto import DeviceKeys, sign_op
from protocol import (
    AddMembers,
    CreateConversation,
    Cursor,
    EnvelopeOp,
    MembershipOp,
    PushBlock,
    RemoveMembers,
    Role,
    op_digest,
    roster_hash,
)
from protocol.ops import Op

from .checker import DeviceLog

PLACEHOLDER = bytes(64)


@dataclass
class Phone:
    device_id: int
    user_id: int
    keys: DeviceKeys
    session: Session
    log: DeviceLog
    next_op_id: int = 1
    outbox: list[tuple[bytes, Op]] = field(default_factory=list)
    cursor: Cursor = field(default_factory=Cursor)
    # conv -> seq -> (author device, op): the membership chain as this phone holds it
    chains: dict[bytes, dict[int, tuple[int, MembershipOp]]] = field(default_factory=dict)
    pending_heads: dict[bytes, bytes] = field(default_factory=dict)  # heads of unacked changes
    push_counts: dict[int, int] = field(default_factory=dict)  # op id -> times pushed

    def sign(self, conv: bytes, op: Op) -> Op:
        return sign_op(self.keys, conv, self.device_id, op)

    def take_op_id(self) -> int:
        op_id = self.next_op_id
        self.next_op_id += 1
        return op_id

    def queue(self, conv: bytes, op: Op) -> None:
        """Keep a finished op for sending; its bytes never change from here on."""
        signed = self.sign(conv, op)
        if isinstance(signed, MembershipOp):
            self.pending_heads[conv] = roster_hash(conv, self.device_id, signed)
        self.outbox.append((conv, signed))
        self.log.sent[signed.op_id] = op_digest(conv, signed)

    def push_blocks(self, ops: list[tuple[bytes, Op]]) -> tuple[PushBlock, ...]:
        """Consecutive ops of one conversation share a block; op ids stay in order."""
        blocks: list[tuple[bytes, list[Op]]] = []
        for conv, op in ops:
            if blocks and blocks[-1][0] == conv:
                blocks[-1][1].append(op)
            else:
                blocks.append((conv, [op]))
        return tuple(PushBlock(conv, tuple(group)) for conv, group in blocks)

    def acked(self, conv: bytes, op: Op, seq: int) -> None:
        self.log.acks.setdefault(op.op_id, []).append(seq)
        self.outbox.remove((conv, op))
        if isinstance(op, MembershipOp):
            self.chains.setdefault(conv, {})[seq] = (self.device_id, op)
            if not any(c == conv and isinstance(o, MembershipOp) for c, o in self.outbox):
                self.pending_heads.pop(conv, None)

    def refused(self, conv: bytes, op: Op) -> None:
        """A tagged refusal names this op: drop it (a real client tells its user)."""
        self.outbox.remove((conv, op))
        if isinstance(op, MembershipOp):
            self.pending_heads.pop(conv, None)

    def learn(self, conv: bytes, seq: int, author: int, op: MembershipOp) -> None:
        self.chains.setdefault(conv, {})[seq] = (author, op)

    def roster(self, conv: bytes) -> dict[int, Role]:
        """Who is in the conversation, from the chain this phone holds."""
        members: dict[int, Role] = {}
        for _, (_, op) in sorted(self.chains.get(conv, {}).items()):
            change = op.change
            if isinstance(change, CreateConversation | AddMembers):
                members.update((m.user_id, m.role) for m in change.members)
            elif isinstance(change, RemoveMembers):
                for user in change.user_ids:
                    members.pop(user, None)
        return members

    def head(self, conv: bytes) -> bytes | None:
        if conv in self.pending_heads:
            return self.pending_heads[conv]
        chain = self.chains.get(conv)
        if not chain:
            return None
        seq = max(chain)
        author, op = chain[seq]
        return roster_hash(conv, author, op)

    def chain_broken(self, conv: bytes) -> bool:
        """True when the chain held has a hole: a change whose prev is not the op before."""
        head: bytes | None = None
        for _, (author, op) in sorted(self.chains.get(conv, {}).items()):
            if op.prev != head:
                return True
            head = roster_hash(conv, author, op)
        return False

    def push_form(self, op: Op) -> Op:
        """A pulled op as its author pushed it (an envelope names its addressee: us)."""
        if isinstance(op, EnvelopeOp):
            return dataclasses.replace(op, to_device=self.device_id)
        return op
