"""The syncd wire protocol, version 1: frames, codec, limits, errors and sync rules.

Pure and sans-I/O: this package turns bytes into frames and frames into
bytes, and states the rules both ends of a sync follow. It opens no socket,
runs no event loop and touches no database. ``protocol/SPEC.md`` is the
normative text; this package is its reference implementation.

    >>> from protocol import SyncRequest, Cursor, encode, decode
    >>> body = encode(SyncRequest(cursor=Cursor.at(1000)))
    >>> decode(body, SyncRequest).cursor == Cursor.at(1000)
    True
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from .auth import (
    CHALLENGE_BYTES,
    SESSION_SECRET_BYTES,
    TAG_BYTES,
    SessionKeys,
    counter_is_fresh,
    derive_session_keys,
    hkdf_sha256,
    op_signing_input,
    register_signing_input,
    request_tag,
    response_tag,
    roster_hash,
    session_grant_signing_input,
    session_seal_info,
    session_signing_input,
    tags_equal,
)
from .codec import dumps, loads
from .envelope import AuthedRequest, AuthedResponse, ErrorFrame
from .errors import EncodeError, ErrorCode, ProtocolError
from .frames import (
    ChainRequest,
    ChainResponse,
    Cursor,
    PullBlock,
    PulledOp,
    PushBlock,
    SyncRequest,
    SyncResponse,
)
from .identity import (
    ChallengeRequest,
    ChallengeResponse,
    DeviceEntry,
    DirectoryRequest,
    DirectoryResponse,
    RegisterRequest,
    RegisterResponse,
    SessionRequest,
    SessionResponse,
    UserEntry,
)
from .limits import MAX_BODY_BYTES, VERSION
from .membership import AddMembers, CreateConversation, Member, RemoveMembers, Role, Roster
from .ops import ContentOp, EnvelopeOp, Lane, MembershipOp, OpType, UnknownOp
from .sync import (
    Candidate,
    LaneBatch,
    StoredOp,
    check_cursor,
    classify_push,
    op_digest,
    pack_response,
    response_frame_size,
)

__all__ = [
    "CHALLENGE_BYTES",
    "MAX_BODY_BYTES",
    "SESSION_SECRET_BYTES",
    "TAG_BYTES",
    "VERSION",
    "AddMembers",
    "AuthedRequest",
    "AuthedResponse",
    "Candidate",
    "ChainRequest",
    "ChainResponse",
    "ChallengeRequest",
    "ChallengeResponse",
    "ContentOp",
    "CreateConversation",
    "Cursor",
    "DeviceEntry",
    "DirectoryRequest",
    "DirectoryResponse",
    "EncodeError",
    "EnvelopeOp",
    "ErrorCode",
    "ErrorFrame",
    "Frame",
    "Lane",
    "LaneBatch",
    "Member",
    "MembershipOp",
    "OpType",
    "ProtocolError",
    "PullBlock",
    "PulledOp",
    "PushBlock",
    "RegisterRequest",
    "RegisterResponse",
    "RemoveMembers",
    "Role",
    "Roster",
    "SessionKeys",
    "SessionRequest",
    "SessionResponse",
    "StoredOp",
    "SyncRequest",
    "SyncResponse",
    "UnknownOp",
    "UserEntry",
    "check_cursor",
    "classify_push",
    "counter_is_fresh",
    "decode",
    "derive_session_keys",
    "dumps",
    "encode",
    "hkdf_sha256",
    "loads",
    "op_digest",
    "op_signing_input",
    "pack_response",
    "register_signing_input",
    "request_tag",
    "response_frame_size",
    "response_tag",
    "roster_hash",
    "session_grant_signing_input",
    "session_seal_info",
    "session_signing_input",
    "tags_equal",
]


class Frame(Protocol):
    """What every frame and body class provides."""

    def to_value(self) -> Any: ...


F = TypeVar("F", bound=Frame)


class _Decodable(Protocol[F]):  # type: ignore[misc]
    def from_value(self, value: Any, /) -> F: ...


def encode(frame: Frame) -> bytes:
    """The deterministic CBOR bytes of a frame or body."""
    return dumps(frame.to_value())


def decode(data: bytes, frame_type: _Decodable[F], *, max_bytes: int = MAX_BODY_BYTES) -> F:
    """Decode ``data`` as a ``frame_type`` (e.g. ``SyncRequest``), strictly.

    Raises ``ProtocolError`` and nothing else: ``too_large`` before decoding
    when ``data`` exceeds ``max_bytes``, ``malformed`` for bad CBOR,
    ``unsupported_version``, and ``bad_frame`` / ``limit_exceeded`` for values
    the spec does not allow.
    """
    value = loads(data, max_bytes=max_bytes)
    try:
        return frame_type.from_value(value)
    except ProtocolError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"invalid frame: {exc}") from exc
