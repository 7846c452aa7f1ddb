"""Sync rules: op ids and replays, cursors, and packing into a byte budget by lane."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    AuthedResponse,
    Candidate,
    ContentOp,
    Cursor,
    EnvelopeOp,
    ErrorCode,
    Lane,
    LaneBatch,
    OpType,
    ProtocolError,
    PulledOp,
    StoredOp,
    check_cursor,
    classify_push,
    encode,
    op_digest,
    pack_response,
    response_frame_size,
)
from protocol.limits import MIN_BUDGET

SIG = bytes(64)
CONVS = [bytes([n]) * 8 for n in range(1, 5)]


def test_replay_with_same_bytes_returns_the_earlier_ack() -> None:
    stored = {5: StoredOp(b"d5", 900)}
    assert classify_push([(5, b"d5"), (6, b"d6")], stored, highest_op_id=5) == [900, None]


def test_same_op_id_with_different_bytes_is_a_conflict() -> None:
    with pytest.raises(ProtocolError) as refused:
        classify_push([(4, b"d4"), (5, b"other")],
                      {4: StoredOp(b"d4", 899), 5: StoredOp(b"d5", 900)}, highest_op_id=5)
    assert refused.value.code is ErrorCode.OP_CONFLICT
    assert refused.value.op_index == 1


def test_new_op_id_below_the_highest_is_out_of_order() -> None:
    with pytest.raises(ProtocolError) as refused:
        classify_push([(3, b"d3")], {}, highest_op_id=5)
    assert refused.value.code is ErrorCode.OP_OUT_OF_ORDER


def test_op_digest_covers_conversation_and_bytes() -> None:
    op = ContentOp(OpType.CHAT, 1, b"a", SIG)
    assert op_digest(CONVS[0], op) == op_digest(CONVS[0], ContentOp(OpType.CHAT, 1, b"a", SIG))
    assert op_digest(CONVS[0], op) != op_digest(CONVS[1], op)
    assert op_digest(CONVS[0], op) != op_digest(CONVS[0], ContentOp(OpType.BULK, 1, b"a", SIG))


def test_cursor_ahead_of_the_server_is_refused() -> None:
    check_cursor(Cursor((5, 5, 3, 0)), high_water=5)
    with pytest.raises(ProtocolError) as refused:
        check_cursor(Cursor((5, 6, 3, 0)), high_water=5)
    assert refused.value.code is ErrorCode.CURSOR_AHEAD


def chat(seq: int, conv: int = 0, size: int = 100, op_type: OpType = OpType.CHAT) -> Candidate:
    op = ContentOp(op_type, seq, bytes(size), SIG)
    return Candidate(CONVS[conv], PulledOp(seq, 300, op))


def envelope(seq: int, conv: int = 0) -> Candidate:
    return Candidate(CONVS[conv], PulledOp(seq, 300, EnvelopeOp(seq, None, bytes(80), SIG)))


def response_bytes(budget: int, **kwargs: object) -> tuple[object, int]:
    response = pack_response(budget=budget, **kwargs)  # type: ignore[arg-type]
    body = encode(response)
    size = len(encode(AuthedResponse(body, bytes(16))))
    assert size == response_frame_size(len(body))
    return response, size


def test_everything_fits_and_cursor_jumps_to_the_high_water_mark() -> None:
    lanes = [LaneBatch([envelope(10)]), LaneBatch([chat(12, op_type=OpType.ANNOUNCE)]),
             LaneBatch([chat(11), chat(13)]), LaneBatch()]
    response, size = response_bytes(10_000, acks=[], lanes=lanes, cursor=Cursor.at(9),
                                    high_water=20)
    assert size <= 10_000
    assert response.cursor == Cursor.at(20)  # type: ignore[attr-defined]
    assert not response.more  # type: ignore[attr-defined]
    assert [op.seq for b in response.blocks for op in b.ops] == [10, 12, 11, 13]  # type: ignore[attr-defined]


def test_tight_budget_sends_control_and_announcements_before_chat() -> None:
    lanes = [LaneBatch([envelope(30)]), LaneBatch([chat(40, op_type=OpType.ANNOUNCE)]),
             LaneBatch([chat(n) for n in range(10, 30)]),
             LaneBatch([chat(50, op_type=OpType.BULK)])]
    response, size = response_bytes(800, acks=[], lanes=lanes, cursor=Cursor.at(9), high_water=60)
    delivered = [op.seq for b in response.blocks for op in b.ops]  # type: ignore[attr-defined]
    assert delivered[:2] == [30, 40]
    assert 10 in delivered and 29 not in delivered and 50 not in delivered
    assert size <= 800
    assert response.more  # type: ignore[attr-defined]
    cursor = response.cursor  # type: ignore[attr-defined]
    assert cursor[Lane.CONTROL] == 60 and cursor[Lane.ANNOUNCE] == 60
    assert cursor[Lane.CHAT] == max(s for s in delivered if s < 30)
    assert cursor[Lane.BULK] == 9


def test_an_op_larger_than_the_budget_is_sent_alone() -> None:
    lanes = [LaneBatch(), LaneBatch(), LaneBatch([chat(10, size=3000), chat(11)]), LaneBatch()]
    response, size = response_bytes(MIN_BUDGET, acks=[], lanes=lanes, cursor=Cursor.at(9),
                                     high_water=11)
    assert [op.seq for b in response.blocks for op in b.ops] == [10]  # type: ignore[attr-defined]
    assert size > MIN_BUDGET
    assert response.more and response.cursor[Lane.CHAT] == 10  # type: ignore[attr-defined]


def test_incomplete_lane_sets_more_and_stops_at_the_last_op() -> None:
    lanes = [LaneBatch(), LaneBatch(), LaneBatch([chat(10), chat(11)], complete=False), LaneBatch()]
    response, _ = response_bytes(10_000, acks=[], lanes=lanes, cursor=Cursor.at(9), high_water=99)
    assert response.more  # type: ignore[attr-defined]
    assert response.cursor.lanes == (99, 99, 11, 99)  # type: ignore[attr-defined]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[LaneBatch], int, int, list[int], Cursor]:
    rng = random.Random(draw(st.integers(min_value=0, max_value=2**32)))
    start = draw(st.sampled_from([0, 200, 70_000, 5_000_000_000]))
    seqs = sorted(rng.sample(range(start + 1, start + 400), draw(st.integers(0, 60))))
    lanes: list[list[Candidate]] = [[], [], [], []]
    for seq in seqs:
        lane = rng.randrange(4)
        conv = rng.randrange(len(CONVS))
        if lane == 0:
            lanes[0].append(envelope(seq, conv))
        else:
            op_type = (OpType.ANNOUNCE, OpType.CHAT, OpType.BULK)[lane - 1]
            lanes[lane].append(chat(seq, conv, rng.choice([0, 10, 100, 400, 2000]), op_type))
    acks = [start + rng.randrange(1, 400) for _ in range(rng.randrange(5))]
    budget = draw(st.integers(min_value=MIN_BUDGET + 9 * len(acks), max_value=20_000))
    high_water = start + 400
    # Sometimes the server read only the first ops of a lane (its read limit).
    batches = []
    for candidates in lanes:
        if candidates and rng.random() < 0.2:
            batches.append(LaneBatch(candidates[: rng.randrange(1, len(candidates) + 1)],
                                     complete=False))
        else:
            batches.append(LaneBatch(candidates))
    return batches, budget, high_water, acks, Cursor.at(start)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_packing_properties(scenario: tuple[list[LaneBatch], int, int, list[int], Cursor]) -> None:
    lanes, budget, high_water, acks, cursor = scenario
    response, size = response_bytes(budget, acks=acks, lanes=lanes, cursor=cursor,
                                     high_water=high_water)
    delivered = [op for b in response.blocks for op in b.ops]  # type: ignore[attr-defined]
    # The budget holds, but for one op sent alone.
    assert size <= budget or len(delivered) == 1
    assert response.acks == tuple(acks)  # type: ignore[attr-defined]
    delivered_seqs = {op.seq for op in delivered}
    new = response.cursor  # type: ignore[attr-defined]
    for lane, batch in zip(Lane, lanes, strict=True):
        assert cursor[lane] <= new[lane] <= high_water  # never backwards, never ahead
        if not batch.complete and batch.candidates:  # never past what the server read
            assert new[lane] <= batch.candidates[-1].pulled.seq
        for candidate in batch.candidates:  # never skips: all below the new cursor were sent
            if candidate.pulled.seq <= new[lane]:
                assert candidate.pulled.seq in delivered_seqs
            else:
                assert candidate.pulled.seq not in delivered_seqs
    # Lane order: once a lane is cut short, no later lane delivers anything.
    cut = next((lane for lane, batch in zip(Lane, lanes, strict=True)
                if not batch.complete
                or any(c.pulled.seq not in delivered_seqs for c in batch.candidates)), None)
    if cut is not None:
        assert response.more  # type: ignore[attr-defined]
        for lane, batch in zip(Lane, lanes, strict=True):
            if lane > cut:
                assert not any(c.pulled.seq in delivered_seqs for c in batch.candidates)
    else:
        assert not response.more  # type: ignore[attr-defined]
        assert new == Cursor.at(high_water)
