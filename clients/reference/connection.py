"""Talking to a syncd server over HTTP: registration, sessions, authenticated calls.

A thin layer: frames come from ``protocol``, keys from ``crypto``; this
module adds HTTP (httpx, with no headers beyond what HTTP/1.1 needs) and the
session rules of SPEC.md section 6 (a fresh counter per request, the response
tag checked before anything in the response is believed).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from protocol import (
    AuthedRequest,
    AuthedResponse,
    ChallengeRequest,
    ChallengeResponse,
    DirectoryRequest,
    DirectoryResponse,
    ErrorCode,
    ErrorFrame,
    ProtocolError,
    RegisterRequest,
    RegisterResponse,
    SessionRequest,
    SessionResponse,
    SyncRequest,
    SyncResponse,
    decode,
    derive_session_keys,
    encode,
    register_signing_input,
    request_tag,
    response_tag,
    session_grant_signing_input,
    session_seal_info,
    session_signing_input,
    tags_equal,
)
from protocol.limits import MAX_RESPONSE_BYTES

from .crypto import CryptoError, DeviceKeys, signature_valid

__all__ = ["Connection", "ServerError", "Session"]



class ServerError(Exception):
    """The server answered with an error frame.

    ``authenticated`` is true when the frame came tagged with the session's
    response key: only then may a client drop data, reset a cursor or stop
    (SPEC.md section 11). An untagged error only ever means "retry".
    """

    def __init__(self, status: int, frame: ErrorFrame, body: bytes = b"",
                 authenticated: bool = False) -> None:
        super().__init__(f"HTTP {status}: {frame.message} (code {frame.code})")
        self.status = status
        self.frame = frame
        self.body = body
        self.authenticated = authenticated

    @property
    def code(self) -> ErrorCode | None:
        return self.frame.known_code


class ResponseForged(Exception):
    """A response whose tag or signature does not verify: treat it as lost."""


@dataclass
class Session:
    session_id: int
    expires_at: int
    request_key: bytes
    response_key: bytes
    counter: int = 0


class Connection:
    """One server, one HTTP/1.1 keep-alive connection pool."""

    def __init__(self, base_url: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)
        self.client.headers.clear()  # every header byte is paid for on 2G

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def post(self, path: str, body: bytes) -> bytes:
        response = self.client.post(path, content=body)  # CBOR, no content-type (SPEC §4)
        if response.status_code == 200:
            return response.content
        try:
            frame = decode(response.content, ErrorFrame)
        except ProtocolError:
            frame = ErrorFrame(int(ErrorCode.INTERNAL), f"HTTP {response.status_code}")
        raise ServerError(response.status_code, frame, response.content)

    def register(self, phone: str, code: str, keys: DeviceKeys) -> RegisterResponse:
        proof = keys.sign(register_signing_input(phone, code, keys.sign_public, keys.hpke_public))
        request = RegisterRequest(phone, code, keys.sign_public, keys.hpke_public, proof)
        return decode(self.post("/v1/register", encode(request)), RegisterResponse)

    def open_session(self, device_id: int, keys: DeviceKeys, server_key: bytes) -> Session:
        challenge = decode(self.post("/v1/challenge", encode(ChallengeRequest(device_id))),
                           ChallengeResponse)
        signature = keys.sign(session_signing_input(device_id, challenge.nonce))
        request = SessionRequest(device_id, challenge.nonce, signature)
        grant = decode(self.post("/v1/session", encode(request)), SessionResponse)
        signed = session_grant_signing_input(device_id, challenge.nonce, grant.session_id,
                                             grant.expires_at, grant.sealed)
        if not signature_valid(server_key, grant.signature, signed):
            raise ResponseForged("session grant not signed by the pinned server key")
        try:
            secret = keys.open_sealed(grant.sealed, session_seal_info(
                device_id, grant.session_id, grant.expires_at))
        except CryptoError as exc:
            raise ResponseForged("session secret does not open") from exc
        derived = derive_session_keys(secret)
        return Session(grant.session_id, grant.expires_at, derived.request_key,
                       derived.response_key)

    def call(self, session: Session, path: str, body: bytes) -> bytes:
        """One authenticated request; returns the verified response body."""
        session.counter += 1
        counter = session.counter
        tag = request_tag(session.request_key, path=path, session_id=session.session_id,
                          counter=counter, body=body)
        request = encode(AuthedRequest(session.session_id, counter, body, tag))
        try:
            raw = self.post(path, request)
        except ServerError as error:
            raise self._authenticate_error(session, path, counter, error) from None
        reply = decode(raw, AuthedResponse, max_bytes=MAX_RESPONSE_BYTES)
        if not self._tag_ok(session, path, counter, reply):
            raise ResponseForged("response tag does not verify")
        return reply.body

    @staticmethod
    def _tag_ok(session: Session, path: str, counter: int, reply: AuthedResponse) -> bool:
        expected = response_tag(session.response_key, path=path, session_id=session.session_id,
                                counter=counter, body=reply.body)
        return tags_equal(expected, reply.tag)

    def _authenticate_error(self, session: Session, path: str, counter: int,
                            error: ServerError) -> ServerError:
        try:
            sealed = decode(error.body, AuthedResponse)
        except ProtocolError:
            return error  # a plain error frame: untagged
        if not self._tag_ok(session, path, counter, sealed):
            return ServerError(error.status, ErrorFrame(int(ErrorCode.INTERNAL),
                                                        "error with a bad tag"), error.body)
        try:
            frame = decode(sealed.body, ErrorFrame)
        except ProtocolError:
            return error
        return ServerError(error.status, frame, error.body, authenticated=True)

    def sync(self, session: Session, request: SyncRequest) -> SyncResponse:
        return decode(self.call(session, "/v1/sync", encode(request)), SyncResponse,
                      max_bytes=MAX_RESPONSE_BYTES)

    def directory(self, session: Session, request: DirectoryRequest) -> DirectoryResponse:
        return decode(self.call(session, "/v1/directory", encode(request)), DirectoryResponse)
