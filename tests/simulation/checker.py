"""The invariants a simulation run must keep, checked on its recorded outcome.

Theory of operation. A run records what every device sent, every ack it and
the server produced, every pull (cursor before and after, the ops delivered,
the server's high-water mark at the time) and every chain fetch; at the end
the simulator reads every stored op from the database. ``check`` then
recomputes, from the stored membership ops alone, who may see what (SPEC.md
section 9) and compares. It shares no code with the server's visibility
rules (the spans table and the pull queries): a user's spans are rebuilt here
from the create, add and remove changes in seq order.

Because a content op's visibility is fixed when it is committed (a span only
ever opens or closes at a later seq) and a user's view of a membership chain
only grows, "authorised at the time of a pull" is "authorised given the ops
with seq up to that pull's high-water mark".
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from protocol import AddMembers, CreateConversation, RemoveMembers, loads
from protocol.membership import change_from_value

LANE_OF_TYPE = {0: 0, 1: 0, 2: 1, 3: 2, 4: 3}
MEMBERSHIP, ENVELOPE = 0, 1


@dataclass(frozen=True, slots=True)
class Row:
    """One stored op, as read from the database at the end of a run."""

    seq: int
    conv: bytes
    op_type: int
    device_id: int
    op_id: int
    to_device: int | None
    fields: bytes
    digest: bytes

    @property
    def lane(self) -> int:
        return LANE_OF_TYPE[self.op_type]


@dataclass(frozen=True, slots=True)
class Delivered:
    """An op as a device received it, with the digest of its push form."""

    seq: int
    from_device: int
    op_id: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class PullEvent:
    """One sync response a device accepted."""

    high_water: int
    before: tuple[int, ...]
    after: tuple[int, ...]
    delivered: tuple[Delivered, ...]


@dataclass(frozen=True, slots=True)
class ChainEvent:
    """One chain response a device accepted: the membership ops it carried."""

    high_water: int
    conv: bytes
    delivered: tuple[Delivered, ...]


@dataclass
class DeviceLog:
    """Everything one device did and got, as the simulator saw it."""

    device_id: int
    user_id: int
    joined_seq: int  # the high-water mark when the device registered
    sent: dict[int, bytes] = field(default_factory=dict)  # op id -> digest of its push form
    acks: dict[int, list[int]] = field(default_factory=dict)  # acks the device received
    server_acks: dict[int, list[int]] = field(default_factory=dict)  # every ack produced
    pulls: list[PullEvent] = field(default_factory=list)
    chains: list[ChainEvent] = field(default_factory=list)
    final_cursor: tuple[int, ...] = (0, 0, 0, 0)


@dataclass
class Outcome:
    """A finished run: the devices' logs and the database's ops."""

    seed: int
    devices: dict[int, DeviceLog]
    rows: list[Row]


@dataclass(frozen=True, slots=True)
class Span:
    joined: int
    left: int | None


class Authority:
    """Who may see which stored op, recomputed from the membership ops."""

    def __init__(self, rows: Iterable[Row]) -> None:
        self.rows = sorted(rows, key=lambda row: row.seq)
        self.by_seq = {row.seq: row for row in self.rows}
        self.lane_seqs: list[list[int]] = [[], [], [], []]
        for row in self.rows:
            self.lane_seqs[row.lane].append(row.seq)
        self.spans: dict[tuple[bytes, int], list[Span]] = {}
        members: dict[bytes, set[int]] = {}
        for row in self.rows:
            if row.op_type != MEMBERSHIP:
                continue
            change = change_from_value(loads(row.fields)[1])
            current = members.setdefault(row.conv, set())
            if isinstance(change, CreateConversation | AddMembers):
                for member in change.members:
                    if member.user_id not in current:
                        current.add(member.user_id)
                        self.spans.setdefault((row.conv, member.user_id), []).append(
                            Span(row.seq, None))
            elif isinstance(change, RemoveMembers):
                for user in change.user_ids:
                    current.discard(user)
                    spans = self.spans[(row.conv, user)]
                    spans[-1] = Span(spans[-1].joined, row.seq)

    def may_see(self, log: DeviceLog, row: Row, high_water: int) -> bool:
        """May ``log``'s device receive ``row`` from a sync at this high-water mark?"""
        if row.seq > high_water or row.device_id == log.device_id:
            return False
        if row.op_type == ENVELOPE:
            return row.to_device == log.device_id
        spans = [span for span in self.spans.get((row.conv, log.user_id), ())
                 if span.joined <= high_water]
        if row.op_type == MEMBERSHIP:
            return self.in_chain_view(log.user_id, row, high_water)
        if row.seq <= log.joined_seq:
            return False  # a new device gets no history
        return any(span.joined < row.seq and (span.left is None or row.seq < span.left)
                   for span in spans)

    def in_chain_view(self, user_id: int, row: Row, high_water: int) -> bool:
        """Is membership op ``row`` part of the chain ``user_id`` may read: the whole chain
        while a member, up to the last removal once removed?"""
        spans = [span for span in self.spans.get((row.conv, user_id), ())
                 if span.joined <= high_water]
        if row.op_type != MEMBERSHIP or row.seq > high_water or not spans:
            return False
        if any(span.left is None or span.left > high_water for span in spans):
            return True
        return row.seq <= max(span.left for span in spans if span.left is not None)

    def lane_between(self, lane: int, low: int, high: int) -> list[Row]:
        seqs = self.lane_seqs[lane]
        start = bisect.bisect_right(seqs, low)
        end = bisect.bisect_right(seqs, high)
        return [self.by_seq[seq] for seq in seqs[start:end]]


