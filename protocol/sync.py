"""The sync rules both sides need: op ids, cursors, and packing a response into a budget.

Theory of operation (SPEC.md, "The sync exchange"):

* **Op ids.** A device numbers its ops; an op is identified by (device, op id).
  A pushed op whose id the server already holds is a replay: if its bytes are
  the same, the server answers the ack it gave the first time and stores
  nothing; if they differ, the whole push is refused (``op_conflict``). A new
  op id must be above every op id the server holds for the device
  (``op_out_of_order``), so the server's order of a device's ops is the
  device's own order.
* **Cursors.** Every op gets a global sequence number at commit. A cursor
  holds, per lane, the highest sequence number up to which the device has
  every op of that lane it may see. The server keeps no cursor: the client
  sends its cursor with each request and stores the new one only once it
  holds the response, so a response lost in flight loses nothing.
* **Budget and lanes.** The server gathers, per lane and in sequence order,
  the ops after the cursor up to its high-water mark, and fills the response
  lane by lane: control, announcements, chat, bulk. It stops at the first op
  that does not fit; that lane's cursor stops at the last op delivered and
  later lanes do not move, so an announcement never waits behind chatter. The
  one exception to the budget: when a response would otherwise carry no op,
  the first op is sent alone even if it is larger than the budget, so a large
  op can never block a lane forever.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .auth import TAG_BYTES
from .codec import dumps, head_size
from .errors import ErrorCode, ProtocolError
from .frames import LANES, Cursor, PullBlock, PulledOp, SyncResponse
from .ops import CONV_ID_BYTES, Op, push_op_to_value

__all__ = [
    "Candidate",
    "LaneBatch",
    "StoredOp",
    "check_cursor",
    "classify_push",
    "op_digest",
    "pack_response",
    "response_frame_size",
]


def op_digest(conv: bytes, op: Op) -> bytes:
    """SHA-256 of an op's bytes as pushed: equal digests mean 'the same op'."""
    return hashlib.sha256(dumps([conv, push_op_to_value(op)])).digest()


@dataclass(frozen=True, slots=True)
class StoredOp:
    """What the server remembers of an op for replays: its digest and the seq it acked."""

    digest: bytes
    seq: int


def classify_push(
    pushed: Sequence[tuple[int, bytes]],
    stored: Mapping[int, StoredOp],
    highest_op_id: int,
) -> list[int | None]:
    """Sort a push into replays and new ops, or refuse it whole.

    ``pushed`` lists (op id, digest) in push order; ``stored`` maps the op ids
    among them that the server already holds for this device; ``highest_op_id``
    is the highest op id it holds for the device (0 for none). Returns, per
    pushed op, the seq of its earlier ack, or ``None`` for a new op.
    """
    result: list[int | None] = []
    for index, (op_id, digest) in enumerate(pushed):
        earlier = stored.get(op_id)
        if earlier is not None:
            if earlier.digest != digest:
                raise ProtocolError(
                    ErrorCode.OP_CONFLICT,
                    f"op id {op_id} was already used for a different op",
                    op_index=index,
                )
            result.append(earlier.seq)
        elif op_id <= highest_op_id:
            raise ProtocolError(
                ErrorCode.OP_OUT_OF_ORDER,
                f"new op id {op_id} is not above {highest_op_id}",
                op_index=index,
            )
        else:
            result.append(None)
    return result


def check_cursor(cursor: Cursor, high_water: int) -> None:
    """Refuse a cursor beyond anything the server has given out."""
    if max(cursor.lanes) > high_water:
        raise ProtocolError(
            ErrorCode.CURSOR_AHEAD,
            "cursor is ahead of this server; reset it to 0 and pull again",
        )


def response_frame_size(body_len: int) -> int:
    """Bytes of an authenticated response whose body is ``body_len`` bytes."""
    return 1 + 1 + head_size(body_len) + body_len + 1 + TAG_BYTES


