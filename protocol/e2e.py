"""End-to-end payload formats: what is inside the ciphertext (SPEC.md, "Payloads").

Theory of operation. Each conversation has numbered key epochs; an epoch key
is 32 random bytes that an admin or member seals with HPKE (RFC 9180, base
mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305) to every
member device, as envelope ops. To send, a device derives its own message key
for the epoch:

    message key = HKDF-SHA256(ikm = epoch key, salt = conv,
                              info = ["syncd/1 message key", conv, epoch, device])

and encrypts with ChaCha20-Poly1305 under a nonce made of the op id (which a
device never reuses). Because every sender has its own key, two senders
sharing an epoch can never collide on a nonce. The associated data binds the
conversation, epoch, sender device, op type and op id, so ciphertext cannot be
replayed into another conversation, lane or op, nor attributed to another
sender. The op's payload is then ``[epoch, ciphertext]``.

This module builds the bytes every client must agree on; the cipher calls are
made by clients with ``cryptography``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from . import _schema as s
from .codec import dumps, loads
from .limits import MAX_PAYLOAD_BYTES, MAX_TEXT_BYTES
from .ops import CONV_ID_BYTES, KEY_BYTES

__all__ = [
    "AEAD_TAG_BYTES",
    "NONCE_BYTES",
    "EnvelopeKey",
    "MessageBody",
    "MessageKind",
    "OpRef",
    "SealedPayload",
    "envelope_info",
    "message_key_info",
    "payload_aad",
    "payload_nonce",
]

AEAD_TAG_BYTES = 16
NONCE_BYTES = 12

LABEL_MESSAGE_KEY = "syncd/1 message key"
LABEL_PAYLOAD = "syncd/1 payload"
LABEL_ENVELOPE = "syncd/1 envelope"


def _conv(conv: bytes) -> bytes:
    return s.bstr(conv, "conversation id", size=CONV_ID_BYTES)


def message_key_info(conv: bytes, epoch: int, device: int) -> bytes:
    """HKDF ``info`` for a sender's message key in one epoch."""
    return dumps([LABEL_MESSAGE_KEY, _conv(conv), epoch, device])


def payload_aad(conv: bytes, epoch: int, device: int, op_type: int, op_id: int) -> bytes:
    """AEAD associated data of a content payload."""
    return dumps([LABEL_PAYLOAD, _conv(conv), epoch, device, op_type, op_id])


def payload_nonce(op_id: int) -> bytes:
    """The 12-byte AEAD nonce of an op: its op id, big-endian."""
    s.uint(op_id, "op id", minimum=1)
    return op_id.to_bytes(NONCE_BYTES, "big")


def envelope_info(conv: bytes, from_device: int, to_device: int) -> bytes:
    """HPKE ``info`` of a key envelope: binds it to conversation, sender and addressee."""
    return dumps([LABEL_ENVELOPE, _conv(conv), from_device, to_device])


@dataclass(frozen=True, slots=True)
class SealedPayload:
    """A content op's payload: the key epoch, then the AEAD ciphertext (tag included)."""

    epoch: int
    ciphertext: bytes

    def __post_init__(self) -> None:
        s.uint(self.epoch, "epoch")
        s.bstr(self.ciphertext, "ciphertext", max_len=MAX_PAYLOAD_BYTES)
        if len(self.ciphertext) < AEAD_TAG_BYTES:
            raise s.bad("ciphertext shorter than its tag")

    def to_value(self) -> list[Any]:
        return [self.epoch, self.ciphertext]

    def to_bytes(self) -> bytes:
        return dumps(self.to_value())

    @classmethod
    def from_value(cls, value: Any) -> SealedPayload:
        raw = s.array(value, "sealed payload", min_len=2)
        return cls(raw[0], raw[1])

    @classmethod
    def from_bytes(cls, data: bytes) -> SealedPayload:
        return cls.from_value(loads(data, max_bytes=MAX_PAYLOAD_BYTES))


