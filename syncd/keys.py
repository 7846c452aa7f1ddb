"""The server's cryptography, in one place: its identity, signature checks, sealing.

Standard constructions from ``cryptography`` only (SPEC.md sections 5 and 6):
Ed25519 for signatures, HPKE base mode (DHKEM(X25519, HKDF-SHA256),
HKDF-SHA256, ChaCha20-Poly1305) to seal a session secret to a device.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["HPKE_SUITE", "ServerIdentity", "hpke_key_usable", "seal_to_device",
           "signature_valid"]

HPKE_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


class ServerIdentity:
    """The server's Ed25519 key, which devices pin when they register."""

    def __init__(self, seed: bytes) -> None:
        self.seed = seed
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


def signature_valid(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """Verify an Ed25519 signature; False for a bad key, signature or message."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def hpke_key_usable(hpke_key: bytes) -> bool:
    """False for an X25519 key HPKE cannot seal to (a low-order point, say)."""
    try:
        seal_to_device(hpke_key, b"", b"syncd/1 key check")
    except ValueError:
        return False
    return True


def seal_to_device(hpke_key: bytes, plaintext: bytes, info: bytes) -> bytes:
    """HPKE single-shot seal to a device's X25519 key: enc || ciphertext."""
    return HPKE_SUITE.encrypt(plaintext, X25519PublicKey.from_public_bytes(hpke_key), info=info)
