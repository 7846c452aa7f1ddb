"""Which seq ranges of which conversations a device may pull (SPEC.md section 9).

Shared by every backend, so that SQLite and PostgreSQL apply one rule.
"""

from __future__ import annotations

from collections.abc import Sequence

# A user's membership spans: (conv_id, wire conv id, joined_seq, left_seq or None).
Span = tuple[int, bytes, int, int | None]


def visible_ranges(spans: Sequence[Span], *, device_joined: int, lane: int, after: int,
                   upto: int) -> list[tuple[int, int, int]]:
    """(conv_id, low, high): the ops of ``lane`` with ``low < seq <= high`` in each
    conversation, given the cursor ``after`` and the high-water mark ``upto``.

    Membership ops (lane 0) are the whole chain, up to the user's last removal if
    not a member now, so a late joiner can verify it. Content is what was stored
    while the user was a member, and not before the device registered."""
    ranges: list[tuple[int, int, int]] = []
    if lane == 0:
        ends: dict[int, int | None] = {}
        for conv_id, _, _, left in spans:
            if left is None:
                ends[conv_id] = None
            elif conv_id not in ends:
                ends[conv_id] = left
            elif (end := ends[conv_id]) is not None:
                ends[conv_id] = max(end, left)
        for conv_id, end in ends.items():
            high = upto if end is None else min(upto, end)
            if high > after:
                ranges.append((conv_id, after, high))
        return ranges
    for conv_id, _, joined, left in spans:
        high = upto if left is None else min(upto, left - 1)
        low = max(after, joined, device_joined)  # no history for a new device
        if high > low:
            ranges.append((conv_id, low, high))
    return ranges


def chain_end(left_seqs: Sequence[int | None]) -> int | None:
    """Where a user's view of a conversation's membership chain ends, from the
    ``left_seq`` of each of its spans: nowhere while a member, else at the last removal."""
    return None if None in left_seqs else max(s for s in left_seqs if s is not None)
