"""Device authentication and the exact bytes that get signed or MACed.

Theory of operation (SPEC.md, "Authentication"):

* A device proves itself once per session with its Ed25519 key: it asks for a
  challenge (16 random bytes, single use, short-lived) and signs it. The
  server answers with a session id and a 32-byte session secret sealed with
  HPKE to the device's X25519 key, signed by the server's own Ed25519 key
  (which the device pinned when it registered).
* Both sides derive two keys from the secret with HKDF-SHA256, one per
  direction. Every authenticated request is ``[1, session, counter, body,
  tag]``: the tag is HMAC-SHA256 truncated to 16 bytes over the path, the
  session, the counter and the body bytes. The server accepts a counter only
  if it is above the highest it accepted for that session (replay
  protection). Every response carries a tag over the same path, session and
  counter and its own body, so a response cannot be forged or moved to
  another request.
* Cost on the wire: about 23 bytes per request and 17 per response, against
  one 64-byte signature per request for signed requests, or a TLS session.

Signatures and MACs are computed over deterministic CBOR arrays that start
with a label naming the purpose, so a signature made for one purpose can never
be accepted for another. This module builds those byte strings and does the
HMAC/HKDF arithmetic, which needs only the standard library; Ed25519 and HPKE
are done by the callers with ``cryptography``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from . import _schema as s
from .codec import dumps
from .ops import CONV_ID_BYTES, KEY_BYTES, MembershipOp, Op

__all__ = [
    "CHALLENGE_BYTES",
    "SESSION_SECRET_BYTES",
    "TAG_BYTES",
    "SessionKeys",
    "counter_is_fresh",
    "derive_session_keys",
    "hkdf_sha256",
    "op_signing_input",
    "register_signing_input",
    "request_tag",
    "response_tag",
    "roster_hash",
    "session_grant_signing_input",
    "session_seal_info",
    "session_signing_input",
    "tags_equal",
]

TAG_BYTES = 16
CHALLENGE_BYTES = 16
SESSION_SECRET_BYTES = 32

LABEL_OP = "syncd/1 op"
LABEL_REGISTER = "syncd/1 register"
LABEL_SESSION = "syncd/1 session"
LABEL_SESSION_GRANT = "syncd/1 session grant"
LABEL_SESSION_SEAL = "syncd/1 session seal"
LABEL_REQUEST = "syncd/1 request"
LABEL_RESPONSE = "syncd/1 response"
INFO_REQUEST_KEY = b"syncd/1 request key"
INFO_RESPONSE_KEY = b"syncd/1 response key"


def hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF with SHA-256 (RFC 5869): extract then expand."""
    if length > 255 * 32:
        raise ValueError("HKDF-SHA256 output too long")
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    output = b""
    block = b""
    counter = 1
    while len(output) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        output += block
        counter += 1
    return output[:length]


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """The two MAC keys of a session: one per direction."""

    request_key: bytes
    response_key: bytes


def derive_session_keys(secret: bytes) -> SessionKeys:
    s.bstr(secret, "session secret", size=SESSION_SECRET_BYTES)
    return SessionKeys(
        request_key=hkdf_sha256(secret, salt=b"", info=INFO_REQUEST_KEY),
        response_key=hkdf_sha256(secret, salt=b"", info=INFO_RESPONSE_KEY),
    )


def _tag(key: bytes, label: str, path: str, session_id: int, counter: int, body: bytes) -> bytes:
    message = dumps([label, path, session_id, counter, body])
    return hmac.new(key, message, hashlib.sha256).digest()[:TAG_BYTES]


def request_tag(key: bytes, *, path: str, session_id: int, counter: int, body: bytes) -> bytes:
    """The tag a client puts on an authenticated request to ``path``."""
    return _tag(key, LABEL_REQUEST, path, session_id, counter, body)


def response_tag(key: bytes, *, path: str, session_id: int, counter: int, body: bytes) -> bytes:
    """The tag a server puts on its answer to the request with this counter."""
    return _tag(key, LABEL_RESPONSE, path, session_id, counter, body)


def tags_equal(expected: bytes, received: bytes) -> bool:
    """Compare tags in constant time."""
    return hmac.compare_digest(expected, received)


def counter_is_fresh(counter: int, highest_accepted: int) -> bool:
    """The replay rule: a counter is accepted once, and only above every earlier one."""
    return counter > highest_accepted


def op_signing_input(conv: bytes, device: int, op: Op) -> bytes:
    """Bytes the author device signs for an op (push form, so envelopes name their device).

    Binding the conversation, the author device, the type (hence the lane) and
    the op id means a server cannot move an op to another conversation, lane
    or author, nor replay it under another id.
    """
    s.bstr(conv, "conversation id", size=CONV_ID_BYTES)
    fields = op.signed_fields(pulled=False)
    return dumps([LABEL_OP, conv, device, int(op.op_type), op.op_id, *fields])


def roster_hash(conv: bytes, device: int, op: MembershipOp) -> bytes:
    """The roster hash a membership op leaves at the head of the chain."""
    return hashlib.sha256(op_signing_input(conv, device, op)).digest()


def register_signing_input(phone: str, code: str, sign_key: bytes, hpke_key: bytes) -> bytes:
    """Bytes a new device signs to prove it holds the signing key it registers."""
    s.bstr(sign_key, "signing key", size=KEY_BYTES)
    s.bstr(hpke_key, "HPKE key", size=KEY_BYTES)
    return dumps([LABEL_REGISTER, phone, code, sign_key, hpke_key])


def session_signing_input(device: int, nonce: bytes) -> bytes:
    """Bytes a device signs to answer a challenge."""
    return dumps([LABEL_SESSION, device, nonce])


def session_seal_info(device: int, session_id: int, expires_at: int) -> bytes:
    """HPKE ``info`` for the sealed session secret: binds it to device and session."""
    return dumps([LABEL_SESSION_SEAL, device, session_id, expires_at])


def session_grant_signing_input(
    device: int, nonce: bytes, session_id: int, expires_at: int, sealed: bytes
) -> bytes:
    """Bytes the server signs when it grants a session (binds it to the challenge)."""
    return dumps([LABEL_SESSION_GRANT, device, nonce, session_id, expires_at, sealed])
