"""Round trips for every frame, and the frame-level rules the vectors do not spell out."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    ContentOp,
    Cursor,
    ErrorCode,
    ErrorFrame,
    OpType,
    ProtocolError,
    PullBlock,
    PulledOp,
    PushBlock,
    SyncRequest,
    SyncResponse,
    decode,
    encode,
)
from protocol.limits import MAX_OPS_PER_PUSH

from .strategies import FRAMES

CONV = bytes(8)
SIG = bytes(64)


@pytest.mark.parametrize("frame_type", list(FRAMES), ids=lambda t: t.__name__)
def test_every_frame_round_trips(frame_type: Any) -> None:
    @settings(max_examples=150, deadline=None)
    @given(FRAMES[frame_type])
    def round_trip(frame: object) -> None:
        data = encode(frame)  # type: ignore[arg-type]
        decoded = decode(data, frame_type)
        assert decoded == frame
        assert encode(decoded) == data

    round_trip()


def test_cursor_is_one_integer_when_lanes_agree() -> None:
    assert encode(SyncRequest(cursor=Cursor.at(70_000))) == bytes.fromhex("a1021a00011170")
    assert decode(bytes.fromhex("a1028400000000"), SyncRequest).cursor == Cursor.at(0)


def test_defaults_are_omitted() -> None:
    assert encode(SyncRequest()) == b"\xa0"
    assert encode(SyncResponse(Cursor())) == bytes.fromhex("a10300")


def test_pull_block_carries_gaps() -> None:
    op = ContentOp(OpType.CHAT, 9, b"x", SIG)
    block = PullBlock(CONV, (PulledOp(1_000_000, 300, op), PulledOp(1_000_003, 300, op)))
    value = block.to_value()
    assert value[1][1] == 1_000_000 and value[2][1] == 3
    assert PullBlock.from_value(value) == block


def test_pull_block_seqs_must_increase() -> None:
    op = ContentOp(OpType.CHAT, 9, b"x", SIG)
    with pytest.raises(ProtocolError):
        PullBlock(CONV, (PulledOp(5, 300, op), PulledOp(5, 300, op)))


def test_push_limits() -> None:
    ops = tuple(ContentOp(OpType.CHAT, i, b"", SIG) for i in range(1, MAX_OPS_PER_PUSH + 2))
    with pytest.raises(ProtocolError) as refused:
        SyncRequest(push=(PushBlock(CONV, ops),))
    assert refused.value.code is ErrorCode.LIMIT_EXCEEDED
    SyncRequest(push=(PushBlock(CONV, ops[:-1]),))


@given(st.integers(min_value=0, max_value=4096), st.integers(min_value=0, max_value=40))
def test_budget_must_cover_the_acks(budget: int, count: int) -> None:
    ops = tuple(ContentOp(OpType.CHAT, i, b"", SIG) for i in range(1, count + 1))
    push = (PushBlock(CONV, ops),) if ops else ()
    if budget >= 128 + 9 * count:
        SyncRequest(push=push, budget=budget)
    else:
        with pytest.raises(ProtocolError) as refused:
            SyncRequest(push=push, budget=budget)
        assert refused.value.code is ErrorCode.BUDGET_TOO_SMALL


def test_effective_budget_defaults_and_caps() -> None:
    assert SyncRequest().effective_budget == 16 * 1024
    assert SyncRequest(budget=10**12).effective_budget == 4 * 1024 * 1024


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    # An extra map key and an extra trailing array element, as a later minor version may add.
    assert decode(bytes.fromhex("a2021903e81863f5"), SyncRequest).cursor == Cursor.at(1000)
    # [1, 42, "hello", {}, "extra"]
    framed = bytes.fromhex("8501182a" "6568656c6c6f" "a0" "656578747261")
    assert decode(framed, ErrorFrame) == ErrorFrame(42, "hello")


def test_error_frame_from_error_keeps_code_and_retry() -> None:
    frame = ErrorFrame.from_error(ProtocolError(ErrorCode.RATE_LIMITED, "slow", retry_after=7))
    assert frame.known_code is ErrorCode.RATE_LIMITED and frame.retry_after == 7
    assert ErrorCode(frame.code).http_status == 429
    unsupported = ErrorFrame.from_error(ProtocolError(ErrorCode.UNSUPPORTED_VERSION, "v9"))
    assert unsupported.supported_versions == (1,)
    assert ErrorFrame(999, "from the future").known_code is None
    assert ErrorFrame(999, "from the future").to_error().code is ErrorCode.INTERNAL


def test_every_error_code_maps_to_a_status() -> None:
    for code in ErrorCode:
        assert code.http_status in {400, 401, 403, 404, 409, 413, 429, 500, 503}
        assert code.peer_fault == (code.http_status < 500)


def test_text_limits_count_utf8_bytes() -> None:
    from protocol import RegisterRequest

    keys, proof = bytes(32), bytes(64)
    RegisterRequest("+254700000001", "a" * 64, keys, keys, proof)
    RegisterRequest("+254700000001", "é" * 32, keys, keys, proof)  # 64 bytes
    for code in ("a" * 65, "é" * 33):
        with pytest.raises(ProtocolError) as refused:
            RegisterRequest("+254700000001", code, keys, keys, proof)
        assert refused.value.code is ErrorCode.LIMIT_EXCEEDED
    ErrorFrame(1, "ü" * 100)
    with pytest.raises(ProtocolError):
        ErrorFrame(1, "ü" * 101)
    long = ErrorFrame.from_error(ProtocolError(ErrorCode.BAD_FRAME, "ü" * 150))
    assert len(long.message.encode()) <= 200
