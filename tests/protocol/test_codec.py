"""The strict codec: deterministic bytes out, only ProtocolError for anything refused."""

from __future__ import annotations

import tracemalloc

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import ErrorCode, ProtocolError, SyncRequest, decode, dumps, loads
from protocol.codec import head_size, scan
from protocol.limits import MAX_BODY_BYTES, MAX_DEPTH

# Values the protocol's CBOR subset can carry.
plain_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64 - 1),
              st.binary(max_size=40), st.text(max_size=20)),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.integers(min_value=0, max_value=2**64 - 1), children, max_size=4),
    ),
    max_leaves=20,
)


def depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(item) for item in value.values()), default=0)
    return 0


@given(plain_values)
def test_dumps_is_deterministic_and_loads_inverts_it(value: object) -> None:
    if depth(value) > MAX_DEPTH:
        return
    data = dumps(value)
    assert loads(data) == value
    assert dumps(loads(data)) == data


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_head_size_matches_the_encoder(argument: int) -> None:
    assert head_size(argument) == len(cbor2.dumps(argument))


@given(plain_values)
def test_non_canonical_map_order_is_refused(value: object) -> None:
    if not isinstance(value, dict) or len(value) < 2 or depth(value) > MAX_DEPTH:
        return
    items = sorted(value.items(), reverse=True)
    body = bytes([0xA0 + len(items)]) if len(items) < 24 else None
    if body is None:
        return
    for key, item in items:
        body += cbor2.dumps(key) + dumps(item)
    with pytest.raises(ProtocolError) as refused:
        loads(body)
    assert refused.value.code is ErrorCode.MALFORMED


@pytest.mark.parametrize(
    ("hex_", "code"),
    [
        ("", ErrorCode.MALFORMED),
        ("18", ErrorCode.MALFORMED),  # head cut short
        ("1817", ErrorCode.MALFORMED),  # 23 in two bytes
        ("190017", ErrorCode.MALFORMED),  # 23 in three bytes
        ("1a000000ff", ErrorCode.MALFORMED),  # 255 in five bytes
        ("1b00000000ffffffff", ErrorCode.MALFORMED),  # 2**32-1 in nine bytes
        ("3818", ErrorCode.MALFORMED),  # -25 encoded long is fine, -24 short is required
        ("fb3ff0000000000000", ErrorCode.MALFORMED),  # double
        ("fa3f800000", ErrorCode.MALFORMED),  # single
        ("f0", ErrorCode.MALFORMED),  # unassigned simple
        ("7f6161ff", ErrorCode.MALFORMED),  # indefinite text
        ("a1f600", ErrorCode.MALFORMED),  # null as key
        ("a12001", ErrorCode.MALFORMED),  # negative key
    ],
)
def test_cbor_level_refusals(hex_: str, code: ErrorCode) -> None:
    data = bytes.fromhex(hex_)
    if hex_ == "3818":  # -25 is shortest as 0x3818: accepted at the CBOR level
        assert loads(data) == -25
        return
    with pytest.raises(ProtocolError) as refused:
        loads(data)
    assert refused.value.code is code


def test_nesting_at_the_limit_is_accepted_and_one_deeper_refused() -> None:
    assert loads(bytes([0x81]) * MAX_DEPTH + b"\x00") is not None
    with pytest.raises(ProtocolError) as refused:
        loads(bytes([0x81]) * (MAX_DEPTH + 1) + b"\x00")
    assert refused.value.code is ErrorCode.LIMIT_EXCEEDED


def test_size_is_checked_before_decoding() -> None:
    with pytest.raises(ProtocolError) as refused:
        loads(b"\x00" * (MAX_BODY_BYTES + 1))
    assert refused.value.code is ErrorCode.TOO_LARGE
    with pytest.raises(ProtocolError):
        loads(b"\x41\x00", max_bytes=1)


def test_non_bytes_input_is_refused() -> None:
    with pytest.raises(ProtocolError):
        loads("a0")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "make",
    [
        lambda n: b"\x81" * n,  # nesting as deep as the input
        lambda n: b"\x9b" + (2**63).to_bytes(8, "big") + b"\x00" * (n - 9),  # huge array
        lambda n: b"\x5b" + (2**40).to_bytes(8, "big") + b"\x00" * (n - 9),  # huge bstr
        lambda n: b"\x99\xff\xff" + b"\x80" * (n - 3),  # many tiny items
        lambda n: b"\xbf" * n,  # indefinite maps
        lambda n: b"\xa1\x00" * (n // 2),  # maps nested by value
    ],
)
def test_one_mebibyte_adversarial_input_is_refused_quickly_in_little_memory(make: object) -> None:
    data = make(1024 * 1024)  # type: ignore[operator]
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            loads(data, max_bytes=2 * 1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Far below what allocating a declared length would take; the time it takes
    # is measured by bench/wire_cost.py, not asserted here.
    assert peak < 16 * 1024 * 1024
    # And at the default limit the same input never reaches the decoder.
    with pytest.raises(ProtocolError) as refused:
        decode(data, SyncRequest)
    assert refused.value.code is ErrorCode.TOO_LARGE


def test_scan_accepts_exactly_one_item() -> None:
    scan(b"\x80")
    with pytest.raises(ProtocolError):
        scan(b"\x80\x80")
