"""Hypothesis strategies that build hostile CBOR byte by byte.

cbor2's encoder only writes well-formed, shortest, definite-length items, so
the hostile cases are written here with a small raw emitter: a head is
``major << 5 | info`` followed by a 0, 1, 2, 4 or 8-byte argument, and every
strategy below decides each head itself. What they cover, by rule of
SPEC.md section 2:

- nesting past the decoder's depth limit (arrays, maps, tags, indefinite
  containers, mixed), up to thousands deep;
- declared lengths and counts far beyond the bytes that follow (2^31, 2^32,
  2^63, 2^64 - 1);
- indefinite-length strings, arrays and maps, terminated, unterminated, with
  a break code where none may be, with chunks of the wrong type;
- tags: every head width, big tag numbers, nested tags, tags on map keys, the
  numbers cbor2 gives meaning to (bignums, shared references, sets...);
- duplicate, unsorted and non-integer map keys, odd key/value counts;
- non-shortest heads for integers, lengths and counts;
- invalid UTF-8 in text strings (overlong forms, surrogates, stray
  continuation bytes, truncated sequences, code points past U+10FFFF);
- floats, undefined and the other simple values, reserved additional
  information values 28-30, a lone break;
- truncation at every point;
- mutations of the valid vectors (``protocol/vectors/valid.json``): bit flips,
  inserted, deleted and duplicated bytes, and whole items replaced by hostile
  items at any depth, so inputs get past the outer checks into the frame
  schemas.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
VECTORS: list[dict[str, str]] = json.loads(
    (ROOT / "protocol" / "vectors" / "valid.json").read_text())["vectors"]

UINT, NEGINT, BYTES, TEXT, ARRAY, MAP, TAG, SIMPLE = range(8)
BREAK = b"\xff"
WIDTH_INFO = {1: 24, 2: 25, 4: 26, 8: 27}

# ---------------------------------------------------------------- raw emitter


def head(major: int, argument: int, width: int | None = None) -> bytes:
    """One item head. ``width`` None is the shortest form; 0 puts the argument
    in the initial byte (it must be < 24); 1, 2, 4 or 8 force that many
    argument bytes, which is non-shortest when the argument would fit fewer."""
    if width is None:
        width = next(w for w in (0, 1, 2, 4, 8) if argument < (24 if w == 0 else 1 << (8 * w)))
    if width == 0:
        return bytes([major << 5 | argument])
    return bytes([major << 5 | WIDTH_INFO[width]]) + argument.to_bytes(width, "big")


def uint(value: int, width: int | None = None) -> bytes:
    return head(UINT, value, width)


def text(data: bytes, width: int | None = None) -> bytes:
    """A text string holding ``data`` as is: nothing checks that it is UTF-8."""
    return head(TEXT, len(data), width) + data


def byte_string(data: bytes, width: int | None = None) -> bytes:
    return head(BYTES, len(data), width) + data


def array(items: Sequence[bytes], width: int | None = None) -> bytes:
    return head(ARRAY, len(items), width) + b"".join(items)


def cbor_map(pairs: Sequence[tuple[bytes, bytes]], width: int | None = None) -> bytes:
    return head(MAP, len(pairs), width) + b"".join(key + value for key, value in pairs)


def tagged(number: int, item: bytes, width: int | None = None) -> bytes:
    return head(TAG, number, width) + item


def indefinite(major: int, chunks: Sequence[bytes], *, terminated: bool = True) -> bytes:
    return bytes([major << 5 | 31]) + b"".join(chunks) + (BREAK if terminated else b"")


def item_spans(data: bytes, *, keys: bool = True) -> list[tuple[int, int]]:
    """(start, end) of every item of well-formed, definite-length CBOR, outermost first
    (map keys left out when ``keys`` is false).

    Used to replace one item of a valid vector by a hostile one: the
    replacement is itself one item, so every enclosing count stays right and
    the input reaches the schema of whatever field it landed in.
    """
    spans: list[tuple[int, int]] = []
    key_starts: set[int] = set()

    def walk(pos: int) -> int:
        initial = data[pos]
        major, info = initial >> 5, initial & 0x1F
        end = pos + 1
        argument = info
        if info >= 24:
            size = 1 << (info - 24)
            argument = int.from_bytes(data[end : end + size], "big")
            end += size
        index = len(spans)
        spans.append((pos, -1))
        if major in (BYTES, TEXT):
            end += argument
        elif major == ARRAY:
            for _ in range(argument):
                end = walk(end)
        elif major == MAP:
            for _ in range(argument):
                key_starts.add(end)
                end = walk(walk(end))
        elif major == TAG:
            end = walk(end)
        spans[index] = (pos, end)
        return end

    assert walk(0) == len(data), "item_spans takes one well-formed item"
    return spans if keys else [span for span in spans if span[0] not in key_starts]


# ---------------------------------------------------------------- arguments

BOUNDARY_ARGUMENTS = (0, 1, 23, 24, 255, 256, 65_535, 65_536, 2**31 - 1, 2**31, 2**32 - 1,
                      2**32, 2**63 - 1, 2**63, 2**64 - 1)
HUGE_LENGTHS = (2**16, 2**31, 2**32 - 1, 2**32, 2**63, 2**64 - 1)

arguments = st.one_of(st.sampled_from(BOUNDARY_ARGUMENTS),
                      st.integers(min_value=0, max_value=2**64 - 1))
widths = st.sampled_from((None, 1, 2, 4, 8))


@st.composite
def non_shortest_heads(draw: st.DrawFn, major: int | None = None) -> bytes:
    """A head whose argument would fit a smaller one (a break of rule 2)."""
    width = draw(st.sampled_from((1, 2, 4, 8)))
    smaller = 24 if width == 1 else 1 << (4 * width)
    argument = draw(st.integers(min_value=0, max_value=smaller - 1))
    kind = draw(st.sampled_from((UINT, NEGINT, BYTES, TEXT, ARRAY, MAP, TAG))
                if major is None else st.just(major))
    return head(kind, argument, width)


@st.composite
def non_shortest_items(draw: st.DrawFn) -> bytes:
    """A complete item (integer, string, array or map) whose head is not shortest."""
    width = draw(st.sampled_from((1, 2, 4, 8)))
    smaller = 24 if width == 1 else 1 << (4 * width)
    kind = draw(st.sampled_from((UINT, NEGINT, BYTES, TEXT, ARRAY)))
    if kind in (UINT, NEGINT):
        return head(kind, draw(st.integers(min_value=0, max_value=smaller - 1)), width)
    length = draw(st.integers(min_value=0, max_value=min(smaller - 1, 40)))
    if kind == ARRAY:
        return head(ARRAY, length, width) + b"\x00" * length
    return head(kind, length, width) + b"a" * length


# ---------------------------------------------------------------- leaves

INVALID_UTF8 = (
    b"\xff", b"\xfe", b"\x80", b"\xbf", b"a\x80b",  # never valid / stray continuation
    b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xf0\x80\x80\x80",  # overlong
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xed\xa0\xbd\xed\xb2\xa9",  # UTF-16 surrogates
    b"\xe2\x82", b"\xf0\x9f\x98", b"\xc3",  # truncated sequences
    b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80",  # past U+10FFFF
    b"+2547\xff0000001", b"\x00\xc3\x28",
)


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


invalid_utf8 = st.one_of(st.sampled_from(INVALID_UTF8),
                         st.binary(min_size=1, max_size=24).filter(_not_utf8))


@st.composite
def invalid_text(draw: st.DrawFn) -> bytes:
    """A text string that is not UTF-8, with valid text around the bad bytes."""
    before = draw(st.text(max_size=6)).encode()
    after = draw(st.text(max_size=6)).encode()
    return text(before + draw(invalid_utf8) + after, draw(widths.filter(lambda w: w != 0)))


SIMPLE_AND_FLOATS = (
    b"\xf7",  # undefined
    b"\xe0", b"\xf3", b"\xf8\x00", b"\xf8\x14", b"\xf8\x18", b"\xf8\xff",  # other simple values
    b"\xf9\x00\x00", b"\xf9\x7c\x00", b"\xf9\x7e\x00", b"\xf9\xfc\x00",  # half: 0, inf, nan, -inf
    b"\xfa\x7f\xc0\x00\x00", b"\xfa\x3f\x80\x00\x00",  # single: nan, 1.0
    b"\xfb\x7f\xf8\x00\x00\x00\x00\x00\x00", b"\xfb\x3f\xf0\x00\x00\x00\x00\x00\x00",
    b"\xfb\x00\x00\x00\x00\x00\x00\x00\x01",  # the smallest subnormal double
    b"\xfc", b"\xfd", b"\xfe",  # reserved in major 7
)


@st.composite
def simple_values(draw: st.DrawFn) -> bytes:
    """Floats of every width with any payload, and simple values other than false/true/null."""
    choice = draw(st.integers(min_value=0, max_value=2))
    if choice == 0:
        return draw(st.sampled_from(SIMPLE_AND_FLOATS))
    if choice == 1:
        value = draw(st.integers(min_value=0, max_value=255).filter(lambda v: v not in (20, 21,
                                                                                           22)))
        return bytes([0xE0 | value]) if value < 24 else b"\xf8" + bytes([value])
    width = draw(st.sampled_from((2, 4, 8)))
    return bytes([0xE0 | WIDTH_INFO[width]]) + draw(st.binary(min_size=width, max_size=width))


@st.composite
def reserved_info(draw: st.DrawFn) -> bytes:
    """Additional information 28, 29 or 30, in any major type, with bytes after."""
    major = draw(st.integers(min_value=0, max_value=7))
    info = draw(st.sampled_from((28, 29, 30)))
    return bytes([major << 5 | info]) + draw(st.binary(max_size=9))


@st.composite
def huge_declared_lengths(draw: st.DrawFn) -> bytes:
    """A string, array or map that claims far more than the few bytes that follow."""
    major = draw(st.sampled_from((BYTES, TEXT, ARRAY, MAP)))
    length = draw(st.one_of(st.sampled_from(HUGE_LENGTHS),
                            st.integers(min_value=25, max_value=2**64 - 1)))
    return head(major, length) + draw(st.binary(max_size=24))


well_formed_leaves = st.one_of(
    st.builds(uint, st.integers(min_value=0, max_value=2**64 - 1)),
    st.builds(lambda v: head(NEGINT, v), st.integers(min_value=0, max_value=2**64 - 1)),
    st.builds(byte_string, st.binary(max_size=70)),
    st.builds(lambda s: text(s.encode()), st.text(max_size=20)),
    st.sampled_from((b"\xf4", b"\xf5", b"\xf6", b"\x80", b"\xa0", b"\x40", b"\x60")),
)

hostile_leaves = st.one_of(
    well_formed_leaves,
    non_shortest_items(),
    invalid_text(),
    simple_values(),
    reserved_info(),
    huge_declared_lengths(),
    st.just(BREAK),
    st.binary(max_size=1),  # nothing at all, or one stray byte
)

# ---------------------------------------------------------------- containers

TAG_NUMBERS = (0, 1, 2, 3, 4, 5, 21, 22, 23, 24, 25, 28, 29, 30, 32, 35, 36, 37, 256, 258, 260,
               261, 1_001, 55_799, 2**32 - 1, 2**63 - 1, 2**64 - 1)


@st.composite
def tags(draw: st.DrawFn, inner: st.SearchStrategy[bytes]) -> bytes:
    """Every major-6 form: direct numbers 0-23 and 1/2/4/8-byte ones, nested up to 4 deep."""
    item = draw(inner)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        number = draw(st.one_of(st.sampled_from(TAG_NUMBERS), arguments))
        width = draw(widths)
        if width is not None and number >= 1 << (8 * width):
            width = None
        item = tagged(number, item, width)
    return item


@st.composite
def indefinite_items(draw: st.DrawFn, inner: st.SearchStrategy[bytes]) -> bytes:
    """Indefinite-length strings, arrays and maps, well or badly formed."""
    major = draw(st.sampled_from((BYTES, TEXT, ARRAY, MAP)))
    if major in (BYTES, TEXT):
        chunk = st.one_of(
            st.builds(byte_string if major == BYTES else text, st.binary(max_size=8)),
            inner,  # a chunk of the wrong type, or an indefinite chunk inside
        )
        chunks = draw(st.lists(chunk, max_size=4))
    else:
        count = draw(st.integers(min_value=0, max_value=5))
        chunks = [draw(inner) for _ in range(2 * count if major == MAP else count)]
    misplaced_break = draw(st.booleans())
    if chunks and misplaced_break:  # a break where an item or a value is due
        chunks.insert(draw(st.integers(min_value=0, max_value=len(chunks))), BREAK)
    return indefinite(major, chunks, terminated=draw(st.booleans()))


@st.composite
def hostile_maps(draw: st.DrawFn, inner: st.SearchStrategy[bytes]) -> bytes:
    """Maps whose keys break rule 4: duplicates, out of order, not uints, tagged, missing."""
    kind = draw(st.sampled_from(("duplicate", "descending", "foreign", "tagged", "odd")))
    values = draw(st.lists(inner, min_size=2, max_size=5))
    if kind == "duplicate":
        key = uint(draw(st.integers(min_value=0, max_value=2**64 - 1)))
        pairs = [(key, value) for value in values]
    elif kind == "descending":
        keys = sorted(draw(st.lists(st.integers(min_value=0, max_value=2**64 - 1),
                                    min_size=len(values), max_size=len(values), unique=True)),
                      reverse=True)
        pairs = [(uint(key), value) for key, value in zip(keys, values, strict=True)]
    elif kind == "foreign":
        key_items = st.one_of(st.builds(lambda v: head(NEGINT, v), st.integers(0, 100)),
                              st.builds(lambda s: text(s.encode()), st.text(max_size=4)),
                              st.builds(byte_string, st.binary(max_size=4)),
                              st.sampled_from((b"\x80", b"\xa0", b"\xf4", b"\xf6")),
                              simple_values(), tags(st.builds(uint, st.integers(0, 30))))
        pairs = [(draw(key_items), value) for value in values]
    elif kind == "tagged":
        pairs = [(tagged(draw(st.sampled_from(TAG_NUMBERS)), uint(index)), value)
                 for index, value in enumerate(values)]
    else:  # declares one more pair than it holds: the last key has no value
        pairs = [(uint(index), value) for index, value in enumerate(values)]
        return head(MAP, len(pairs) + 1) + b"".join(k + v for k, v in pairs) + uint(len(pairs))
    return cbor_map(pairs)


def _containers(inner: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.builds(array, st.lists(inner, max_size=5)),
        st.builds(lambda items: cbor_map([(uint(i), v) for i, v in enumerate(items)]),
                  st.lists(inner, max_size=5)),
        tags(inner),
        indefinite_items(inner),
        hostile_maps(inner),
    )


hostile_items: st.SearchStrategy[bytes] = st.recursive(hostile_leaves, _containers,
                                                       max_leaves=12)
"""One CBOR item (or what claims to be one) breaking any of the rules, at any depth."""

# ---------------------------------------------------------------- nesting

NEST_OPENERS = (b"\x81", b"\xa1\x00", b"\x9f", b"\xbf\x00", b"\xc6", b"\xd8\x20", b"\x82\x00",
                b"\xa2\x00\x00\x01")


@st.composite
def deep_nesting(draw: st.DrawFn, min_depth: int = 7) -> bytes:
    """Arrays, maps, tags and indefinite containers nested from ``min_depth`` (by
    default just under the limit) to thousands deep, closed properly or not."""
    depth = draw(st.one_of(st.integers(min_value=min_depth, max_value=min_depth + 5),
                           st.sampled_from((100, 999, 1_000, 1_001, 5_000, 50_000))))
    openers = draw(st.lists(st.sampled_from(NEST_OPENERS), min_size=1, max_size=3))
    body = b"".join(openers[i % len(openers)] for i in range(depth))
    leaf = draw(st.sampled_from((b"\x00", b"", b"\xff", b"\x80", b"\xf7")))
    closing = BREAK * draw(st.sampled_from((0, depth)))
    return body + leaf + closing


# ---------------------------------------------------------------- valid vectors, mutated

VECTOR_BYTES: tuple[bytes, ...] = tuple(bytes.fromhex(v["hex"]) for v in VECTORS)


def vectors_of(*type_names: str) -> tuple[bytes, ...]:
    """The valid vectors of the given frame classes (all of them when none is named)."""
    chosen = tuple(bytes.fromhex(v["hex"]) for v in VECTORS
                   if not type_names or v["type"] in type_names)
    assert chosen, f"no valid vector of {type_names}"
    return chosen


@st.composite
def truncations(draw: st.DrawFn, seeds: Sequence[bytes] = VECTOR_BYTES) -> bytes:
    """A valid frame cut short at any byte."""
    seed = draw(st.sampled_from(seeds))
    return seed[: draw(st.integers(min_value=0, max_value=len(seed) - 1))]


@st.composite
def byte_mutations(draw: st.DrawFn, seeds: Sequence[bytes] = VECTOR_BYTES) -> bytes:
    """A valid frame with a few bytes flipped, replaced, inserted, deleted or duplicated."""
    buffer = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        operation = draw(st.sampled_from(("flip", "head", "insert", "delete", "duplicate")))
        position = draw(st.integers(min_value=0, max_value=max(len(buffer) - 1, 0)))
        if operation == "flip" and buffer:
            buffer[position] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif operation == "head" and buffer:  # a byte that starts a hostile head
            buffer[position] = draw(st.sampled_from((
                0x18, 0x1B, 0x1C, 0x1F, 0x3B, 0x5B, 0x5F, 0x7B, 0x7F, 0x9B, 0x9F, 0xBB, 0xBF,
                0xC0, 0xC2, 0xD8, 0xDB, 0xF7, 0xF8, 0xF9, 0xFB, 0xFF)))
        elif operation == "insert":
            buffer[position:position] = draw(st.binary(min_size=1, max_size=9))
        elif operation == "delete":
            del buffer[position : position + draw(st.integers(min_value=1, max_value=9))]
        else:
            size = draw(st.integers(min_value=1, max_value=16))
            buffer[position:position] = buffer[position : position + size]
    return bytes(buffer)


@st.composite
def spliced(draw: st.DrawFn, seeds: Sequence[bytes] = VECTOR_BYTES,
            replacement: st.SearchStrategy[bytes] | None = None, *, keys: bool = True) -> bytes:
    """A valid frame with one of its items, at any depth, replaced by a hostile item
    (never a map key when ``keys`` is false).

    The envelope around the replaced item stays valid, so the input gets as far as
    the schema of the field it replaced (or, for the whole frame, the codec).
    """
    seed = draw(st.sampled_from(seeds))
    start, end = draw(st.sampled_from(item_spans(seed, keys=keys)))
    new = draw(replacement if replacement is not None else st.one_of(
        hostile_items, well_formed_leaves, deep_nesting(), non_shortest_items()))
    return seed[:start] + new + seed[end:]


def hostile_bodies(seeds: Sequence[bytes] = VECTOR_BYTES) -> st.SearchStrategy[bytes]:
    """Any hostile body: built from scratch, or from a valid frame of ``seeds``."""
    return st.one_of(
        hostile_items,
        deep_nesting(),
        huge_declared_lengths(),
        non_shortest_heads(),
        truncations(seeds),
        byte_mutations(seeds),
        spliced(seeds),
        spliced(seeds),  # twice the weight: it is what reaches the frame schemas
        st.builds(lambda item, extra: item + extra, spliced(seeds), st.binary(min_size=1,
                                                                              max_size=4)),
    )
