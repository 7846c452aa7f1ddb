"""Errors of the syncd protocol.

Every failure the protocol package reports is a :class:`ProtocolError` carrying
an :class:`ErrorCode` from the spec's table; nothing else escapes ``decode``.

    ProtocolError            a frame or request the peer sent is not acceptable
     |                       (its ``code`` says why and which HTTP status it maps to)
     +-- EncodeError         we were asked to encode a value the spec forbids
                             (a bug on our side, never the peer's fault)

The code is what crosses the wire, inside the error frame (SPEC.md, "Errors").
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["EncodeError", "ErrorCode", "ProtocolError"]


class ErrorCode(IntEnum):
    """Error codes of the error frame. The numbers are part of the wire format."""

    # 400: the request itself is wrong
    MALFORMED = 1  # not well-formed or not deterministic CBOR
    BAD_FRAME = 2  # well-formed CBOR of the wrong shape, type or value
    UNSUPPORTED_VERSION = 3
    LIMIT_EXCEEDED = 4  # a count, length or depth limit
    BAD_SIGNATURE = 5  # an op or proof signature that does not verify
    BUDGET_TOO_SMALL = 6
    # 413
    TOO_LARGE = 7
    # 401: who is asking is not established
    UNAUTHENTICATED = 10  # unknown session, bad request tag
    SESSION_EXPIRED = 11
    REPLAYED = 12  # counter not above the highest accepted
    DEVICE_REVOKED = 13
    # 403
    ENROLMENT_REFUSED = 20  # unknown, used or expired enrolment code
    FORBIDDEN = 21  # e.g. a non-admin changing membership
    # 404
    NOT_FOUND = 30  # unknown, or not yours: the same answer
    # 409
    OP_CONFLICT = 40  # same op id, different bytes
    OP_OUT_OF_ORDER = 41  # a new op id not above the device's highest
    ROSTER_CONFLICT = 42  # membership op whose prev is not the head
    CONVERSATION_EXISTS = 43
    CURSOR_AHEAD = 44  # a cursor beyond the server's high-water mark
    # 429
    RATE_LIMITED = 50
    # 503
    UNAVAILABLE = 60
    # 500
    INTERNAL = 70

    @property
    def http_status(self) -> int:
        """The HTTP status this code is sent with (SPEC.md, error table)."""
        return _HTTP_STATUS[self]

    @property
    def peer_fault(self) -> bool:
        """True when the code blames the request, not the server."""
        return self.http_status < 500


_HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.MALFORMED: 400,
    ErrorCode.BAD_FRAME: 400,
    ErrorCode.UNSUPPORTED_VERSION: 400,
    ErrorCode.LIMIT_EXCEEDED: 400,
    ErrorCode.BAD_SIGNATURE: 400,
    ErrorCode.BUDGET_TOO_SMALL: 400,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.SESSION_EXPIRED: 401,
    ErrorCode.REPLAYED: 401,
    ErrorCode.DEVICE_REVOKED: 401,
    ErrorCode.ENROLMENT_REFUSED: 403,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.OP_CONFLICT: 409,
    ErrorCode.OP_OUT_OF_ORDER: 409,
    ErrorCode.ROSTER_CONFLICT: 409,
    ErrorCode.CONVERSATION_EXISTS: 409,
    ErrorCode.CURSOR_AHEAD: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}


class ProtocolError(Exception):
    """A frame or request that the spec does not allow.

    ``code`` is the spec's error code; ``message`` is short, for a person;
    ``retry_after`` (seconds) is set for codes that invite a retry;
    ``op_index`` points at the pushed op that caused the error, when one did.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        retry_after: int | None = None,
        op_index: int | None = None,
    ) -> None:
        super().__init__(f"{code.name.lower()}: {message}")
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.op_index = op_index


class EncodeError(ProtocolError):
    """Raised when asked to encode a value the spec forbids (our bug)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INTERNAL, message)
