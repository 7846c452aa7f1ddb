"""The reference client's cryptography, in one place, with named constructions.

Everything here follows protocol/SPEC.md sections 5, 6, 8 and 10 and uses
standard constructions from ``cryptography`` only: Ed25519 signatures, HPKE
base mode (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305) to
wrap keys for one device, and ChaCha20-Poly1305 for payloads under a
per-sender key, with associated data binding every field an attacker could
swap.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol import hkdf_sha256, op_signing_input
from protocol.e2e import (
    EnvelopeKey,
    SealedPayload,
    envelope_info,
    message_key_info,
    payload_aad,
    payload_nonce,
)
from protocol.ops import Op

__all__ = [
    "CryptoError",
    "DeviceKeys",
    "decrypt_payload",
    "encrypt_payload",
    "open_key_envelope",
    "seal_key_for_device",
    "sign_op",
    "signature_valid",
]

HPKE_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


class CryptoError(Exception):
    """Ciphertext or a signature that does not verify."""


def _raw(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class DeviceKeys:
    """A device's private keys: Ed25519 to sign, X25519 to open what is sealed to it."""

    sign_seed: bytes
    hpke_seed: bytes

    @classmethod
    def generate(cls) -> DeviceKeys:
        return cls(os.urandom(32), os.urandom(32))

    @property
    def sign_public(self) -> bytes:
        return _raw(Ed25519PrivateKey.from_private_bytes(self.sign_seed).public_key())

    @property
    def hpke_public(self) -> bytes:
        return _raw(X25519PrivateKey.from_private_bytes(self.hpke_seed).public_key())

    def sign(self, data: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.sign_seed).sign(data)

    def open_sealed(self, sealed: bytes, info: bytes) -> bytes:
        """Open an HPKE single-shot ciphertext sealed to this device."""
        try:
            return HPKE_SUITE.decrypt(sealed, X25519PrivateKey.from_private_bytes(self.hpke_seed),
                                      info=info)
        except (InvalidTag, ValueError) as exc:
            raise CryptoError("sealed data does not open for this device") from exc


def signature_valid(public_key: bytes, signature: bytes, data: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def sign_op(keys: DeviceKeys, conv: bytes, device_id: int, op: Op) -> Op:
    """The op with its signature (SPEC.md section 8); ``op`` may carry any placeholder."""
    return dataclasses.replace(op, signature=keys.sign(op_signing_input(conv, device_id, op)))


def seal_key_for_device(hpke_key: bytes, conv: bytes, from_device: int, to_device: int,
                        epoch: int, epoch_key: bytes) -> bytes:
    """Wrap an epoch key for one device: the ``sealed`` of a key envelope."""
    plain = EnvelopeKey(epoch, epoch_key).to_bytes()
    return HPKE_SUITE.encrypt(plain, X25519PublicKey.from_public_bytes(hpke_key),
                              info=envelope_info(conv, from_device, to_device))


def open_key_envelope(keys: DeviceKeys, sealed: bytes, conv: bytes, from_device: int,
                      to_device: int) -> EnvelopeKey:
    return EnvelopeKey.from_bytes(
        keys.open_sealed(sealed, envelope_info(conv, from_device, to_device)))


def _message_key(epoch_key: bytes, conv: bytes, epoch: int, device: int) -> bytes:
    return hkdf_sha256(epoch_key, salt=conv, info=message_key_info(conv, epoch, device))


def encrypt_payload(epoch_key: bytes, conv: bytes, epoch: int, device: int, op_type: int,
                    op_id: int, plaintext: bytes) -> bytes:
    """The ``payload`` of a content op: ``[epoch, ciphertext]`` (SPEC.md section 10)."""
    aead = ChaCha20Poly1305(_message_key(epoch_key, conv, epoch, device))
    ciphertext = aead.encrypt(payload_nonce(op_id), plaintext,
                              payload_aad(conv, epoch, device, op_type, op_id))
    return SealedPayload(epoch, ciphertext).to_bytes()


def decrypt_payload(epoch_key: bytes, conv: bytes, device: int, op_type: int, op_id: int,
                    payload: bytes) -> bytes:
    sealed = SealedPayload.from_bytes(payload)
    aead = ChaCha20Poly1305(_message_key(epoch_key, conv, sealed.epoch, device))
    try:
        return aead.decrypt(payload_nonce(op_id), sealed.ciphertext,
                            payload_aad(conv, sealed.epoch, device, op_type, op_id))
    except InvalidTag as exc:
        raise CryptoError("payload does not decrypt") from exc