@dataclass(frozen=True, slots=True)
class EnvelopeKey:
    """The plaintext of a key envelope: which epoch, and its key."""

    epoch: int
    key: bytes

    def __post_init__(self) -> None:
        s.uint(self.epoch, "epoch")
        s.bstr(self.key, "epoch key", size=KEY_BYTES)

    def to_value(self) -> list[Any]:
        return [self.epoch, self.key]

    def to_bytes(self) -> bytes:
        return dumps(self.to_value())

    @classmethod
    def from_value(cls, value: Any) -> EnvelopeKey:
        raw = s.array(value, "envelope key", min_len=2)
        return cls(raw[0], raw[1])

    @classmethod
    def from_bytes(cls, data: bytes) -> EnvelopeKey:
        return cls.from_value(loads(data, max_bytes=MAX_PAYLOAD_BYTES))


@dataclass(frozen=True, slots=True)
class OpRef:
    """Names an op by its author device and op id (known before the server acks it)."""

    device: int
    op_id: int

    def __post_init__(self) -> None:
        s.uint(self.device, "referenced device", minimum=1)
        s.uint(self.op_id, "referenced op id", minimum=1)

    def to_value(self) -> list[int]:
        return [self.device, self.op_id]

    @classmethod
    def from_value(cls, value: Any) -> OpRef:
        raw = s.array(value, "op reference", min_len=2)
        return cls(raw[0], raw[1])


class MessageKind(IntEnum):
    TEXT = 0
    EDIT = 1
    DELETE = 2
    TITLE = 3  # the conversation's name; an admin's latest counts


_MESSAGE_KINDS = frozenset(int(kind) for kind in MessageKind)
FORM_KINDS = range(16, 32)
"""Payload kinds reserved for forms (polls, surveys, job cards): SPEC.md, "Forms"."""



@dataclass(frozen=True, slots=True)
class MessageBody:
    """The plaintext of a message op.

    ``text`` is the message (or, for an edit, its new text); ``reply_to``
    names the op answered; ``target`` names the op an edit or delete acts on;
    ``sent_at`` is the sender's clock in seconds since 1970, for display only;
    ``padding`` hides the length of short messages.
    """

    kind: MessageKind
    text: str | None = None
    reply_to: OpRef | None = None
    target: OpRef | None = None
    sent_at: int | None = None
    padding: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, MessageKind):
            raise s.bad("unknown message kind")
        if self.text is not None:
            s.tstr(self.text, "text", max_bytes=MAX_TEXT_BYTES)
        if self.kind in (MessageKind.EDIT, MessageKind.DELETE) and self.target is None:
            raise s.bad("an edit or delete names its target")
        if self.kind is MessageKind.TEXT and self.text is None:
            raise s.bad("a text message has text")
        if self.kind in (MessageKind.EDIT, MessageKind.TITLE) and self.text is None:
            raise s.bad("an edit or a title carries text")
        if self.sent_at is not None:
            s.uint(self.sent_at, "sent at")
        s.bstr(self.padding, "padding", max_len=MAX_PAYLOAD_BYTES)

    def to_bytes(self) -> bytes:
        return dumps(self.to_value())

    def to_value(self) -> dict[int, Any]:
        body: dict[int, Any] = {0: int(self.kind)}
        if self.text is not None:
            body[1] = self.text
        if self.reply_to is not None:
            body[2] = self.reply_to.to_value()
        if self.target is not None:
            body[3] = self.target.to_value()
        if self.sent_at is not None:
            body[4] = self.sent_at
        if self.padding:
            body[15] = self.padding
        return body

    @classmethod
    def from_bytes(cls, data: bytes) -> MessageBody:
        return cls.from_value(loads(data, max_bytes=MAX_PAYLOAD_BYTES))

    @classmethod
    def from_value(cls, value: Any) -> MessageBody:
        body = s.mapping(value, "message")
        if 0 not in body:
            raise s.bad("message needs a kind")
        kind_number = s.uint(body[0], "message kind")
        if kind_number not in _MESSAGE_KINDS:
            raise s.bad(f"unknown message kind {kind_number}")
        return cls(
            kind=MessageKind(kind_number),
            text=s.tstr(body[1], "text", max_bytes=MAX_TEXT_BYTES) if 1 in body else None,
            reply_to=OpRef.from_value(body[2]) if 2 in body else None,
            target=OpRef.from_value(body[3]) if 3 in body else None,
            sent_at=s.uint(body[4], "sent at") if 4 in body else None,
            padding=s.bstr(body[15], "padding") if 15 in body else b"",
        )