def check(outcome: Outcome, *, limit: int = 20) -> list[str]:
    """Every invariant the run broke, as short sentences (empty when all hold)."""
    problems: list[str] = []
    authority = Authority(outcome.rows)
    high_water = max((row.seq for row in outcome.rows), default=0)
    stored: dict[tuple[int, int], Row] = {}
    for row in outcome.rows:
        key = (row.device_id, row.op_id)
        if key in stored:
            problems.append(f"op {key} stored twice, at seqs {stored[key].seq} and {row.seq}")
        stored[key] = row
    for log in outcome.devices.values():
        problems += _check_pushes(log, stored)
        problems += _check_pulls(log, authority)
        problems += _check_view(log, authority, high_water)
    for row in outcome.rows:
        author = outcome.devices.get(row.device_id)
        if author is None or author.sent.get(row.op_id) != row.digest:
            problems.append(f"op {(row.device_id, row.op_id)} at seq {row.seq} is stored but "
                            "its device never sent those bytes")
    if len(problems) > limit:
        problems = [*problems[:limit], f"... and {len(problems) - limit} more"]
    return problems


def _check_pushes(log: DeviceLog, stored: dict[tuple[int, int], Row]) -> list[str]:
    problems = []
    device = log.device_id
    for op_id, acks in sorted(log.acks.items()):
        row = stored.get((device, op_id))
        if row is None:
            problems.append(f"op {(device, op_id)} was acked {acks} but is not stored")
        elif set(acks) != {row.seq}:
            problems.append(f"op {(device, op_id)} is stored at seq {row.seq} but was acked "
                            f"{acks}")
    for op_id, acks in sorted(log.server_acks.items()):
        row = stored.get((device, op_id))
        if row is None or set(acks) != {row.seq}:
            problems.append(f"the server acked op {(device, op_id)} with {acks}, but it is "
                            f"stored at {None if row is None else row.seq}")
    own = sorted((op_id, row.seq) for (author, op_id), row in stored.items() if author == device)
    for (first_id, first_seq), (next_id, next_seq) in itertools.pairwise(own):
        if next_seq <= first_seq:
            problems.append(f"device {device}'s op {next_id} is stored before its op {first_id}")
    return problems


def _delivered_problems(log: DeviceLog, authority: Authority, high_water: int,
                        delivered: Iterable[Delivered], what: str) -> list[str]:
    """Each op delivered is the stored one, with its author's bytes, and authorised (a chain
    may include the device's own membership ops: it is for verifying the roster)."""
    problems = []
    for op in delivered:
        row = authority.by_seq.get(op.seq)
        if row is None or (row.device_id, row.op_id) != (op.from_device, op.op_id):
            problems.append(f"device {log.device_id} got {what} op {(op.from_device, op.op_id)}"
                            f" at seq {op.seq}, which is not what is stored there")
        elif row.digest != op.digest:
            problems.append(f"device {log.device_id} got op {(op.from_device, op.op_id)} with "
                            "bytes its author never sent")
        elif not (authority.may_see(log, row, high_water) if what == "a pulled"
                  else authority.in_chain_view(log.user_id, row, high_water)):
            problems.append(f"device {log.device_id} (user {log.user_id}) got {what} op "
                            f"{(op.from_device, op.op_id)} at seq {op.seq} that it may not see")
    return problems


def _check_pulls(log: DeviceLog, authority: Authority) -> list[str]:
    problems = []
    held: set[int] = set()
    for number, event in enumerate(log.pulls):
        problems += _delivered_problems(log, authority, event.high_water, event.delivered,
                                        "a pulled")
        held.update(op.seq for op in event.delivered)
        for lane in range(4):
            before, after = event.before[lane], event.after[lane]
            if after < before:
                problems.append(f"device {log.device_id}'s lane {lane} cursor went back from "
                                f"{before} to {after} (pull {number})")
            if after > event.high_water:
                problems.append(f"device {log.device_id}'s lane {lane} cursor {after} is past "
                                f"the high-water mark {event.high_water}")
            for row in authority.lane_between(lane, before, after):
                if row.seq not in held and authority.may_see(log, row, event.high_water):
                    problems.append(f"device {log.device_id}'s lane {lane} cursor skipped seq "
                                    f"{row.seq} (from {before} to {after}, pull {number})")
                    break
    for chain in log.chains:
        problems += _delivered_problems(log, authority, chain.high_water, chain.delivered,
                                        "a chain")
        for op in chain.delivered:
            stored = authority.by_seq.get(op.seq)
            if stored is not None and stored.conv != chain.conv:
                problems.append(f"a chain of {chain.conv.hex()} carried seq {op.seq}, which is "
                                "not one of its membership ops")
    return problems


def _check_view(log: DeviceLog, authority: Authority, high_water: int) -> list[str]:
    """At quiescence: exactly the authorised ops, the cursor at the high-water mark."""
    problems = []
    if log.final_cursor != (high_water,) * 4:
        problems.append(f"device {log.device_id} ended at cursor {log.final_cursor}, not at the "
                        f"high-water mark {high_water}")
    pulled = {op.seq for event in log.pulls for op in event.delivered}
    chained = {op.seq for event in log.chains for op in event.delivered}
    authorised = {row.seq for row in authority.rows if authority.may_see(log, row, high_water)}
    view = pulled | {seq for seq in chained if seq in authority.by_seq
                     and authority.by_seq[seq].device_id != log.device_id}
    missing, extra = sorted(authorised - view), sorted(view - authorised)
    if missing:
        problems.append(f"device {log.device_id} (user {log.user_id}) never got seqs "
                        f"{missing[:10]} it may see")
    if extra:
        problems.append(f"device {log.device_id} (user {log.user_id}) holds seqs {extra[:10]} "
                        "it may not see")
    return problems
