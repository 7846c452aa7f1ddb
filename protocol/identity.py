"""Identity frames: registration, sessions and the key directory (SPEC.md, "Identity").

    POST /v1/register   register-request  -> register-response
    POST /v1/challenge  challenge-request -> challenge-response
    POST /v1/session    session-request   -> session-response
    POST /v1/directory  authed(directory-request) -> authed(directory-response)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import _schema as s
from .auth import CHALLENGE_BYTES, SESSION_SECRET_BYTES
from .limits import MAX_CODE_BYTES, MAX_DEVICES_PER_USER, MAX_LOOKUP, MAX_PHONE_BYTES, VERSION
from .ops import KEY_BYTES, SIGNATURE_BYTES

__all__ = [
    "ChallengeRequest",
    "ChallengeResponse",
    "DeviceEntry",
    "DirectoryRequest",
    "DirectoryResponse",
    "RegisterRequest",
    "RegisterResponse",
    "SessionRequest",
    "SessionResponse",
    "UserEntry",
    "check_phone",
]


SEALED_SECRET_BYTES = 32 + SESSION_SECRET_BYTES + 16
"""HPKE enc (X25519), the 32-byte secret, the ChaCha20-Poly1305 tag."""


def check_phone(value: Any) -> str:
    """A phone number in E.164 form: '+' then 8 to 15 digits."""
    phone = s.tstr(value, "phone", max_bytes=MAX_PHONE_BYTES)
    digits = phone[1:]
    if not phone.startswith("+") or not digits.isascii() or not digits.isdigit():
        raise s.bad("phone must be in E.164 form, like +254700000001")
    if not 8 <= len(digits) <= 15:
        raise s.bad("phone must have 8 to 15 digits")
    return phone


def _key(value: Any, what: str) -> bytes:
    return s.bstr(value, what, size=KEY_BYTES)


def _device(value: Any) -> int:
    return s.uint(value, "device id", minimum=1)


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    """A new device: the enrolment code for a phone, its public keys, and proof of its key."""

    phone: str
    code: str
    sign_key: bytes
    hpke_key: bytes
    proof: bytes
    version: int = VERSION

    def __post_init__(self) -> None:
        s.check_version(self.version)
        check_phone(self.phone)
        s.tstr(self.code, "enrolment code", max_bytes=MAX_CODE_BYTES, min_bytes=1)
        _key(self.sign_key, "signing key")
        _key(self.hpke_key, "HPKE key")
        s.bstr(self.proof, "proof", size=SIGNATURE_BYTES)

    def to_value(self) -> list[Any]:
        return [self.version, self.phone, self.code, self.sign_key, self.hpke_key, self.proof]

    @classmethod
    def from_value(cls, value: Any) -> RegisterRequest:
        raw = s.versioned(value, "register request", min_len=6)
        return cls(raw[1], raw[2], raw[3], raw[4], raw[5])


@dataclass(frozen=True, slots=True)
class RegisterResponse:
    """The ids the server gave the user and device, and the server's signing key to pin."""

    user_id: int
    device_id: int
    server_key: bytes
    version: int = VERSION

    def __post_init__(self) -> None:
        s.check_version(self.version)
        s.uint(self.user_id, "user id", minimum=1)
        _device(self.device_id)
        _key(self.server_key, "server key")

    def to_value(self) -> list[Any]:
        return [self.version, self.user_id, self.device_id, self.server_key]

    @classmethod
    def from_value(cls, value: Any) -> RegisterResponse:
        raw = s.versioned(value, "register response", min_len=4)
        return cls(raw[1], raw[2], raw[3])


@dataclass(frozen=True, slots=True)
class ChallengeRequest:
    device_id: int
    version: int = VERSION

    def __post_init__(self) -> None:
        s.check_version(self.version)
        _device(self.device_id)

    def to_value(self) -> list[Any]:
        return [self.version, self.device_id]

    @classmethod
    def from_value(cls, value: Any) -> ChallengeRequest:
        raw = s.versioned(value, "challenge request", min_len=2)
        return cls(raw[1])


@dataclass(frozen=True, slots=True)
class ChallengeResponse:
    nonce: bytes
    version: int = VERSION

    def __post_init__(self) -> None:
        s.check_version(self.version)
        s.bstr(self.nonce, "challenge", size=CHALLENGE_BYTES)

    def to_value(self) -> list[Any]:
        return [self.version, self.nonce]

    @classmethod
    def from_value(cls, value: Any) -> ChallengeResponse:
        raw = s.versioned(value, "challenge response", min_len=2)
        return cls(raw[1])


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """The device's signature over the challenge it was given."""

    device_id: int
    nonce: bytes
    signature: bytes
    version: int = VERSION

    def __post_init__(self) -> None:
        s.check_version(self.version)
        _device(self.device_id)
        s.bstr(self.nonce, "challenge", size=CHALLENGE_BYTES)
        s.bstr(self.signature, "signature", size=SIGNATURE_BYTES)

    def to_value(self) -> list[Any]:
        return [self.version, self.device_id, self.nonce, self.signature]

    @classmethod
    def from_value(cls, value: Any) -> SessionRequest:
        raw = s.versioned(value, "session request", min_len=4)
        return cls(raw[1], raw[2], raw[3])


