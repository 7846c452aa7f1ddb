"""A phone for tests: real keys, real HTTP, signed ops; ciphertext optional."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from clients.reference.connection import Connection, Session
from clients.reference.crypto import DeviceKeys, encrypt_payload, sign_op
from protocol import (
    AddMembers,
    ContentOp,
    CreateConversation,
    Cursor,
    Member,
    MembershipOp,
    OpType,
    PushBlock,
    RemoveMembers,
    Role,
    SyncRequest,
    SyncResponse,
    roster_hash,
)
from protocol.ops import Op

PLACEHOLDER = bytes(64)


@dataclass
class Device:
    url: str
    phone: str
    keys: DeviceKeys = field(default_factory=DeviceKeys.generate)
    user_id: int = 0
    device_id: int = 0
    server_key: bytes = b""
    session: Session | None = None
    next_op_id: int = 1
    cursor: Cursor = field(default_factory=Cursor)
    seen: dict[tuple[int, int], int] = field(default_factory=dict)  # (device, op id) -> seq
    heads: dict[bytes, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.connection = Connection(self.url)

    @classmethod
    def enrol(cls, url: str, phone: str, code: str) -> Device:
        device = cls(url, phone)
        answer = device.connection.register(phone, code, device.keys)
        device.user_id, device.device_id = answer.user_id, answer.device_id
        device.server_key = answer.server_key
        device.login()
        return device

    def login(self) -> None:
        self.session = self.connection.open_session(self.device_id, self.keys, self.server_key)

    def op_id(self) -> int:
        value = self.next_op_id
        self.next_op_id += 1
        return value

    def sign(self, conv: bytes, op: Op) -> Op:
        return sign_op(self.keys, conv, self.device_id, op)

    def chat(self, conv: bytes, payload: bytes, op_type: OpType = OpType.CHAT) -> ContentOp:
        op = self.sign(conv, ContentOp(op_type, self.op_id(), payload, PLACEHOLDER))
        assert isinstance(op, ContentOp)
        return op

    def encrypted(self, conv: bytes, text: str, epoch_key: bytes = bytes(32),
                  op_type: OpType = OpType.CHAT) -> ContentOp:
        op_id = self.op_id()
        payload = encrypt_payload(epoch_key, conv, 0, self.device_id, int(op_type), op_id,
                                  text.encode())
        op = self.sign(conv, ContentOp(op_type, op_id, payload, PLACEHOLDER))
        assert isinstance(op, ContentOp)
        return op

    def create(self, members: dict[int, Role], broadcast: bool = False,
               conv: bytes | None = None) -> tuple[bytes, MembershipOp]:
        conv = conv or os.urandom(8)
        everyone = {self.user_id: Role.ADMIN, **members}
        change = CreateConversation(tuple(Member(u, r) for u, r in everyone.items()), broadcast)
        op = self.sign(conv, MembershipOp(self.op_id(), None, change, PLACEHOLDER))
        assert isinstance(op, MembershipOp)
        self.heads[conv] = roster_hash(conv, self.device_id, op)
        return conv, op

    def add(self, conv: bytes, user_id: int, role: Role = Role.MEMBER) -> MembershipOp:
        return self._change(conv, AddMembers((Member(user_id, role),)))

    def remove(self, conv: bytes, user_id: int) -> MembershipOp:
        return self._change(conv, RemoveMembers((user_id,)))

    def _change(self, conv: bytes, change: AddMembers | RemoveMembers) -> MembershipOp:
        op = self.sign(conv, MembershipOp(self.op_id(), self.heads[conv], change, PLACEHOLDER))
        assert isinstance(op, MembershipOp)
        self.heads[conv] = roster_hash(conv, self.device_id, op)
        return op

    def push(self, conv: bytes, *ops: Op, budget: int | None = None) -> SyncResponse:
        return self.sync(push=(PushBlock(conv, ops),), budget=budget)

    def sync(self, push: tuple[PushBlock, ...] = (), budget: int | None = None,
             cursor: Cursor | None = None, keep: bool = True, wait: int = 0) -> SyncResponse:
        assert self.session is not None
        request = SyncRequest(push=push, cursor=self.cursor if cursor is None else cursor,
                              budget=budget, wait_seconds=wait)
        response = self.connection.sync(self.session, request)
        if keep:
            for block in response.blocks:
                for pulled in block.ops:
                    self.seen[(pulled.from_device, pulled.op.op_id)] = pulled.seq
            self.cursor = response.cursor
        return response

    def drain(self, budget: int | None = None, rounds: int = 1000) -> list[int]:
        """Sync until the server says there is no more; the seqs received, in order."""
        seqs = []
        for _ in range(rounds):
            response = self.sync(budget=budget)
            seqs += [op.seq for block in response.blocks for op in block.ops]
            if not response.more:
                return seqs
        raise AssertionError("still more after many rounds")

    def with_op_id(self, op: Op, op_id: int) -> Op:
        return dataclasses.replace(op, op_id=op_id)