@dataclass(frozen=True, slots=True)
class Candidate:
    """An op the device may see, with its conversation."""

    conv: bytes
    pulled: PulledOp


@dataclass(frozen=True, slots=True)
class LaneBatch:
    """The ops of one lane after the cursor, in sequence order.

    ``complete`` is true when these are all the lane's ops up to the high-water
    mark; false when the server read only the first of them.
    """

    candidates: Sequence[Candidate] = ()
    complete: bool = True


class _BlockBuilder:
    __slots__ = ("conv", "last_seq", "ops", "size")

    def __init__(self, conv: bytes) -> None:
        self.conv = conv
        self.ops: list[PulledOp] = []
        self.last_seq = 0
        self.size = head_size(1) + 1 + CONV_ID_BYTES

    def cost_of(self, pulled: PulledOp) -> int:
        """Bytes this block grows by if ``pulled`` is appended."""
        op_size = len(dumps(pulled.to_value(pulled.seq - self.last_seq)))
        count = 1 + len(self.ops)
        return op_size + head_size(count + 1) - head_size(count)

    def append(self, pulled: PulledOp, cost: int) -> None:
        self.ops.append(pulled)
        self.last_seq = pulled.seq
        self.size += cost


def pack_response(
    *,
    acks: Sequence[int],
    lanes: Sequence[LaneBatch],
    cursor: Cursor,
    high_water: int,
    budget: int,
) -> SyncResponse:
    """Fill a sync response in lane order without exceeding ``budget`` bytes.

    ``budget`` counts the whole authenticated response frame. ``cursor`` is
    the request's cursor (already checked against ``high_water``).
    """
    if len(lanes) != len(LANES):
        raise ValueError("one batch per lane")
    # Fixed part: map head, acks, and room for the largest cursor and the more flag.
    fixed = 1
    if acks:
        fixed += 1 + head_size(len(acks)) + sum(head_size(seq) for seq in acks)
    fixed += 1 + 1 + len(LANES) * head_size(high_water)
    fixed += 2

    blocks: list[_BlockBuilder] = []
    blocks_size = 0  # sum of block sizes

    def body_size(extra_blocks: int, extra_size: int) -> int:
        count = len(blocks) + extra_blocks
        if count == 0:
            return fixed
        return fixed + 1 + head_size(count) + blocks_size + extra_size

    positions = list(cursor.lanes)
    more = False
    stopped = False
    delivered = 0
    for lane, batch in zip(LANES, lanes, strict=True):
        if stopped and (batch.candidates or not batch.complete):
            more = True
            continue
        lane_blocks: dict[bytes, _BlockBuilder] = {}
        taken = 0
        for candidate in batch.candidates:
            builder = lane_blocks.get(candidate.conv)
            fresh = builder is None
            if builder is None:
                builder = _BlockBuilder(candidate.conv)
            cost = builder.cost_of(candidate.pulled)
            grown = cost + (builder.size if fresh else 0)
            total = response_frame_size(body_size(1 if fresh else 0, grown))
            if total > budget and delivered:
                stopped = True
                break
            if fresh:
                lane_blocks[candidate.conv] = builder
                blocks.append(builder)
            builder.append(candidate.pulled, cost)
            blocks_size += grown
            delivered += 1
            taken += 1
            positions[lane] = candidate.pulled.seq
            if total > budget:  # the one allowed oversize op: sent alone
                stopped = True
                break
        if taken == len(batch.candidates) and batch.complete:
            positions[lane] = max(positions[lane], high_water)
        else:
            # Cut short (budget) or read only in part (the server's read limit): later
            # lanes must not run ahead of this one.
            more = True
            stopped = True

    return SyncResponse(
        cursor=Cursor((positions[0], positions[1], positions[2], positions[3])),
        acks=tuple(acks),
        blocks=tuple(PullBlock(b.conv, tuple(b.ops)) for b in blocks),
        more=more,
    )
