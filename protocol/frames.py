"""The sync exchange: request and response bodies (SPEC.md, "The sync exchange").

Ops travel in blocks, one block per conversation, so an 8-byte conversation
id is paid once per block rather than once per op. In a pull block each op
carries the gap from the op before it, the first op its full sequence number,
which keeps sequence numbers at one or two bytes on a busy conversation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import _schema as s
from .errors import ErrorCode, ProtocolError
from .limits import (
    ACK_BUDGET_BYTES,
    DEFAULT_BUDGET,
    MAX_BUDGET,
    MAX_OPS_PER_PUSH,
    MAX_UINT,
    MAX_WAIT_SECONDS,
    MIN_BUDGET,
)
from .ops import (
    CONV_ID_BYTES,
    Lane,
    Op,
    UnknownOp,
    op_from_fields,
    op_type_of,
    push_op_from_value,
    push_op_to_value,
)

__all__ = [
    "LANES",
    "ChainRequest",
    "ChainResponse",
    "Cursor",
    "PullBlock",
    "PulledOp",
    "PushBlock",
    "SyncRequest",
    "SyncResponse",
]

LANES = tuple(Lane)


def conv_id(value: Any) -> bytes:
    return s.bstr(value, "conversation id", size=CONV_ID_BYTES)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Per-lane pull position: the highest sequence number each lane has covered.

    On the wire it is one unsigned integer when all lanes agree (the common
    case once a device has caught up) and an array of four otherwise.
    """

    lanes: tuple[int, int, int, int] = (0, 0, 0, 0)

    def __post_init__(self) -> None:
        if type(self.lanes) is not tuple or len(self.lanes) != len(LANES):
            raise s.bad("cursor has one position per lane")
        for position in self.lanes:
            s.uint(position, "cursor position")

    @classmethod
    def at(cls, position: int) -> Cursor:
        return cls((position, position, position, position))

    def __getitem__(self, lane: Lane) -> int:
        return self.lanes[lane]

    def to_value(self) -> int | list[int]:
        first = self.lanes[0]
        if all(position == first for position in self.lanes):
            return first
        return list(self.lanes)

    @classmethod
    def from_value(cls, value: Any) -> Cursor:
        if type(value) is int:
            return cls.at(s.uint(value, "cursor"))
        raw = s.array(value, "cursor", min_len=len(LANES))
        if len(raw) != len(LANES):
            raise s.bad("cursor has exactly one position per lane")
        positions = [s.uint(position, "cursor position") for position in raw]
        return cls((positions[0], positions[1], positions[2], positions[3]))


ZERO_CURSOR = Cursor()


@dataclass(frozen=True, slots=True)
class PushBlock:
    """Ops a device pushes to one conversation, in op id order."""

    conv: bytes
    ops: tuple[Op, ...]

    def __post_init__(self) -> None:
        conv_id(self.conv)
        if not self.ops:
            raise s.bad("a push block carries at least one op")

    def to_value(self) -> list[Any]:
        return [self.conv, *(push_op_to_value(op) for op in self.ops)]

    @classmethod
    def from_value(cls, value: Any) -> PushBlock:
        raw = s.array(value, "push block", min_len=2)
        if len(raw) - 1 > MAX_OPS_PER_PUSH:
            raise s.too_many(f"more than {MAX_OPS_PER_PUSH} ops in one push")
        return cls(conv_id(raw[0]), tuple(push_op_from_value(op) for op in raw[1:]))


@dataclass(frozen=True, slots=True)
class PulledOp:
    """An op as delivered: its global sequence number and author device added."""

    seq: int
    from_device: int
    op: Op | UnknownOp

    def __post_init__(self) -> None:
        s.uint(self.seq, "seq", minimum=1)
        s.uint(self.from_device, "author device")

    def to_value(self, seq_field: int) -> list[Any]:
        if isinstance(self.op, UnknownOp):
            return [self.op.op_type, seq_field, *self.op.rest]
        return [int(self.op.op_type), seq_field, self.from_device, self.op.op_id,
                *self.op.fields(pulled=True)]


