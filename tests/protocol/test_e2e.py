"""Payload formats inside the encryption, exercised with the spec's real constructions."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from protocol import OpType, ProtocolError, hkdf_sha256
from protocol.e2e import (
    EnvelopeKey,
    MessageBody,
    MessageKind,
    OpRef,
    SealedPayload,
    envelope_info,
    message_key_info,
    payload_aad,
    payload_nonce,
)

CONV = bytes.fromhex("7f3a9c0e51d2b864")
EPOCH_KEY = bytes(range(32))


def message_key(conv: bytes, epoch: int, device: int) -> bytes:
    return hkdf_sha256(EPOCH_KEY, salt=conv, info=message_key_info(conv, epoch, device))


def seal(conv: bytes, epoch: int, device: int, op_type: int, op_id: int,
         body: MessageBody) -> bytes:
    aead = ChaCha20Poly1305(message_key(conv, epoch, device))
    ciphertext = aead.encrypt(payload_nonce(op_id), body.to_bytes(),
                              payload_aad(conv, epoch, device, op_type, op_id))
    return SealedPayload(epoch, ciphertext).to_bytes()


def open_(conv: bytes, device: int, op_type: int, op_id: int, payload: bytes) -> MessageBody:
    sealed = SealedPayload.from_bytes(payload)
    aead = ChaCha20Poly1305(message_key(conv, sealed.epoch, device))
    plain = aead.decrypt(payload_nonce(op_id), sealed.ciphertext,
                         payload_aad(conv, sealed.epoch, device, op_type, op_id))
    return MessageBody.from_bytes(plain)


def test_a_message_round_trips_through_the_spec_construction() -> None:
    body = MessageBody(MessageKind.TEXT, "Clinic opens at 9", reply_to=OpRef(302, 4))
    payload = seal(CONV, 3, 301, OpType.CHAT, 5, body)
    assert open_(CONV, 301, OpType.CHAT, 5, payload) == body
    # Framing inside the op payload: [epoch, ciphertext] costs 4 bytes on top of the AEAD tag.
    assert len(payload) == len(body.to_bytes()) + 16 + 4


@pytest.mark.parametrize(
    ("conv", "device", "op_type", "op_id"),
    [
        (bytes(8), 301, OpType.CHAT, 5),  # replayed into another conversation
        (CONV, 302, OpType.CHAT, 5),  # attributed to another sender
        (CONV, 301, OpType.ANNOUNCE, 5),  # moved to another lane
        (CONV, 301, OpType.CHAT, 6),  # replayed under another op id
    ],
)
def test_ciphertext_cannot_be_moved(conv: bytes, device: int, op_type: int, op_id: int) -> None:
    payload = seal(CONV, 3, 301, OpType.CHAT, 5, MessageBody(MessageKind.TEXT, "hi"))
    with pytest.raises(InvalidTag):
        open_(conv, device, op_type, op_id, payload)


def test_senders_in_one_epoch_never_share_a_key_and_nonce() -> None:
    assert message_key(CONV, 3, 301) != message_key(CONV, 3, 302)
    assert message_key(CONV, 3, 301) != message_key(CONV, 4, 301)
    assert payload_nonce(5) != payload_nonce(6) and len(payload_nonce(2**63 - 1)) == 12


def test_epoch_key_envelope_with_hpke() -> None:
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
    recipient = X25519PrivateKey.generate()
    plain = EnvelopeKey(3, EPOCH_KEY).to_bytes()
    sealed = suite.encrypt(plain, recipient.public_key(), info=envelope_info(CONV, 301, 302))
    assert len(sealed) == 32 + len(plain) + 16
    assert EnvelopeKey.from_bytes(
        suite.decrypt(sealed, recipient, info=envelope_info(CONV, 301, 302))) == EnvelopeKey(
        3, EPOCH_KEY)
    with pytest.raises(InvalidTag):  # delivered to the wrong device, or claimed by another sender
        suite.decrypt(sealed, recipient, info=envelope_info(CONV, 301, 303))
    with pytest.raises(InvalidTag):
        suite.decrypt(sealed, recipient, info=envelope_info(CONV, 300, 302))


def test_message_rules() -> None:
    with pytest.raises(ProtocolError):
        MessageBody(MessageKind.EDIT, "new")  # no target
    with pytest.raises(ProtocolError):
        MessageBody(MessageKind.TEXT)  # no text
    with pytest.raises(ProtocolError):
        MessageBody.from_bytes(bytes.fromhex("a10009"))  # unknown kind
    with pytest.raises(ProtocolError):
        SealedPayload(1, b"short")
