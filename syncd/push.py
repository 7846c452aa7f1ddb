"""Authorising and storing the new ops of one push, inside its write transaction.

The sync service (``service.py``) verifies signatures, classifies replays and
owns the transaction; this module decides, op by op, whether the device may
make each change, against the roster as the push has left it so far.
"""

from __future__ import annotations

from protocol import (
    ContentOp,
    CreateConversation,
    EnvelopeOp,
    ErrorCode,
    MembershipOp,
    OpType,
    ProtocolError,
    Role,
    Roster,
    dumps,
    roster_hash,
)
from protocol.membership import may_post
from protocol.ops import Op

from .storage import ConversationRecord, WriteTx


class PushApplier:
    """Authorises and stores the new ops of one push, inside its transaction.

    Content and envelopes need one role each, looked up by index; only a
    membership change loads the whole roster, and it writes back only what
    changed, so a post to a conversation of thousands costs the same as to two.
    """

    def __init__(self, tx: WriteTx, *, device_id: int, user_id: int) -> None:
        self.tx = tx
        self.device_id = device_id
        self.user_id = user_id
        self.found: dict[bytes, ConversationRecord | None] = {}
        self.rosters: dict[bytes, Roster] = {}  # full rosters, as changed by this push
        self.roles: dict[tuple[bytes, int], Role | None] = {}
        self.moved_users: set[int] = set()  # joined or left a conversation in this push

    async def _conversation(self, conv: bytes) -> ConversationRecord | None:
        if conv not in self.found:
            self.found[conv] = await self.tx.conversation(conv, members=False)
        return self.found[conv]

    async def _role(self, conv: bytes, record: ConversationRecord, user: int) -> Role | None:
        if conv in self.rosters:
            return self.rosters[conv].role_of(user)
        key = (conv, user)
        if key not in self.roles:  # one look-up per conversation and user per push
            self.roles[key] = await self.tx.member_role(record.conv_id, user)
        return self.roles[key]

    async def _member_conversation(self, conv: bytes) -> tuple[ConversationRecord, Role]:
        record = await self._conversation(conv)
        role = None if record is None else await self._role(conv, record,
                                                               self.user_id)
        if record is None or role is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, "no such conversation")
        return record, role

    async def op(self, conv: bytes, op: Op, digest: bytes) -> int:
        device = self.device_id
        if isinstance(op, MembershipOp):
            return await self._membership(conv, op, digest)
        record, role = await self._member_conversation(conv)
        broadcast = self.rosters[conv].broadcast if conv in self.rosters else record.broadcast
        if isinstance(op, ContentOp):
            if not may_post(role, broadcast=broadcast, announce=op.op_type is OpType.ANNOUNCE):
                raise ProtocolError(ErrorCode.FORBIDDEN, "only admins post here")
            return await self.tx.insert_op(record.conv_id, int(op.op_type), device, op.op_id,
                                           None, dumps(op.fields(pulled=True)), digest)
        assert isinstance(op, EnvelopeOp) and op.to_device is not None
        if role is not Role.ADMIN:
            raise ProtocolError(ErrorCode.FORBIDDEN, "only admins hand out conversation keys")
        owner = (await self.tx.device_owners([op.to_device])).get(op.to_device)
        if owner is None or owner[1] or await self._role(conv, record, owner[0]) is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, "no such device in this conversation")
        return await self.tx.insert_op(record.conv_id, int(op.op_type), device, op.op_id,
                                       op.to_device, dumps(op.fields(pulled=True)), digest)

    async def _membership(self, conv: bytes, op: MembershipOp, digest: bytes) -> int:
        user = self.user_id
        new_head = roster_hash(conv, self.device_id, op)
        if conv in self.rosters:
            before = self.rosters[conv]
            record = self.found[conv]
        else:
            record = await self.tx.conversation(conv, members=True)
            self.found[conv] = record
            before = Roster() if record is None else Roster(
                dict(record.members), record.broadcast, record.head)
        if record is None and not isinstance(op.change, CreateConversation):
            raise ProtocolError(ErrorCode.NOT_FOUND, "no such conversation")
        if (record is not None and before.role_of(user) is None
                and not isinstance(op.change, CreateConversation)):
            raise ProtocolError(ErrorCode.NOT_FOUND, "no such conversation")
        after = before.apply(op.change, author=user, prev=op.prev, new_head=new_head)
        unknown = await self._unknown_users(set(after.members) - set(before.members))
        if unknown:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no such user {min(unknown)}")
        if record is None:
            conv_id = await self.tx.create_conversation(conv, after.broadcast, new_head)
            record = ConversationRecord(conv_id, conv, after.broadcast, new_head, {})
            self.found[conv] = record
        seq = await self.tx.insert_op(record.conv_id, int(op.op_type), self.device_id,
                                      op.op_id, None, dumps(op.fields(pulled=True)), digest)
        changed = {u: r for u, r in after.members.items() if before.members.get(u) is not r}
        joined = [u for u in after.members if u not in before.members]
        left = [u for u in before.members if u not in after.members]
        self.moved_users.update(joined, left)
        await self.tx.set_roster(record.conv_id, new_head, changed, joined, left, seq)
        self.rosters[conv] = after
        return seq

    async def _unknown_users(self, user_ids: set[int]) -> set[int]:
        if not user_ids:
            return set()
        return user_ids - await self.tx.known_users(sorted(user_ids))