@dataclass(frozen=True, slots=True)
class PullBlock:
    """Ops of one conversation delivered in one response, in sequence order."""

    conv: bytes
    ops: tuple[PulledOp, ...]

    def __post_init__(self) -> None:
        conv_id(self.conv)
        if not self.ops:
            raise s.bad("a pull block carries at least one op")
        s.strictly_increasing([op.seq for op in self.ops], "sequence numbers in a block")

    def to_value(self) -> list[Any]:
        values: list[Any] = [self.conv]
        previous = 0
        for pulled in self.ops:
            values.append(pulled.to_value(pulled.seq - previous))
            previous = pulled.seq
        return values

    @classmethod
    def from_value(cls, value: Any) -> PullBlock:
        raw = s.array(value, "pull block", min_len=2)
        ops: list[PulledOp] = []
        seq = 0
        for item in raw[1:]:
            fields = s.array(item, "pulled op", min_len=2)
            op_type = op_type_of(fields)
            gap = s.uint(fields[1], "seq gap", minimum=1)
            if gap > MAX_UINT - seq:
                raise s.bad("sequence number out of range")
            seq += gap
            if op_type not in _KNOWN_TYPES:
                ops.append(PulledOp(seq, 0, UnknownOp(op_type, tuple(fields[2:]))))
                continue
            if len(fields) < 4:
                raise s.bad("pulled op needs seq, device and op id")
            device = s.uint(fields[2], "author device")
            ops.append(PulledOp(seq, device, op_from_fields(op_type, fields[3], fields[4:],
                                                            pulled=True)))
        return cls(conv_id(raw[0]), tuple(ops))


_KNOWN_TYPES = (0, 1, 2, 3, 4)


def _blocks(value: Any, what: str, max_count: int) -> list[Any]:
    return s.items(value, what, max_count=max_count, min_count=1)


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """Body of ``POST /v1/sync``: the push, where to pull from, and the budget."""

    push: tuple[PushBlock, ...] = ()
    cursor: Cursor = field(default=ZERO_CURSOR)
    budget: int | None = None
    wait_seconds: int = 0

    def __post_init__(self) -> None:
        count = self.op_count
        if count > MAX_OPS_PER_PUSH:
            raise s.too_many(f"more than {MAX_OPS_PER_PUSH} ops in one push")
        s.strictly_increasing([op.op_id for op in self.pushed_ops()], "op ids in a push")
        if self.budget is not None:
            s.uint(self.budget, "budget")
        if self.effective_budget < MIN_BUDGET + ACK_BUDGET_BYTES * count:
            raise ProtocolError(
                ErrorCode.BUDGET_TOO_SMALL,
                f"budget must be at least {MIN_BUDGET} + {ACK_BUDGET_BYTES} per pushed op",
            )
        s.uint(self.wait_seconds, "wait", maximum=MAX_WAIT_SECONDS)

    @property
    def op_count(self) -> int:
        return sum(len(block.ops) for block in self.push)

    @property
    def effective_budget(self) -> int:
        """The budget the server works to: the default when absent, capped at the maximum."""
        budget = DEFAULT_BUDGET if self.budget is None else self.budget
        return min(budget, MAX_BUDGET)

    def pushed_ops(self) -> Iterator[Op]:
        for block in self.push:
            yield from block.ops

    def to_value(self) -> dict[int, Any]:
        body: dict[int, Any] = {}
        if self.push:
            body[1] = [block.to_value() for block in self.push]
        if self.cursor != ZERO_CURSOR:
            body[2] = self.cursor.to_value()
        if self.budget is not None:
            body[3] = self.budget
        if self.wait_seconds:
            body[4] = self.wait_seconds
        return body

    @classmethod
    def from_value(cls, value: Any) -> SyncRequest:
        body = s.mapping(value, "sync request")
        push: tuple[PushBlock, ...] = ()
        if 1 in body:
            raw = _blocks(body[1], "push", MAX_OPS_PER_PUSH)
            push = tuple(PushBlock.from_value(block) for block in raw)
        cursor = Cursor.from_value(body[2]) if 2 in body else ZERO_CURSOR
        budget = s.uint(body[3], "budget") if 3 in body else None
        wait = s.uint(body[4], "wait", maximum=MAX_WAIT_SECONDS) if 4 in body else 0
        return cls(push, cursor, budget, wait)