@dataclass(frozen=True, slots=True)
class SessionResponse:
    """A session: its id, expiry (Unix seconds), the sealed secret, the server's signature."""

    session_id: int
    expires_at: int
    sealed: bytes
    signature: bytes
    version: int = VERSION

    def __post_init__(self) -> None:
        s.check_version(self.version)
        s.uint(self.session_id, "session id", minimum=1)
        s.uint(self.expires_at, "expiry")
        s.bstr(self.sealed, "sealed secret", size=SEALED_SECRET_BYTES)
        s.bstr(self.signature, "signature", size=SIGNATURE_BYTES)

    def to_value(self) -> list[Any]:
        return [self.version, self.session_id, self.expires_at, self.sealed, self.signature]

    @classmethod
    def from_value(cls, value: Any) -> SessionResponse:
        raw = s.versioned(value, "session response", min_len=5)
        return cls(raw[1], raw[2], raw[3], raw[4])


@dataclass(frozen=True, slots=True)
class DirectoryRequest:
    """Body of ``/v1/directory``: users to look up, by phone, user id or one of their devices.

    Looking up by device id is how a client learns who signed an op from a
    device it has not seen before.
    """

    phones: tuple[str, ...] = ()
    user_ids: tuple[int, ...] = ()
    device_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.phones and not self.user_ids and not self.device_ids:
            raise s.bad("a directory request names at least one user")
        if len(self.phones) + len(self.user_ids) + len(self.device_ids) > MAX_LOOKUP:
            raise s.too_many(f"more than {MAX_LOOKUP} users in one look-up")
        for phone in self.phones:
            check_phone(phone)
        for user_id in self.user_ids:
            s.uint(user_id, "user id", minimum=1)
        for device_id in self.device_ids:
            s.uint(device_id, "device id", minimum=1)

    def to_value(self) -> dict[int, Any]:
        body: dict[int, Any] = {}
        if self.phones:
            body[1] = list(self.phones)
        if self.user_ids:
            body[2] = list(self.user_ids)
        if self.device_ids:
            body[3] = list(self.device_ids)
        return body

    @classmethod
    def from_value(cls, value: Any) -> DirectoryRequest:
        body = s.mapping(value, "directory request")
        phones = s.items(body[1], "phones", max_count=MAX_LOOKUP, min_count=1) if 1 in body else []
        user_ids = (s.items(body[2], "user ids", max_count=MAX_LOOKUP, min_count=1)
                    if 2 in body else [])
        device_ids = (s.items(body[3], "device ids", max_count=MAX_LOOKUP, min_count=1)
                      if 3 in body else [])
        return cls(tuple(phones), tuple(user_ids), tuple(device_ids))


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """One device of a user, with its public keys; revoked devices are listed as such."""

    device_id: int
    sign_key: bytes
    hpke_key: bytes
    revoked: bool = False

    def __post_init__(self) -> None:
        _device(self.device_id)
        _key(self.sign_key, "signing key")
        _key(self.hpke_key, "HPKE key")
        s.boolean(self.revoked, "revoked")

    def to_value(self) -> list[Any]:
        return [self.device_id, self.sign_key, self.hpke_key, self.revoked]

    @classmethod
    def from_value(cls, value: Any) -> DeviceEntry:
        raw = s.array(value, "device entry", min_len=4)
        return cls(raw[0], raw[1], raw[2], raw[3])


@dataclass(frozen=True, slots=True)
class UserEntry:
    user_id: int
    phone: str
    devices: tuple[DeviceEntry, ...]

    def __post_init__(self) -> None:
        s.uint(self.user_id, "user id", minimum=1)
        check_phone(self.phone)

    def to_value(self) -> list[Any]:
        return [self.user_id, self.phone, [device.to_value() for device in self.devices]]

    @classmethod
    def from_value(cls, value: Any) -> UserEntry:
        raw = s.array(value, "user entry", min_len=3)
        devices = s.items(raw[2], "devices", max_count=MAX_DEVICES_PER_USER)
        return cls(raw[0], raw[1], tuple(DeviceEntry.from_value(d) for d in devices))


@dataclass(frozen=True, slots=True)
class DirectoryResponse:
    """The users found, each with their current and revoked devices; unknown ones are left out."""

    users: tuple[UserEntry, ...] = ()

    def __post_init__(self) -> None:
        s.items(list(self.users), "users", max_count=MAX_LOOKUP)

    def to_value(self) -> dict[int, Any]:
        return {1: [user.to_value() for user in self.users]} if self.users else {}

    @classmethod
    def from_value(cls, value: Any) -> DirectoryResponse:
        body = s.mapping(value, "directory response")
        users = s.items(body[1], "users", max_count=MAX_LOOKUP, min_count=1) if 1 in body else []
        return cls(tuple(UserEntry.from_value(user) for user in users))
