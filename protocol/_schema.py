"""Type and range checks shared by the frame modules.

Each helper takes a decoded CBOR value and either returns it with a precise
type or raises ``ProtocolError``: ``bad_frame`` for a wrong type, size or
value, ``limit_exceeded`` for a count or length over a spec limit.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from .errors import ErrorCode, ProtocolError
from .limits import MAX_UINT, SUPPORTED_VERSIONS, VERSION


def bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FRAME, message)


def too_many(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.LIMIT_EXCEEDED, message)


def uint(value: Any, what: str, *, minimum: int = 0, maximum: int = MAX_UINT) -> int:
    if type(value) is not int:
        raise bad(f"{what} must be an unsigned integer")
    if value < minimum or value > maximum:
        raise bad(f"{what} must be in {minimum}..{maximum}")
    return value


def boolean(value: Any, what: str) -> bool:
    if type(value) is not bool:
        raise bad(f"{what} must be true or false")
    return value


def bstr(value: Any, what: str, *, size: int | None = None, max_len: int | None = None) -> bytes:
    if type(value) is not bytes:
        raise bad(f"{what} must be a byte string")
    if size is not None and len(value) != size:
        raise bad(f"{what} must be {size} bytes")
    if max_len is not None and len(value) > max_len:
        raise too_many(f"{what} longer than {max_len} bytes")
    return value


def tstr(value: Any, what: str, *, max_bytes: int, min_bytes: int = 0) -> str:
    """A text string whose UTF-8 encoding is ``min_bytes``..``max_bytes`` long.

    Lengths are in bytes, not characters: every language counts bytes the same way.
    """
    if type(value) is not str:
        raise bad(f"{what} must be a text string")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise too_many(f"{what} longer than {max_bytes} bytes")
    if size < min_bytes:
        raise bad(f"{what} shorter than {min_bytes} bytes")
    return value


def array(value: Any, what: str, *, min_len: int) -> list[Any]:
    """An array with at least ``min_len`` elements; later elements are ignored by callers."""
    if type(value) is not list:
        raise bad(f"{what} must be an array")
    if len(value) < min_len:
        raise bad(f"{what} needs at least {min_len} elements")
    return value


def items(value: Any, what: str, *, max_count: int, min_count: int = 0) -> list[Any]:
    """A homogeneous list of ``min_count``..``max_count`` items."""
    if type(value) is not list:
        raise bad(f"{what} must be an array")
    if len(value) > max_count:
        raise too_many(f"{what} has more than {max_count} items")
    if len(value) < min_count:
        raise bad(f"{what} needs at least {min_count} items")
    return value


def mapping(value: Any, what: str) -> dict[int, Any]:
    if type(value) is not dict:
        raise bad(f"{what} must be a map")
    return value


def versioned(value: Any, what: str, *, min_len: int) -> list[Any]:
    """A top-level frame: an array whose first element is the protocol version."""
    if type(value) is not list or not value:
        raise bad(f"{what} must be an array starting with the version")
    version = value[0]
    if type(version) is not int or version < 0:
        raise bad("version must be an unsigned integer")
    if version not in SUPPORTED_VERSIONS:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"version {version} is not supported; this peer speaks {VERSION}",
        )
    return array(value, what, min_len=min_len)


def check_version(version: int) -> None:
    if version != VERSION:
        raise bad(f"version must be {VERSION}")


def strictly_increasing(values: Sequence[int], what: str) -> None:
    for before, after in itertools.pairwise(values):
        if after <= before:
            raise bad(f"{what} must be strictly increasing")
