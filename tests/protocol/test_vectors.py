"""The vector files, both ways: frames encode to exactly their bytes, bytes decode to them."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from protocol import ProtocolError, decode, encode, loads

from .conftest import RULE_TYPES, VECTORS, vector_input


def test_every_frame_type_has_a_vector(valid_vectors: list[dict[str, Any]]) -> None:
    assert {v["rule"] for v in valid_vectors} == set(RULE_TYPES)


def test_files_match_the_generator(generator: ModuleType, valid_vectors: list[dict[str, Any]],
                                   invalid_vectors: list[dict[str, Any]]) -> None:
    built = generator.valid_frames()
    assert [name for name, _, _ in built] == [v["name"] for v in valid_vectors]
    assert generator.invalid_inputs() == invalid_vectors


def test_encode_gives_exactly_the_vector_bytes(generator: ModuleType,
                                               valid_vectors: list[dict[str, Any]]) -> None:
    by_name = {v["name"]: v for v in valid_vectors}
    for name, _, frame in generator.valid_frames():
        assert encode(frame).hex() == by_name[name]["hex"], name


def test_decode_gives_exactly_the_vector_fields(generator: ModuleType,
                                                valid_vectors: list[dict[str, Any]]) -> None:
    built = {name: frame for name, _, frame in generator.valid_frames()}
    for vector in valid_vectors:
        frame_type = RULE_TYPES[vector["rule"]]
        decoded = decode(bytes.fromhex(vector["hex"]), frame_type)
        assert generator.fields(decoded) == vector["fields"], vector["name"]
        assert decoded == built[vector["name"]], vector["name"]
        assert len(bytes.fromhex(vector["hex"])) == vector["size"]
        assert generator.diagnostic(loads(bytes.fromhex(vector["hex"]))) == vector["diagnostic"]


@pytest.mark.parametrize("name", [v["name"] for v in json.loads(
    (VECTORS / "invalid.json").read_text())["vectors"]])
def test_negative_vector_is_refused_with_its_code(name: str,
                                                  invalid_vectors: list[dict[str, Any]]) -> None:
    vector = next(v for v in invalid_vectors if v["name"] == name)
    with pytest.raises(ProtocolError) as refused:
        decode(vector_input(vector), RULE_TYPES[vector["frame"]])
    assert refused.value.code.name.lower() == vector["error"]


def test_negative_vectors_cover_the_required_cases(invalid_vectors: list[dict[str, Any]]) -> None:
    errors = {v["name"]: v["error"] for v in invalid_vectors}
    for required in ("truncated-map", "trailing-bytes", "deep-nesting", "declared-bstr-2^32",
                     "indefinite-array", "duplicate-keys", "tag-datetime", "cursor-text",
                     "unknown-version", "oversize"):
        assert required in errors
    assert {"malformed", "bad_frame", "limit_exceeded", "unsupported_version",
            "too_large", "budget_too_small"} <= set(errors.values())


def test_signatures_in_the_vectors_verify(generator: ModuleType) -> None:
    """Every op signature in the vectors is a real signature over the spec's signing input."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from protocol import SyncRequest, SyncResponse, op_signing_input

    checked = 0
    for _, _, frame in generator.valid_frames():
        blocks: list[tuple[bytes, int | None, Any]] = []
        if isinstance(frame, SyncRequest):
            blocks = [(b.conv, None, op) for b in frame.push for op in b.ops]
        elif isinstance(frame, SyncResponse):
            blocks = [(b.conv, p.from_device, p.op) for b in frame.blocks for p in b.ops]
        for conv, author, op in blocks:
            if not hasattr(op, "signature"):
                continue
            device = author or 301  # every push in the vectors is by device 301
            if getattr(op, "to_device", 0) is None:  # a pulled envelope: addressed to 302
                op = type(op)(op.op_id, 302, op.sealed, op.signature)
            key = Ed25519PublicKey.from_public_bytes(generator.public(f"device_{device}"))
            key.verify(op.signature, op_signing_input(conv, device, op))
            checked += 1
    assert checked >= 10


def test_the_signature_is_not_part_of_its_own_signing_input() -> None:
    from protocol import ContentOp, OpType, op_signing_input

    one = ContentOp(OpType.CHAT, 1, b"x", bytes(64))
    two = ContentOp(OpType.CHAT, 1, b"x", b"\x01" * 64)
    assert op_signing_input(bytes(8), 1, one) == op_signing_input(bytes(8), 1, two)


def test_encrypted_vectors_open_with_the_listed_keys(generator: ModuleType) -> None:
    """The HPKE and AEAD outputs in the vectors are real: they open with the listed seeds."""
    from cryptography.hazmat.primitives import hpke
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from protocol import hkdf_sha256, session_seal_info
    from protocol.e2e import (
        EnvelopeKey,
        MessageBody,
        envelope_info,
        message_key_info,
        payload_aad,
        payload_nonce,
    )

    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
    device_302 = X25519PrivateKey.from_private_bytes(generator.HPKE_SEEDS["device_302"])
    opened = suite.decrypt(generator.SEALED_ENVELOPE, device_302,
                           info=envelope_info(generator.CONV, 301, 302))
    assert EnvelopeKey.from_bytes(opened) == EnvelopeKey(generator.EPOCH, generator.epoch_key())
    device_301 = X25519PrivateKey.from_private_bytes(generator.HPKE_SEEDS["device_301"])
    secret = suite.decrypt(generator.SEALED_SESSION, device_301, info=session_seal_info(
        301, generator.SESSION_ID, generator.EXPIRES))
    assert secret == generator.SESSION_SECRET
    sealed = next(frame for name, _, frame in generator.valid_frames()
                  if name == "e2e-sealed-payload")
    key = hkdf_sha256(generator.epoch_key(), salt=generator.CONV,
                      info=message_key_info(generator.CONV, sealed.epoch, 301))
    plain = ChaCha20Poly1305(key).decrypt(payload_nonce(9), sealed.ciphertext,
                                          payload_aad(generator.CONV, sealed.epoch, 301, 3, 9))
    assert MessageBody.from_bytes(plain).text == "Clinic opens at 9"
