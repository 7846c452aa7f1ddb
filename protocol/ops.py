"""Ops: what a device pushes and what a sync delivers (SPEC.md, "Ops").

An op is one array whose first element is its type. The type also names the
op's lane, so it costs no extra byte. What follows the type differs between
the push form (sent by the author) and the pull form (delivered by the server,
with the op's sequence number and author device added):

    push form:  [type, op-id, ...fields]
    pull form:  [type, seq-or-gap, from-device, op-id, ...fields]

``fields`` per type:

    membership (0): prev, change, signature
    envelope   (1): to-device (push form only), sealed, signature
    content  (2-4): payload, signature

Everything but ``type``, ``op-id`` and the routing fields above is opaque to
the server: payloads and sealed envelopes are end-to-end ciphertext.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from . import _schema as s
from .limits import MAX_PAYLOAD_BYTES
from .membership import Change, CreateConversation, change_from_value

__all__ = [
    "CONV_ID_BYTES",
    "HASH_BYTES",
    "KEY_BYTES",
    "SIGNATURE_BYTES",
    "ContentOp",
    "EnvelopeOp",
    "Lane",
    "MembershipOp",
    "Op",
    "OpType",
    "UnknownOp",
]

CONV_ID_BYTES = 8
KEY_BYTES = 32
SIGNATURE_BYTES = 64
HASH_BYTES = 32


class Lane(IntEnum):
    """Delivery priority: a tight budget is filled in this order."""

    CONTROL = 0
    ANNOUNCE = 1
    CHAT = 2
    BULK = 3


class OpType(IntEnum):
    MEMBERSHIP = 0
    ENVELOPE = 1
    ANNOUNCE = 2
    CHAT = 3
    BULK = 4

    @property
    def lane(self) -> Lane:
        return _LANE_OF[self]

    @property
    def is_content(self) -> bool:
        return self >= OpType.ANNOUNCE


_LANE_OF = {
    OpType.MEMBERSHIP: Lane.CONTROL,
    OpType.ENVELOPE: Lane.CONTROL,
    OpType.ANNOUNCE: Lane.ANNOUNCE,
    OpType.CHAT: Lane.CHAT,
    OpType.BULK: Lane.BULK,
}


def _op_id(value: Any) -> int:
    return s.uint(value, "op id", minimum=1)


def _signature(value: Any) -> bytes:
    return s.bstr(value, "signature", size=SIGNATURE_BYTES)


@dataclass(frozen=True, slots=True)
class ContentOp:
    """An end-to-end encrypted message or form op, in one of the content lanes."""

    op_type: OpType
    op_id: int
    payload: bytes
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.op_type, OpType) or not self.op_type.is_content:
            raise s.bad("content op type must be 2, 3 or 4")
        _op_id(self.op_id)
        s.bstr(self.payload, "payload", max_len=MAX_PAYLOAD_BYTES)
        _signature(self.signature)

    def signed_fields(self, *, pulled: bool) -> list[Any]:
        return [self.payload]

    def fields(self, *, pulled: bool) -> list[Any]:
        return [*self.signed_fields(pulled=pulled), self.signature]


@dataclass(frozen=True, slots=True)
class MembershipOp:
    """A signed, chained change to a conversation's roster (readable by the server)."""

    op_id: int
    prev: bytes | None
    change: Change
    signature: bytes

    op_type = OpType.MEMBERSHIP

    def __post_init__(self) -> None:
        _op_id(self.op_id)
        if isinstance(self.change, CreateConversation):
            if self.prev is not None:
                raise s.bad("a create has no prev (null)")
        elif self.prev is None:
            raise s.bad("a membership change after create names its prev")
        else:
            s.bstr(self.prev, "prev", size=HASH_BYTES)
        _signature(self.signature)

    def signed_fields(self, *, pulled: bool) -> list[Any]:
        return [self.prev, self.change.to_value()]

    def fields(self, *, pulled: bool) -> list[Any]:
        return [*self.signed_fields(pulled=pulled), self.signature]


@dataclass(frozen=True, slots=True)
class EnvelopeOp:
    """A conversation key sealed to one device; only that device receives it.

    ``to_device`` is carried in the push form only: the pull form is delivered
    to its addressee alone, so decoding a pulled envelope leaves it ``None``.
    """

    op_id: int
    to_device: int | None
    sealed: bytes
    signature: bytes

    op_type = OpType.ENVELOPE

    def __post_init__(self) -> None:
        _op_id(self.op_id)
        if self.to_device is not None:
            s.uint(self.to_device, "envelope device", minimum=1)
        s.bstr(self.sealed, "sealed key", max_len=MAX_PAYLOAD_BYTES)
        _signature(self.signature)

    def signed_fields(self, *, pulled: bool) -> list[Any]:
        if pulled:
            return [self.sealed]
        if self.to_device is None:
            raise s.bad("a pushed envelope names its device")
        return [self.to_device, self.sealed]

    def fields(self, *, pulled: bool) -> list[Any]:
        return [*self.signed_fields(pulled=pulled), self.signature]


@dataclass(frozen=True, slots=True)
class UnknownOp:
    """A pulled op of a type this version does not know: kept, skipped by the client."""

    op_type: int
    rest: tuple[Any, ...]

    op_id = 0

    def fields(self, *, pulled: bool) -> list[Any]:
        return list(self.rest)


Op = ContentOp | MembershipOp | EnvelopeOp


def op_type_of(value: Any) -> int:
    return s.uint(s.array(value, "op", min_len=2)[0], "op type")


def _exactly(fields: list[Any], count: int, what: str) -> None:
    # Signed arrays have a fixed length in version 1: an element a receiver would
    # ignore could not be covered by the signature it checks.
    if len(fields) != count:
        raise s.bad(f"{what} has exactly {count} fields after the op id")


def op_from_fields(op_type: int, op_id: Any, fields: list[Any], *, pulled: bool) -> Op:
    """Build an op from the elements after its op id (push or pull form)."""
    if op_type == OpType.MEMBERSHIP:
        _exactly(fields, 3, "a membership op")
        prev = None if fields[0] is None else s.bstr(fields[0], "prev", size=HASH_BYTES)
        return MembershipOp(_op_id(op_id), prev, change_from_value(fields[1]), fields[2])
    if op_type == OpType.ENVELOPE:
        if pulled:
            _exactly(fields, 2, "a pulled envelope")
            return EnvelopeOp(_op_id(op_id), None, fields[0], fields[1])
        _exactly(fields, 3, "an envelope op")
        to_device = s.uint(fields[0], "envelope device", minimum=1)
        return EnvelopeOp(_op_id(op_id), to_device, fields[1], fields[2])
    if op_type in (OpType.ANNOUNCE, OpType.CHAT, OpType.BULK):
        _exactly(fields, 2, "a content op")
        payload = s.bstr(fields[0], "payload", max_len=MAX_PAYLOAD_BYTES)
        return ContentOp(OpType(op_type), _op_id(op_id), payload, _signature(fields[1]))
    raise s.bad(f"unknown op type {op_type}")


def push_op_to_value(op: Op) -> list[Any]:
    return [int(op.op_type), op.op_id, *op.fields(pulled=False)]


def push_op_from_value(value: Any) -> Op:
    raw = s.array(value, "pushed op", min_len=2)
    return op_from_fields(op_type_of(raw), raw[1], raw[2:], pulled=False)
