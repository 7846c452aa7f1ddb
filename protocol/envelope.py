"""Top-level frames that wrap a body: authenticated requests and responses, and errors.

    authed-request  = [1, session, counter, body: bstr, tag: bstr .size 16]
    authed-response = [1, body: bstr, tag: bstr .size 16]
    error           = [1, code, message, ? {? 1: retry-after, ? 2: [versions], ? 3: op index}]

The body is carried as a byte string so that the tag covers exactly the bytes
that travelled; it is decoded only after the tag has been checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import _schema as s
from .auth import TAG_BYTES
from .errors import ErrorCode, ProtocolError
from .limits import MAX_ERROR_MESSAGE_BYTES, MAX_VERSIONS_LISTED, SUPPORTED_VERSIONS, VERSION

__all__ = ["AuthedRequest", "AuthedResponse", "ErrorFrame"]


@dataclass(frozen=True, slots=True)
class AuthedRequest:
    """An authenticated request: session, fresh counter, body bytes and their tag."""

    session_id: int
    counter: int
    body: bytes
    tag: bytes
    version: int = VERSION

    def __post_init__(self) -> None:
        s.check_version(self.version)
        s.uint(self.session_id, "session id", minimum=1)
        s.uint(self.counter, "counter", minimum=1)
        s.bstr(self.body, "body")
        s.bstr(self.tag, "tag", size=TAG_BYTES)

    def to_value(self) -> list[Any]:
        return [self.version, self.session_id, self.counter, self.body, self.tag]

    @classmethod
    def from_value(cls, value: Any) -> AuthedRequest:
        raw = s.versioned(value, "authenticated request", min_len=5)
        return cls(raw[1], raw[2], s.bstr(raw[3], "body"), s.bstr(raw[4], "tag"))


@dataclass(frozen=True, slots=True)
class AuthedResponse:
    """An authenticated response: body bytes and the server's tag over them."""

    body: bytes
    tag: bytes
    version: int = VERSION

    def __post_init__(self) -> None:
        s.check_version(self.version)
        s.bstr(self.body, "body")
        s.bstr(self.tag, "tag", size=TAG_BYTES)

    def to_value(self) -> list[Any]:
        return [self.version, self.body, self.tag]

    @classmethod
    def from_value(cls, value: Any) -> AuthedResponse:
        raw = s.versioned(value, "authenticated response", min_len=3)
        return cls(s.bstr(raw[1], "body"), s.bstr(raw[2], "tag"))


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """The one error frame: a code from the spec's table and a short message.

    ``code`` is kept as a number so that a code added by a newer peer still
    decodes; ``known_code`` is ``None`` for such a code, and the receiver acts
    on the HTTP status instead.
    """

    code: int
    message: str
    retry_after: int | None = None
    supported_versions: tuple[int, ...] = ()
    op_index: int | None = None
    version: int = VERSION

    def __post_init__(self) -> None:
        s.check_version(self.version)
        s.uint(self.code, "error code")
        s.tstr(self.message, "error message", max_bytes=MAX_ERROR_MESSAGE_BYTES)
        if self.retry_after is not None:
            s.uint(self.retry_after, "retry-after")
        for version in self.supported_versions:
            s.uint(version, "supported version")
        if self.op_index is not None:
            s.uint(self.op_index, "op index")

    @classmethod
    def from_error(cls, error: ProtocolError) -> ErrorFrame:
        """The frame that reports ``error`` to the peer."""
        supported = SUPPORTED_VERSIONS if error.code is ErrorCode.UNSUPPORTED_VERSION else ()
        message = error.message.encode()[:MAX_ERROR_MESSAGE_BYTES].decode("utf-8", "ignore")
        return cls(int(error.code), message, error.retry_after, supported, error.op_index)

    @property
    def known_code(self) -> ErrorCode | None:
        try:
            return ErrorCode(self.code)
        except ValueError:
            return None

    def to_error(self) -> ProtocolError:
        """The error this frame reports (an unknown code reads as ``internal``)."""
        code = self.known_code or ErrorCode.INTERNAL
        return ProtocolError(code, self.message, retry_after=self.retry_after,
                             op_index=self.op_index)

    def to_value(self) -> list[Any]:
        info: dict[int, Any] = {}
        if self.retry_after is not None:
            info[1] = self.retry_after
        if self.supported_versions:
            info[2] = list(self.supported_versions)
        if self.op_index is not None:
            info[3] = self.op_index
        value: list[Any] = [self.version, self.code, self.message]
        if info:
            value.append(info)
        return value

    @classmethod
    def from_value(cls, value: Any) -> ErrorFrame:
        raw = s.versioned(value, "error", min_len=3)
        code = s.uint(raw[1], "error code")
        message = s.tstr(raw[2], "error message", max_bytes=MAX_ERROR_MESSAGE_BYTES)
        info = s.mapping(raw[3], "error info") if len(raw) > 3 else {}
        retry_after = s.uint(info[1], "retry-after") if 1 in info else None
        supported: tuple[int, ...] = ()
        if 2 in info:
            versions = s.items(info[2], "supported versions", max_count=MAX_VERSIONS_LISTED,
                               min_count=1)
            supported = tuple(s.uint(v, "supported version") for v in versions)
        op_index = s.uint(info[3], "op index") if 3 in info else None
        return cls(code, message, retry_after, supported, op_index)
