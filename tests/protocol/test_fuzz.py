"""Fuzz: random and mutated bytes into every decoder raise ProtocolError and nothing else."""

from __future__ import annotations

import contextlib
import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import ProtocolError, decode, loads

from .conftest import RULE_TYPES, VECTORS

SEEDS = [bytes.fromhex(v["hex"])
         for v in json.loads((VECTORS / "valid.json").read_text())["vectors"]]
FRAME_TYPES = sorted(set(RULE_TYPES.values()), key=lambda t: t.__name__)


def decode_or_refuse(data: bytes, frame_type: Any) -> None:
    """Decoding may succeed or raise ProtocolError; anything else fails the test.

    The frame's own validation is called directly, past ``decode``'s last-resort
    translation of stray exceptions, so a gap in validation shows up here.
    """
    try:
        value = loads(data)
    except ProtocolError:
        return
    with contextlib.suppress(ProtocolError):
        frame_type.from_value(value)
    with contextlib.suppress(ProtocolError):
        decode(data, frame_type)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512), st.sampled_from(FRAME_TYPES))
def test_random_bytes(data: bytes, frame_type: Any) -> None:
    decode_or_refuse(data, frame_type)


def mutate(rng: random.Random, data: bytes) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(6)
        position = rng.randrange(len(buffer) + 1)
        if choice == 0 and buffer:  # flip bits
            buffer[min(position, len(buffer) - 1)] ^= 1 << rng.randrange(8)
        elif choice == 1 and buffer:  # replace a byte, favouring CBOR heads
            buffer[min(position, len(buffer) - 1)] = rng.choice(
                [0x00, 0x17, 0x18, 0x1B, 0x3F, 0x5B, 0x5F, 0x7F, 0x9B, 0x9F, 0xBB, 0xBF,
                 0xC0, 0xD9, 0xF4, 0xF7, 0xF9, 0xFB, 0xFF, rng.randrange(256)])
        elif choice == 2:  # insert
            buffer[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 9)))
        elif choice == 3:  # delete
            del buffer[position : position + rng.randint(1, 9)]
        elif choice == 4:  # truncate
            del buffer[position:]
        else:  # splice in a slice of another vector
            other = rng.choice(SEEDS)
            start = rng.randrange(len(other))
            buffer[position:position] = other[start : start + rng.randint(1, 40)]
    return bytes(buffer)


@pytest.mark.parametrize("seed", range(8))
def test_mutated_vectors(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(1500):
        data = mutate(rng, rng.choice(SEEDS))
        for frame_type in FRAME_TYPES:
            decode_or_refuse(data, frame_type)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SEEDS), st.integers(min_value=0, max_value=10**6),
       st.sampled_from(FRAME_TYPES))
def test_every_prefix_of_a_vector(seed: bytes, cut: int, frame_type: Any) -> None:
    decode_or_refuse(seed[: cut % (len(seed) + 1)], frame_type)