@dataclass(frozen=True, slots=True)
class SyncResponse:
    """Body of the answer to a sync: acks, new ops, the new cursor, and ``more``."""

    cursor: Cursor
    acks: tuple[int, ...] = ()
    blocks: tuple[PullBlock, ...] = ()
    more: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.cursor, Cursor):
            raise s.bad("cursor required")
        for seq in self.acks:
            s.uint(seq, "ack", minimum=1)

    @property
    def op_count(self) -> int:
        return sum(len(block.ops) for block in self.blocks)

    def to_value(self) -> dict[int, Any]:
        body: dict[int, Any] = {}
        if self.acks:
            body[1] = list(self.acks)
        if self.blocks:
            body[2] = [block.to_value() for block in self.blocks]
        body[3] = self.cursor.to_value()
        if self.more:
            body[4] = True
        return body

    @classmethod
    def from_value(cls, value: Any) -> SyncResponse:
        body = s.mapping(value, "sync response")
        if 3 not in body:
            raise s.bad("sync response needs a cursor")
        acks: tuple[int, ...] = ()
        if 1 in body:
            raw = s.items(body[1], "acks", max_count=MAX_OPS_PER_PUSH, min_count=1)
            acks = tuple(s.uint(seq, "ack", minimum=1) for seq in raw)
        blocks: tuple[PullBlock, ...] = ()
        if 2 in body:
            raw = s.items(body[2], "blocks", max_count=MAX_BUDGET, min_count=1)
            blocks = tuple(PullBlock.from_value(block) for block in raw)
        more = s.boolean(body[4], "more") if 4 in body else False
        return cls(Cursor.from_value(body[3]), acks, blocks, more)


@dataclass(frozen=True, slots=True)
class ChainRequest:
    """Body of ``POST /v1/chain``: a conversation's membership chain above ``after``.

    A device added to a conversation that already exists has a cursor above
    the start of its chain; this is how it gets the ops it needs to verify
    the roster (SPEC.md section 9).
    """

    conv: bytes
    after: int = 0
    budget: int | None = None

    def __post_init__(self) -> None:
        conv_id(self.conv)
        s.uint(self.after, "after")
        if self.budget is not None and s.uint(self.budget, "budget") < MIN_BUDGET:
            raise ProtocolError(ErrorCode.BUDGET_TOO_SMALL, f"budget must be >= {MIN_BUDGET}")

    @property
    def effective_budget(self) -> int:
        return min(DEFAULT_BUDGET if self.budget is None else self.budget, MAX_BUDGET)

    def to_value(self) -> dict[int, Any]:
        body: dict[int, Any] = {1: self.conv}
        if self.after:
            body[2] = self.after
        if self.budget is not None:
            body[3] = self.budget
        return body

    @classmethod
    def from_value(cls, value: Any) -> ChainRequest:
        body = s.mapping(value, "chain request")
        if 1 not in body:
            raise s.bad("chain request needs a conversation")
        after = s.uint(body[2], "after") if 2 in body else 0
        budget = s.uint(body[3], "budget") if 3 in body else None
        return cls(conv_id(body[1]), after, budget)


@dataclass(frozen=True, slots=True)
class ChainResponse:
    """Membership ops of one conversation in seq order, and whether more follow."""

    block: PullBlock | None = None
    more: bool = False

    def to_value(self) -> dict[int, Any]:
        body: dict[int, Any] = {}
        if self.block is not None:
            body[1] = self.block.to_value()
        if self.more:
            body[2] = True
        return body

    @classmethod
    def from_value(cls, value: Any) -> ChainResponse:
        body = s.mapping(value, "chain response")
        block = PullBlock.from_value(body[1]) if 1 in body else None
        more = s.boolean(body[2], "more") if 2 in body else False
        return cls(block, more)
