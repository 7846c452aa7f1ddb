"""Coverage-guided fuzzing of the protocol decoders with atheris (libFuzzer).

Set up once (the optional ``fuzz`` extra), then run for a bounded time::

    pip install -e '.[fuzz]'
    python fuzz/decoder_atheris.py -max_total_time=300 -rss_limit_mb=512 -timeout=2

The first byte of each input picks the frame type (the requests the server
decodes, then the answers and payloads a client decodes); the rest is the
body. Half the mutations are structure-aware: the body is decoded, one
value anywhere in it is replaced (an integer at a boundary, a string of
another length, a value of another type, an element added or dropped) and
the result re-encoded, so inputs keep getting past the codec into the frame
schemas; the other half are libFuzzer's byte mutations. An input passes when
decoding either succeeds or raises ``ProtocolError`` with a code whose HTTP
status is 4xx; bytes the codec accepts must re-encode to themselves, and a
decoded frame must survive encode-then-decode unchanged. Anything else (another exception, an
``EncodeError``, a broken round trip) is a crash: libFuzzer stops and writes
the input to ``crash-<sha1>`` in the working directory (``-artifact_prefix=``
moves it). Inputs that take longer than ``-timeout`` seconds or more than
``-rss_limit_mb`` are reported the same way.

The corpus lives in ``fuzz/corpus/`` (not versioned) unless a directory is
given as the last argument; every run seeds it with the valid vectors of
``protocol/vectors/valid.json``, so the fuzzer starts from frames that get
past the outer checks. ``-runs=N`` bounds the number of inputs instead of
the time. To replay one input: ``python fuzz/decoder_atheris.py crash-...``.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports():
    import protocol
    from protocol import ErrorCode, ProtocolError, dumps, encode, loads
    from protocol.e2e import EnvelopeKey, MessageBody, SealedPayload
    from protocol.forms import FormClose, FormCreate, FormResponse, JobUpdate

HERE = Path(__file__).resolve().parent
VECTORS = HERE.parent / "protocol" / "vectors" / "valid.json"
DEFAULT_CORPUS = HERE / "corpus"

FRAME_TYPES: tuple[Any, ...] = (
    # decoded by the server, from anyone
    protocol.RegisterRequest, protocol.ChallengeRequest, protocol.SessionRequest,
    protocol.AuthedRequest, protocol.SyncRequest, protocol.DirectoryRequest,
    protocol.ChainRequest,
    # decoded by a client, from the server or, inside the encryption, from a member
    protocol.RegisterResponse, protocol.ChallengeResponse, protocol.SessionResponse,
    protocol.AuthedResponse, protocol.ErrorFrame, protocol.SyncResponse,
    protocol.DirectoryResponse, protocol.ChainResponse, SealedPayload, EnvelopeKey,
    MessageBody, FormCreate, FormResponse, FormClose, JobUpdate,
)


BOUNDARY_INTS = (0, 1, 23, 24, 255, 256, 65_535, 65_536, 2**32, 2**63 - 1, 2**63, 2**64 - 1,
                 -1, -(2**64))
BYTE_LENGTHS = (0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65)


class Crash(Exception):
    """A decoder broke its contract on this input."""


def check(data: bytes) -> None:
    if not data:
        return
    frame_type = FRAME_TYPES[data[0] % len(FRAME_TYPES)]
    body = data[1:]
    try:
        value = loads(body)
    except ProtocolError as error:
        _check_refusal(error)
        return
    if dumps(value) != body:
        raise Crash(f"accepted bytes do not re-encode to themselves: {body.hex()}")
    try:
        frame = frame_type.from_value(value)
    except ProtocolError as error:
        _check_refusal(error)
        return
    again = frame_type.from_value(loads(encode(frame)))
    if again != frame:
        raise Crash(f"{frame_type.__name__} changes through encode and decode: {body.hex()}")


def _check_refusal(error: ProtocolError) -> None:
    if type(error) is not ProtocolError or not isinstance(error.code, ErrorCode):
        raise Crash(f"refusal of the wrong kind: {error!r}") from error
    if not 400 <= error.code.http_status < 500:
        raise Crash(f"refusal blames the server: {error!r}") from error


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every value inside ``value`` (itself included)."""
    paths = [path]
    if isinstance(value, list):
        for index, item in enumerate(value):
            paths += _nodes(item, (*path, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            paths += _nodes(item, (*path, key))
    return paths


def _replacement(old: Any, rng: random.Random) -> Any:
    choice = rng.randrange(6)
    if choice == 0:
        return rng.choice(BOUNDARY_INTS)
    if choice == 1 and isinstance(old, int) and not isinstance(old, bool):
        return max(-(2**64), min(2**64 - 1, old + rng.choice((-1, 1))))
    if choice == 2:
        return bytes(rng.randrange(256) for _ in range(rng.choice(BYTE_LENGTHS)))
    if choice == 3 and isinstance(old, list):
        edited = list(old)
        if edited and rng.random() < 0.5:
            del edited[rng.randrange(len(edited))]
        else:
            edited.insert(rng.randrange(len(edited) + 1),
                          rng.choice(edited) if edited else rng.choice(BOUNDARY_INTS))
        return edited
    if choice == 4 and isinstance(old, dict):
        entries = dict(old)
        if entries and rng.random() < 0.5:
            del entries[rng.choice(list(entries))]
        else:
            entries[rng.randrange(8)] = rng.choice(BOUNDARY_INTS)
        return entries
    return rng.choice((None, True, False, "", "+254700000001", "\u00e9" * 40, [], {},
                       [1], {1: b""}, b""))


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """libFuzzer's custom mutator: half structure-aware (see the module docstring)."""
    rng = random.Random(seed)
    if len(data) > 1 and rng.random() < 0.5:
        try:
            value = loads(data[1:])
        except ProtocolError:
            value = None
        if value is not None:
            path = rng.choice(_nodes(value))
            if not path:
                value = _replacement(value, rng)
            else:
                parent = value
                for key in path[:-1]:
                    parent = parent[key]
                parent[path[-1]] = _replacement(parent[path[-1]], rng)
            mutated = data[:1] + dumps(value)
            if len(mutated) <= max_size:
                return mutated
    mutated_bytes: bytes = atheris.Mutate(data, max_size)
    return mutated_bytes


def seed_corpus(directory: Path) -> int:
    """Write each valid vector, behind the byte that selects its frame type."""
    directory.mkdir(parents=True, exist_ok=True)
    names = [t.__name__ for t in FRAME_TYPES]
    count = 0
    for vector in json.loads(VECTORS.read_text())["vectors"]:
        if vector["type"] not in names:
            continue
        seed = bytes([names.index(vector["type"])]) + bytes.fromhex(vector["hex"])
        (directory / f"vector-{hashlib.sha1(seed).hexdigest()}").write_bytes(seed)
        count += 1
    return count


def main() -> None:
    args = sys.argv[1:]
    positional = [a for a in args if not a.startswith("-")]
    if not positional:
        args.append(str(DEFAULT_CORPUS))
        positional = [str(DEFAULT_CORPUS)]
    target = Path(positional[-1])
    if not target.is_file():  # a corpus directory, not a single input to replay
        print(f"seeded {seed_corpus(target)} vectors into {target}", file=sys.stderr)
    atheris.Setup([sys.argv[0], *args], check, custom_mutator=mutate)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
