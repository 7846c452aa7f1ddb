"""Known-answer tests for the constructions the client builds on, and frozen vectors for
its own derivations.

RFC 9180's HPKE vectors need a chosen ephemeral key or associated data, which
``cryptography``'s single-shot HPKE API does not take; the HPKE checks here are
the protocol vectors instead: ciphertexts made once and frozen, opened with
the listed keys, plus round trips that fail closed on every bound field.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from clients.reference.crypto import (
    CryptoError,
    DeviceKeys,
    decrypt_payload,
    encrypt_payload,
    open_key_envelope,
    seal_key_for_device,
)
from protocol import hkdf_sha256
from protocol.e2e import MessageBody, message_key_info

ROOT = Path(__file__).resolve().parents[2]


def vectors() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vector_generator_kat",
                                                  ROOT / "protocol" / "vectors" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_chacha20_poly1305_rfc8439_section_2_8_2() -> None:
    key = bytes(range(0x80, 0xA0))
    nonce = bytes.fromhex("070000004041424344454647")
    aad = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
    plaintext = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one "
                 b"tip for the future, sunscreen would be it.")
    sealed = ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)
    assert sealed[:16].hex() == "d31a8d34648e60db7b86afbc53ef7ec2"
    assert sealed[-16:].hex() == "1ae10b594f09e26a7e902ecbd0600691"


def test_ed25519_rfc8032_test_1() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
    keys = DeviceKeys(key.private_bytes_raw(), bytes(32))
    assert keys.sign_public.hex() == (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    assert keys.sign(b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
        "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")


def test_message_key_derivation_is_frozen() -> None:
    conv = bytes.fromhex("7f3a9c0e51d2b864")
    epoch_key = hashlib.sha256(b"epoch key/0").digest()
    key = hkdf_sha256(epoch_key, salt=conv, info=message_key_info(conv, 3, 301))
    assert key.hex() == "a5501f79de17f91916d25654b9734836d6186eaf04762a3839d0a76a43dcc483"


def test_the_protocol_vectors_open_with_the_client_constructions() -> None:
    generated = vectors()
    payload = next(frame for name, _, frame in generated.valid_frames()
                   if name == "e2e-sealed-payload").to_bytes()
    plain = decrypt_payload(generated.epoch_key(), generated.CONV, 301, 3, 9, payload)
    assert MessageBody.from_bytes(plain).text == "Clinic opens at 9"
    receiver = DeviceKeys(generated.SEEDS["device_302"], generated.HPKE_SEEDS["device_302"])
    opened = open_key_envelope(receiver, generated.SEALED_ENVELOPE, generated.CONV, 301, 302)
    assert (opened.epoch, opened.key) == (generated.EPOCH, generated.epoch_key())


def test_envelopes_and_payloads_fail_closed() -> None:
    conv, other = bytes(8), b"\x01" * 8
    alice, bob = DeviceKeys.generate(), DeviceKeys.generate()
    sealed = seal_key_for_device(bob.hpke_public, conv, 1, 2, 0, bytes(32))
    assert open_key_envelope(bob, sealed, conv, 1, 2).key == bytes(32)
    for args in ((alice, sealed, conv, 1, 2), (bob, sealed, other, 1, 2),
                 (bob, sealed, conv, 3, 2), (bob, sealed, conv, 1, 4)):
        with pytest.raises(CryptoError):
            open_key_envelope(*args)
    payload = encrypt_payload(bytes(32), conv, 0, 1, 3, 7, b"hello")
    assert decrypt_payload(bytes(32), conv, 1, 3, 7, payload) == b"hello"
    for key, where, device, op_type, op_id in ((b"\x02" * 32, conv, 1, 3, 7),
                                               (bytes(32), other, 1, 3, 7),
                                               (bytes(32), conv, 2, 3, 7),
                                               (bytes(32), conv, 1, 2, 7),
                                               (bytes(32), conv, 1, 3, 8)):
        with pytest.raises(CryptoError):
            decrypt_payload(key, where, device, op_type, op_id, payload)
