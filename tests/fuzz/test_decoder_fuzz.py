"""Hostile CBOR into every decoder: typed 4xx errors only, bounded time and memory.

Each input goes through ``loads`` and then the frame's own ``from_value``
directly, past ``decode``'s last-resort translation of stray exceptions, so a
gap in a schema's validation fails here instead of hiding as ``bad_frame``.
The public ``decode`` must then give the same outcome. Every input is decoded
twice: once timed, once under ``tracemalloc`` for its peak allocation.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import protocol
from protocol import ErrorCode, ProtocolError, decode, dumps, encode, loads
from protocol.e2e import EnvelopeKey, MessageBody, SealedPayload
from protocol.forms import FormClose, FormCreate, FormResponse, JobUpdate
from protocol.limits import MAX_BODY_BYTES, MAX_DEPTH

from . import strategies as hs
from .budget import (
    COUNTS,
    MAX_BYTES_PER_INPUT_BYTE,
    MEMORY_SLACK_BYTES,
    decode_seconds_bound,
    fuzz_settings,
)

# What the server decodes from a peer, then what a client decodes from the server
# (or, inside the encryption, from another member).
SERVER_DECODES: tuple[Any, ...] = (
    protocol.RegisterRequest, protocol.ChallengeRequest, protocol.SessionRequest,
    protocol.AuthedRequest, protocol.SyncRequest, protocol.DirectoryRequest,
    protocol.ChainRequest,
)
CLIENT_DECODES: tuple[Any, ...] = (
    protocol.RegisterResponse, protocol.ChallengeResponse, protocol.SessionResponse,
    protocol.AuthedResponse, protocol.ErrorFrame, protocol.SyncResponse,
    protocol.DirectoryResponse, protocol.ChainResponse, SealedPayload, EnvelopeKey,
    MessageBody, FormCreate, FormResponse, FormClose, JobUpdate,
)
FRAME_TYPES = SERVER_DECODES + CLIENT_DECODES


@dataclass(frozen=True)
class Outcome:
    frame: Any
    error: ProtocolError | None
    seconds: float
    peak_bytes: int


def decode_strictly(data: bytes, frame_type: Any) -> Any:
    COUNTS["decodes"] += 1
    return frame_type.from_value(loads(data))


def attempt(decoder: Callable[[], Any]) -> tuple[Any, ProtocolError | None]:
    try:
        return decoder(), None
    except ProtocolError as error:
        return None, error


def measure(data: bytes, frame_type: Any) -> Outcome:
    """Decode ``data`` timed, then again under tracemalloc. Anything but a
    ``ProtocolError`` propagates and fails the test with the input printed."""
    started = time.perf_counter()
    frame, error = attempt(lambda: decode_strictly(data, frame_type))
    seconds = time.perf_counter() - started
    tracemalloc.start()
    try:
        attempt(lambda: decode_strictly(data, frame_type))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return Outcome(frame, error, seconds, peak)


def memory_bound(data: bytes) -> int:
    return MAX_BYTES_PER_INPUT_BYTE * len(data) + MEMORY_SLACK_BYTES


def assert_refused_or_decoded(data: bytes, frame_type: Any) -> Outcome:
    """The contract of every decoder, for one input."""
    note = f"{frame_type.__name__} <- {data.hex()}"
    outcome = measure(data, frame_type)
    assert outcome.seconds < decode_seconds_bound(len(data)), f"{outcome.seconds:.3f} s: {note}"
    assert outcome.peak_bytes <= memory_bound(data), f"{outcome.peak_bytes} B: {note}"
    public_frame, public_error = attempt(lambda: decode(data, frame_type))
    if outcome.error is not None:
        error = outcome.error
        assert type(error) is ProtocolError, note  # never EncodeError: that is our fault
        assert isinstance(error.code, ErrorCode), note
        assert 400 <= error.code.http_status < 500, note
        assert public_error is not None and public_error.code is error.code, note
    else:
        assert public_error is None and public_frame == outcome.frame, note
        # An accepted frame re-encodes to bytes that decode to the same frame.
        assert decode(encode(outcome.frame), frame_type) == outcome.frame, note
    return outcome


def seeds_for(frame_type: Any) -> tuple[bytes, ...]:
    return hs.vectors_of(frame_type.__name__)


# ---------------------------------------------------------------- every decoder


@pytest.mark.parametrize("frame_type", FRAME_TYPES, ids=lambda t: t.__name__)
def test_hostile_bodies_get_typed_errors_in_bounded_time_and_memory(frame_type: Any) -> None:
    @fuzz_settings()
    @given(hs.hostile_bodies(seeds_for(frame_type)))
    def run(data: bytes) -> None:
        assert_refused_or_decoded(data, frame_type)

    run()


@pytest.mark.parametrize("frame_type", SERVER_DECODES, ids=lambda t: t.__name__)
def test_wrong_values_in_every_field_of_a_request_are_schema_errors(frame_type: Any) -> None:
    """Deterministic CBOR of the wrong type or range in any field, at any depth, passes
    the codec and is refused by the schema, never by a stray exception."""
    seeds = seeds_for(frame_type)

    @fuzz_settings()
    @given(hs.spliced(seeds, replacement=hs.well_formed_leaves, keys=False))
    def run(data: bytes) -> None:
        loads(data)  # well-formed and deterministic: the codec has nothing to say
        outcome = assert_refused_or_decoded(data, frame_type)
        if outcome.error is not None:
            assert outcome.error.code in (ErrorCode.BAD_FRAME, ErrorCode.LIMIT_EXCEEDED,
                                          ErrorCode.UNSUPPORTED_VERSION,
                                          ErrorCode.BUDGET_TOO_SMALL), data.hex()

    run()


# ---------------------------------------------------------------- each rule, its code


def refusal_code(data: bytes) -> ErrorCode:
    with pytest.raises(ProtocolError) as refused:
        loads(data)
    return refused.value.code


RULES: dict[str, tuple[st.SearchStrategy[bytes], set[ErrorCode]]] = {
    "non-shortest heads": (hs.non_shortest_items(), {ErrorCode.MALFORMED}),
    "invalid UTF-8": (hs.invalid_text(), {ErrorCode.MALFORMED}),
    "floats and simple values": (hs.simple_values(), {ErrorCode.MALFORMED}),
    "reserved additional information": (hs.reserved_info(), {ErrorCode.MALFORMED}),
    "huge declared lengths": (hs.huge_declared_lengths(), {ErrorCode.MALFORMED}),
    "tags": (hs.tags(hs.well_formed_leaves), {ErrorCode.MALFORMED}),
    "indefinite lengths": (hs.indefinite_items(hs.well_formed_leaves), {ErrorCode.MALFORMED}),
    "bad map keys": (hs.hostile_maps(hs.well_formed_leaves), {ErrorCode.MALFORMED}),
    "deep nesting": (hs.deep_nesting(min_depth=MAX_DEPTH + 1),
                     {ErrorCode.MALFORMED, ErrorCode.LIMIT_EXCEEDED}),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_encoding_rule_is_refused_with_its_code(rule: str) -> None:
    strategy, codes = RULES[rule]

    @fuzz_settings()
    @given(strategy, st.sampled_from(("alone", "in a frame")))
    def run(item: bytes, where: str) -> None:
        if where == "in a frame":  # as the value of a sync request's budget
            item = hs.cbor_map([(hs.uint(3), item)])
        assert refusal_code(item) in codes, item.hex()

    run()


@given(st.integers(min_value=MAX_DEPTH + 1, max_value=5_000),
       st.lists(st.sampled_from((b"\x81", b"\xa1\x00", b"\x82\x00", b"\xa2\x00\x00\x01")),
                min_size=1, max_size=4))
@fuzz_settings()
def test_definite_nesting_past_the_limit_is_limit_exceeded(depth: int,
                                                           openers: list[bytes]) -> None:
    data = b"".join(openers[i % len(openers)] for i in range(depth)) + b"\x00"
    assert refusal_code(data) is ErrorCode.LIMIT_EXCEEDED


def test_every_truncation_of_every_vector_is_malformed() -> None:
    """A proper prefix of one CBOR item is never a complete item: every cut is refused."""
    cuts = 0
    for vector in hs.VECTOR_BYTES:
        for end in range(len(vector)):
            assert refusal_code(vector[:end]) is ErrorCode.MALFORMED, vector[:end].hex()
            cuts += 1
        assert refusal_code(vector + b"\x00") is ErrorCode.MALFORMED
    assert cuts == sum(len(vector) for vector in hs.VECTOR_BYTES)


# ---------------------------------------------------------------- determinism


@st.composite
def loose_items(draw: st.DrawFn, depth: int = 0) -> bytes:
    """Well-formed CBOR, often but not always deterministic: heads of any width,
    map keys in any order, the odd negative or text key."""
    kind = draw(st.integers(min_value=0, max_value=6 if depth < 4 else 3))
    width = draw(st.one_of(st.none(), st.none(), st.none(), st.sampled_from((1, 2, 4, 8))))

    def fits(argument: int) -> int | None:
        return width if width is not None and argument < 1 << (8 * width) else None

    if kind == 0:
        value = draw(st.one_of(st.integers(0, 30), st.sampled_from(hs.BOUNDARY_ARGUMENTS)))
        return hs.head(draw(st.sampled_from((hs.UINT, hs.NEGINT))), value, fits(value))
    if kind == 1:
        data = draw(st.binary(max_size=30))
        return hs.byte_string(data, fits(len(data)))
    if kind == 2:
        data = draw(st.text(max_size=12)).encode()
        return hs.text(data, fits(len(data)))
    if kind == 3:
        return draw(st.sampled_from((b"\xf4", b"\xf5", b"\xf6")))
    if kind in (4, 5):
        items = draw(st.lists(loose_items(depth + 1), max_size=4))
        return hs.array(items, fits(len(items)))
    keys = draw(st.lists(st.one_of(st.integers(0, 30), st.sampled_from(hs.BOUNDARY_ARGUMENTS)),
                         max_size=4))
    if draw(st.booleans()):
        keys = sorted(set(keys))
    pairs = [(hs.uint(key), draw(loose_items(depth + 1))) for key in keys]
    if pairs and draw(st.integers(0, 9)) == 0:
        pairs[0] = (hs.text(b"k"), pairs[0][1])
    return hs.cbor_map(pairs, fits(len(pairs)))


@fuzz_settings(examples=max(200, 5 * fuzz_settings().max_examples))
@given(loose_items())
def test_whatever_the_codec_accepts_it_re_encodes_to_the_same_bytes(data: bytes) -> None:
    """SPEC.md section 2: rules 2-4 make the encoding unique, so accepted bytes are
    exactly the deterministic encoding of their value."""
    try:
        value = loads(data)
    except ProtocolError as error:
        assert error.code in (ErrorCode.MALFORMED, ErrorCode.LIMIT_EXCEEDED)
        return
    assert dumps(value) == data


# ---------------------------------------------------------------- largest bodies


def full_body(unit: bytes) -> bytes:
    """An array of as many ``unit`` items as fit the largest body the server takes."""
    count = (MAX_BODY_BYTES - 5) // len(unit)
    return hs.head(hs.ARRAY, count) + unit * count


AMPLIFIERS = {  # the shapes that build the most objects per input byte, measured
    "empty maps": full_body(b"\xa0"),
    "one-entry maps of empty maps": full_body(b"\xa1\x00\xa0"),
    "arrays four deep": full_body(b"\x81\x81\x81\x80"),
    "nesting as deep as the body": b"\x81" * MAX_BODY_BYTES,
    "a map of 2^32 pairs": b"\xbb" + (2**32).to_bytes(8, "big") + b"\x00" * (MAX_BODY_BYTES - 9),
}


@pytest.mark.parametrize("name", sorted(AMPLIFIERS))
def test_the_largest_hostile_bodies_stay_within_time_and_memory(name: str) -> None:
    """At the body limit, through the server's first decoder (every authenticated route)."""
    data = AMPLIFIERS[name]
    assert len(data) <= MAX_BODY_BYTES
    outcome = assert_refused_or_decoded(data, protocol.AuthedRequest)
    assert outcome.error is not None  # no frame is an array of 2^16 anythings
