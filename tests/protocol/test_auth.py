"""Authentication: HKDF, request and response tags, and the signing inputs, with real crypto."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from protocol import (
    ContentOp,
    EnvelopeOp,
    OpType,
    counter_is_fresh,
    derive_session_keys,
    hkdf_sha256,
    op_signing_input,
    register_signing_input,
    request_tag,
    response_tag,
    session_grant_signing_input,
    session_seal_info,
    session_signing_input,
    tags_equal,
)

CONV = bytes.fromhex("7f3a9c0e51d2b864")


def test_hkdf_matches_rfc5869_case_1() -> None:
    okm = hkdf_sha256(
        bytes.fromhex("0b" * 22),
        salt=bytes.fromhex("000102030405060708090a0b0c"),
        info=bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        length=42,
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_hkdf_matches_rfc5869_case_3_empty_salt_and_info() -> None:
    okm = hkdf_sha256(bytes.fromhex("0b" * 22), salt=b"", info=b"", length=42)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


def test_session_keys_differ_per_direction() -> None:
    keys = derive_session_keys(bytes(32))
    assert keys.request_key != keys.response_key and len(keys.request_key) == 32


def test_tags_bind_path_session_counter_and_body() -> None:
    key = derive_session_keys(bytes(32)).request_key
    base = {"path": "/v1/sync", "session_id": 7, "counter": 3, "body": b"\xa0"}
    tag = request_tag(key, **base)  # type: ignore[arg-type]
    assert len(tag) == 16
    for field, other in (("path", "/v1/directory"), ("session_id", 8), ("counter", 4),
                         ("body", b"\xa1\x02\x00")):
        changed = dict(base, **{field: other})
        assert not tags_equal(tag, request_tag(key, **changed))  # type: ignore[arg-type]
    # A response tag is never a valid request tag, even under the same key.
    assert not tags_equal(tag, response_tag(key, **base))  # type: ignore[arg-type]


def test_replay_rule() -> None:
    assert counter_is_fresh(5, 4)
    assert not counter_is_fresh(4, 4)
    assert not counter_is_fresh(3, 4)


def test_op_signature_binds_conversation_device_type_and_op_id() -> None:
    key = Ed25519PrivateKey.generate()
    op = ContentOp(OpType.CHAT, 5, b"ciphertext", bytes(64))
    signature = key.sign(op_signing_input(CONV, 301, op))
    key.public_key().verify(signature, op_signing_input(CONV, 301, op))
    forgeries = [
        op_signing_input(bytes(8), 301, op),
        op_signing_input(CONV, 302, op),
        op_signing_input(CONV, 301, ContentOp(OpType.ANNOUNCE, 5, b"ciphertext", bytes(64))),
        op_signing_input(CONV, 301, ContentOp(OpType.CHAT, 6, b"ciphertext", bytes(64))),
        op_signing_input(CONV, 301, ContentOp(OpType.CHAT, 5, b"ciphertexT", bytes(64))),
    ]
    for forged in forgeries:
        with pytest.raises(InvalidSignature):
            key.public_key().verify(signature, forged)


def test_envelope_signature_binds_its_addressee() -> None:
    a = EnvelopeOp(2, 302, b"sealed", bytes(64))
    b = EnvelopeOp(2, 303, b"sealed", bytes(64))
    assert op_signing_input(CONV, 301, a) != op_signing_input(CONV, 301, b)


def test_purposes_never_share_signing_inputs() -> None:
    nonce = bytes(16)
    inputs = {
        register_signing_input("+254700000001", "code", bytes(32), bytes(32)),
        session_signing_input(301, nonce),
        session_grant_signing_input(301, nonce, 1, 2, b""),
        op_signing_input(CONV, 301, ContentOp(OpType.CHAT, 1, b"", bytes(64))),
    }
    assert len(inputs) == 4


def test_session_secret_sealed_with_hpke_opens_only_for_its_device_and_session() -> None:
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
    device_key = X25519PrivateKey.generate()
    secret = bytes(range(32))
    sealed = suite.encrypt(secret, device_key.public_key(), info=session_seal_info(301, 9, 100))
    assert len(sealed) == 32 + 32 + 16  # enc + secret + tag: the spec's 80 bytes
    assert suite.decrypt(sealed, device_key, info=session_seal_info(301, 9, 100)) == secret
    with pytest.raises(InvalidTag):
        suite.decrypt(sealed, device_key, info=session_seal_info(301, 10, 100))
    with pytest.raises(InvalidTag):
        suite.decrypt(sealed, X25519PrivateKey.generate(), info=session_seal_info(301, 9, 100))
