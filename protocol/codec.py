"""Strict, deterministic CBOR for syncd frames (SPEC.md, "Encoding").

Theory of operation: decoding happens in two passes over bytes that have
already passed a size check.

1. ``scan`` walks the item structure without building anything. It refuses
   what the spec forbids at the CBOR level: truncation, trailing bytes,
   indefinite lengths, tags, floats and simple values other than
   false/true/null, non-shortest heads, map keys that are not unsigned
   integers in strictly ascending order (which also refuses duplicates),
   nesting deeper than ``MAX_DEPTH``, and declared lengths larger than the
   bytes that remain (so a declared length of 2**32 never allocates).
   Because every head must be shortest and every map sorted, bytes that pass
   are exactly the deterministic encoding of their value (RFC 8949 §4.2.1).
2. ``cbor2.loads`` then builds the value, with its own guards on as well.

Any failure is a ``ProtocolError`` with code ``malformed`` (or
``limit_exceeded`` / ``too_large``); no decoder exception escapes.
"""

from __future__ import annotations

from typing import Any

import cbor2

from .errors import EncodeError, ErrorCode, ProtocolError
from .limits import MAX_BODY_BYTES, MAX_DEPTH

__all__ = ["dumps", "head_size", "loads", "scan"]

_MAJOR_UINT = 0
_MAJOR_NEGINT = 1
_MAJOR_BYTES = 2
_MAJOR_TEXT = 3
_MAJOR_ARRAY = 4
_MAJOR_MAP = 5
_MAJOR_TAG = 6
_MAJOR_SIMPLE = 7

_SIMPLE_FALSE = 20
_SIMPLE_TRUE = 21
_SIMPLE_NULL = 22


def _malformed(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.MALFORMED, message)


def _read_head(data: bytes, pos: int) -> tuple[int, int, int]:
    """Read one item head at ``pos``: (major type, argument, next position)."""
    if pos >= len(data):
        raise _malformed("truncated: item expected")
    initial = data[pos]
    major, info = initial >> 5, initial & 0x1F
    pos += 1
    if info < 24:
        return major, info, pos
    if info > 27:
        if info == 31:
            raise _malformed("indefinite length is not allowed")
        raise _malformed("reserved additional information value")
    size = 1 << (info - 24)
    if major == _MAJOR_SIMPLE:
        # 0xf8: one-byte simple value; 0xf9-0xfb: half, single, double floats.
        raise _malformed("floats and extended simple values are not allowed")
    if pos + size > len(data):
        raise _malformed("truncated: item head")
    argument = int.from_bytes(data[pos : pos + size], "big")
    # Shortest form: the argument must not fit a smaller head.
    if argument < (24 if size == 1 else 1 << (4 * size)):
        raise _malformed("non-shortest integer or length encoding")
    return major, argument, pos + size


def _scan_item(data: bytes, pos: int, depth: int) -> int:
    major, argument, pos = _read_head(data, pos)
    if major in (_MAJOR_UINT, _MAJOR_NEGINT):
        return pos
    if major in (_MAJOR_BYTES, _MAJOR_TEXT):
        if argument > len(data) - pos:
            raise _malformed("truncated: string runs past the end")
        return pos + argument
    if major == _MAJOR_ARRAY:
        if depth >= MAX_DEPTH:
            raise ProtocolError(ErrorCode.LIMIT_EXCEEDED, f"nesting deeper than {MAX_DEPTH}")
        if argument > len(data) - pos:
            raise _malformed("truncated: array runs past the end")
        for _ in range(argument):
            pos = _scan_item(data, pos, depth + 1)
        return pos
    if major == _MAJOR_MAP:
        if depth >= MAX_DEPTH:
            raise ProtocolError(ErrorCode.LIMIT_EXCEEDED, f"nesting deeper than {MAX_DEPTH}")
        if 2 * argument > len(data) - pos:
            raise _malformed("truncated: map runs past the end")
        previous_key = -1
        for _ in range(argument):
            key_major, key, pos = _read_head(data, pos)
            if key_major != _MAJOR_UINT:
                raise _malformed("map keys must be unsigned integers")
            if key <= previous_key:
                raise _malformed("map keys must be unique and in ascending order")
            previous_key = key
            pos = _scan_item(data, pos, depth + 1)
        return pos
    if major == _MAJOR_TAG:
        raise _malformed("tags are not allowed")
    # Major type 7 with a one-byte head: only false, true and null.
    if argument not in (_SIMPLE_FALSE, _SIMPLE_TRUE, _SIMPLE_NULL):
        raise _malformed("simple value not allowed")
    return pos


def scan(data: bytes) -> None:
    """Check that ``data`` is exactly one well-formed, deterministic item."""
    end = _scan_item(data, 0, 0)
    if end != len(data):
        raise _malformed(f"{len(data) - end} trailing bytes after the item")


def loads(data: bytes, *, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """Decode one frame's bytes to plain values (lists, dicts, bytes, str, int, bool, None).

    Raises ``ProtocolError`` for anything the spec's encoding rules refuse.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError(ErrorCode.MALFORMED, "frame must be bytes")
    data = bytes(data)
    if len(data) > max_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"body of {len(data)} bytes exceeds {max_bytes}")
    if not data:
        raise _malformed("empty body")
    scan(data)
    try:
        return cbor2.loads(
            data,
            max_depth=MAX_DEPTH + 1,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            str_errors="strict",
        )
    except (cbor2.CBORDecodeError, ValueError, OverflowError, RecursionError) as exc:
        raise _malformed(f"undecodable CBOR: {exc}") from exc


def dumps(value: Any) -> bytes:
    """Deterministically encode ``value`` (shortest forms, sorted integer keys)."""
    try:
        return cbor2.dumps(value, canonical=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        raise EncodeError(f"value cannot be encoded: {exc}") from exc


def head_size(argument: int) -> int:
    """Bytes taken by a CBOR head carrying ``argument`` (a uint, or a length)."""
    if argument < 24:
        return 1
    if argument < 1 << 8:
        return 2
    if argument < 1 << 16:
        return 3
    if argument < 1 << 32:
        return 5
    return 9
