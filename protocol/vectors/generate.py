"""Build the test vectors in this folder: ``python protocol/vectors/generate.py``.

Every vector is built here from fixed inputs: fixed Ed25519 seeds (Ed25519
signatures are deterministic, so the signatures in the vectors are real and
verifiable), a fixed session secret (so the tags are real), and fixed opaque
bytes where the spec has randomness (HPKE output, ciphertext). The tests
rebuild the same frames and check them against the files both ways, so this
script and the files cannot drift apart unnoticed.

Output:
    valid.json     frames with their exact bytes, diagnostic notation and fields
    invalid.json   inputs every decoder must refuse, each with its error code
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from protocol import (  # noqa: E402
    AddMembers,
    AuthedRequest,
    AuthedResponse,
    ChainRequest,
    ChainResponse,
    ChallengeRequest,
    ChallengeResponse,
    ContentOp,
    CreateConversation,
    Cursor,
    DeviceEntry,
    DirectoryRequest,
    DirectoryResponse,
    EnvelopeOp,
    ErrorCode,
    ErrorFrame,
    Member,
    MembershipOp,
    OpType,
    PullBlock,
    PulledOp,
    PushBlock,
    RegisterRequest,
    RegisterResponse,
    RemoveMembers,
    Role,
    SessionRequest,
    SessionResponse,
    SyncRequest,
    SyncResponse,
    UnknownOp,
    UserEntry,
    derive_session_keys,
    encode,
    hkdf_sha256,
    loads,
    op_signing_input,
    register_signing_input,
    request_tag,
    response_tag,
    roster_hash,
    session_grant_signing_input,
    session_signing_input,
)
from protocol.e2e import (  # noqa: E402
    EnvelopeKey,
    MessageBody,
    MessageKind,
    OpRef,
    SealedPayload,
    message_key_info,
    payload_aad,
    payload_nonce,
)
from protocol.forms import (  # noqa: E402
    FieldType,
    FormClose,
    FormCreate,
    FormKind,
    FormResponse,
    JobStatus,
    JobUpdate,
    SurveyField,
)
from protocol.ops import Op  # noqa: E402

# ---------------------------------------------------------------- fixed inputs

SEEDS = {
    "server": bytes(range(0x00, 0x20)),
    "device_301": bytes(range(0x20, 0x40)),  # Amina's phone, user 41
    "device_302": bytes(range(0x40, 0x60)),  # Brian's phone, user 42
}
HPKE_SEEDS = {
    "device_301": bytes(range(0x60, 0x80)),
    "device_302": bytes(range(0x80, 0xA0)),
}
SESSION_SECRET = bytes(range(0xA0, 0xC0))
SESSION_ID = 4242
CONV = bytes.fromhex("7f3a9c0e51d2b864")
CONV_2 = bytes.fromhex("0c11f00d5eed0001")
CHALLENGE = bytes.fromhex("5c1a7e0f9b2d4c6e8a0b1c2d3e4f5061")
HIGH_WATER = 1_000_000
EXPIRES = 1_767_225_600
EPOCH = 3

# HPKE seals with a fresh ephemeral key each time, so these two were made once
# (with cryptography's hpke module) and are kept here; the tests open them with
# the X25519 seeds above, which checks the spec's 'info' bytes end to end.
# The epoch key EPOCH_KEY sealed by device 301 to device 302 in CONV, epoch 3:
SEALED_ENVELOPE = bytes.fromhex(
    "c614bc23f4fffdc911d3dc988052a902f39f630623b365aff7ce81327510ab172b6e46c66c189e3e"
    "63a69c07a7dde6e18f70a5103847e203d486ae9c54601f4b2a228a777578c07ba683e28f5184e7ef"
    "8928dbfd")
# SESSION_SECRET sealed to device 301 for session SESSION_ID, expiring at EXPIRES:
SEALED_SESSION = bytes.fromhex(
    "3041ffdf79572278c050294c95f98a4955da2fcc05a78339379f3a041a043b51bbb4b79f54f41482"
    "51f979a0e0b5fa82d0db0d9eecc6a27b19fc2fa3e4d597fd326099de4a97c25955c4af75b69269ab")


def signing_key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(SEEDS[name])


def public(name: str) -> bytes:
    return signing_key(name).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def hpke_public(name: str) -> bytes:
    key = X25519PrivateKey.from_private_bytes(HPKE_SEEDS[name])
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def opaque(label: str, size: int) -> bytes:
    """Fixed stand-in bytes for ciphertext: SHA-256 of the label, stretched."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return out[:size]


def sign_op(conv: bytes, device: int, build: Callable[[bytes], Op]) -> Op:
    """Build an op with a placeholder signature, then sign its signing input."""
    unsigned = build(bytes(64))
    signature = signing_key(f"device_{device}").sign(op_signing_input(conv, device, unsigned))
    return build(signature)


def chat_op(conv: bytes, device: int, op_id: int, payload: bytes,
            op_type: OpType = OpType.CHAT) -> ContentOp:
    op = sign_op(conv, device, lambda sig: ContentOp(op_type, op_id, payload, sig))
    assert isinstance(op, ContentOp)
    return op


def create_op() -> MembershipOp:
    change = CreateConversation((Member(41, Role.ADMIN), Member(42, Role.MEMBER)))
    op = sign_op(CONV, 301, lambda sig: MembershipOp(1, None, change, sig))
    assert isinstance(op, MembershipOp)
    return op


def add_op(prev: bytes) -> MembershipOp:
    change = AddMembers((Member(43, Role.MEMBER),))
    op = sign_op(CONV, 301, lambda sig: MembershipOp(3, prev, change, sig))
    assert isinstance(op, MembershipOp)
    return op


def remove_op(prev: bytes) -> MembershipOp:
    change = RemoveMembers((43,))
    op = sign_op(CONV, 301, lambda sig: MembershipOp(4, prev, change, sig))
    assert isinstance(op, MembershipOp)
    return op


def epoch_key() -> bytes:
    return opaque("epoch key", 32)


def real_payload(conv: bytes, device: int, op_type: OpType, op_id: int,
                 body: MessageBody) -> bytes:
    """A content payload really encrypted as SPEC.md section 10 says."""
    key = hkdf_sha256(epoch_key(), salt=conv, info=message_key_info(conv, EPOCH, device))
    ciphertext = ChaCha20Poly1305(key).encrypt(
        payload_nonce(op_id), body.to_bytes(), payload_aad(conv, EPOCH, device, int(op_type),
                                                           op_id))
    return SealedPayload(EPOCH, ciphertext).to_bytes()


def envelope_op(to_device: int | None, op_id: int = 2) -> EnvelopeOp:
    sealed = SEALED_ENVELOPE
    signed = sign_op(CONV, 301, lambda sig: EnvelopeOp(op_id, 302, sealed, sig))
    assert isinstance(signed, EnvelopeOp)
    return dataclasses.replace(signed, to_device=to_device)


def authed_request(path: str, counter: int, body: bytes) -> AuthedRequest:
    keys = derive_session_keys(SESSION_SECRET)
    tag = request_tag(keys.request_key, path=path, session_id=SESSION_ID, counter=counter,
                      body=body)
    return AuthedRequest(SESSION_ID, counter, body, tag)


def authed_response(path: str, counter: int, body: bytes) -> AuthedResponse:
    keys = derive_session_keys(SESSION_SECRET)
    tag = response_tag(keys.response_key, path=path, session_id=SESSION_ID, counter=counter,
                       body=body)
    return AuthedResponse(body, tag)


# ---------------------------------------------------------------- the frames


def valid_frames() -> list[tuple[str, str, Any]]:
    """(name, CDDL rule, frame) for every vector in valid.json."""
    create = create_op()
    head_1 = roster_hash(CONV, 301, create)
    add = add_op(head_1)
    head_2 = roster_hash(CONV, 301, add)
    text_100 = opaque("chat ciphertext", 100)
    chat = chat_op(CONV, 301, 5, text_100)
    announce = chat_op(CONV, 301, 6, opaque("announcement", 60), OpType.ANNOUNCE)
    bulk = chat_op(CONV_2, 301, 78, opaque("bulk", 30), OpType.BULK)
    empty_sync = SyncRequest(cursor=Cursor.at(HIGH_WATER))
    empty_sync_body = encode(empty_sync)
    empty_reply = SyncResponse(cursor=Cursor.at(HIGH_WATER))
    grant_sealed = SEALED_SESSION
    expires = EXPIRES
    grant_sig = signing_key("server").sign(
        session_grant_signing_input(301, CHALLENGE, SESSION_ID, expires, grant_sealed))
    phone, code = "+254700000001", "7KQ2-M9XD"
    sign_key, hpke_key = public("device_301"), hpke_public("device_301")
    proof = signing_key("device_301").sign(
        register_signing_input(phone, code, sign_key, hpke_key))
    pull = SyncResponse(
        cursor=Cursor((HIGH_WATER, HIGH_WATER, 999_990, 999_990)),
        blocks=(
            PullBlock(CONV, (
                PulledOp(999_001, 301, create),
                PulledOp(999_003, 301, envelope_op(None)),
                PulledOp(999_950, 301, add),
            )),
            PullBlock(CONV, (PulledOp(999_960, 301, announce),)),
            PullBlock(CONV, (PulledOp(999_980, 301, chat),
                             PulledOp(999_990, 301, chat_op(CONV, 301, 7, text_100)))),
        ),
        more=True,
    )
    return [
        ("register-request", "register-request",
         RegisterRequest(phone, code, sign_key, hpke_key, proof)),
        ("register-response", "register-response", RegisterResponse(41, 301, public("server"))),
        ("challenge-request", "challenge-request", ChallengeRequest(301)),
        ("challenge-response", "challenge-response", ChallengeResponse(CHALLENGE)),
        ("session-request", "session-request", SessionRequest(
            301, CHALLENGE, signing_key("device_301").sign(session_signing_input(301, CHALLENGE)))),
        ("session-response", "session-response",
         SessionResponse(SESSION_ID, expires, grant_sealed, grant_sig)),
        ("sync-request-empty", "sync-request", empty_sync),
        ("sync-request-first", "sync-request", SyncRequest()),
        ("sync-request-budget-wait", "sync-request",
         SyncRequest(cursor=Cursor.at(HIGH_WATER), budget=2048, wait_seconds=25)),
        ("sync-request-lane-cursor", "sync-request",
         SyncRequest(cursor=Cursor((HIGH_WATER, HIGH_WATER, 999_990, 999_990)), budget=4096)),
        ("sync-request-push-chat", "sync-request",
         SyncRequest(push=(PushBlock(CONV, (chat,)),), cursor=Cursor.at(HIGH_WATER))),
        ("sync-request-push-create", "sync-request", SyncRequest(push=(
            PushBlock(CONV, (create, envelope_op(302))),))),
        ("sync-request-push-mixed", "sync-request", SyncRequest(
            push=(PushBlock(CONV, (add_op(head_1), remove_op(head_2), announce)),
                  PushBlock(CONV_2, (bulk,))),
            cursor=Cursor.at(HIGH_WATER), budget=8192)),
        ("authed-request-empty-sync", "authed-request",
         authed_request("/v1/sync", 17, empty_sync_body)),
        ("sync-response-empty", "sync-response", empty_reply),
        ("sync-response-acks", "sync-response",
         SyncResponse(cursor=Cursor.at(HIGH_WATER + 1), acks=(HIGH_WATER + 1,))),
        ("sync-response-pull", "sync-response", pull),
        ("sync-response-unknown-op", "sync-response", SyncResponse(
            cursor=Cursor.at(HIGH_WATER),
            blocks=(PullBlock(CONV, (PulledOp(HIGH_WATER, 0, UnknownOp(9, (b"future",))),)),))),
        ("authed-response-empty-sync", "authed-response",
         authed_response("/v1/sync", 17, encode(empty_reply))),
        ("directory-request", "directory-request",
         DirectoryRequest(phones=("+254700000002",), user_ids=(41,), device_ids=(302,))),
        ("directory-response", "directory-response", DirectoryResponse((
            UserEntry(42, "+254700000002", (
                DeviceEntry(302, public("device_302"), hpke_public("device_302")),
                DeviceEntry(290, public("server"), hpke_public("device_301"), revoked=True),
            )),
        ))),
        ("chain-request", "chain-request", ChainRequest(CONV, after=999_001, budget=4096)),
        ("chain-response", "chain-response", ChainResponse(
            PullBlock(CONV, (PulledOp(999_950, 301, add),)), more=True)),
        ("form-create-poll", "form-create", FormCreate(FormKind.POLL, "Training day?", (
            SurveyField("choice", FieldType.SINGLE, True, ("Monday", "Friday")),),
            deadline=1_767_225_600)),
        ("form-create-survey", "form-create", FormCreate(FormKind.SURVEY, "Weekly report", (
            SurveyField("visits", FieldType.NUMBER, True),
            SurveyField("weight", FieldType.NUMBER, scale=1),
            SurveyField("services", FieldType.MULTI, options=("vaccines", "malaria")),
            SurveyField("where", FieldType.LOCATION)))),
        ("form-create-job", "form-create", FormCreate(FormKind.JOB, "Repair the fridge",
                                                      assignees=(42,))),
        ("form-response", "form-response", FormResponse(
            OpRef(301, 9), {0: 12, 1: 655, 2: [0, 1], 3: [-12920000, 368219000]},
            (1_764_000_000_000, 0))),
        ("form-close", "form-close", FormClose(OpRef(301, 9))),
        ("job-update", "job-update", JobUpdate(OpRef(301, 10), JobStatus.IN_PROGRESS,
                                               (1_764_000_000_500, 1), "parts ordered")),
        ("error-bad-frame", "error", ErrorFrame(int(ErrorCode.BAD_FRAME), "op id must be >= 1")),
        ("error-unsupported-version", "error", ErrorFrame(
            int(ErrorCode.UNSUPPORTED_VERSION), "version 2 is not supported",
            supported_versions=(1,))),
        ("error-rate-limited", "error",
         ErrorFrame(int(ErrorCode.RATE_LIMITED), "slow down", retry_after=30)),
        ("error-op-conflict", "error", ErrorFrame(
            int(ErrorCode.OP_CONFLICT), "op id 5 was already used for a different op",
            op_index=0)),
        ("e2e-sealed-payload", "sealed-payload", SealedPayload.from_bytes(real_payload(
            CONV, 301, OpType.CHAT, 9, MessageBody(MessageKind.TEXT, "Clinic opens at 9")))),
        ("e2e-envelope-key", "envelope-key", EnvelopeKey(EPOCH, epoch_key())),
        ("e2e-message-text", "message", MessageBody(
            MessageKind.TEXT, "Clinic opens at 9 tomorrow", reply_to=OpRef(302, 12),
            sent_at=1_764_000_000)),
        ("e2e-message-edit", "message",
         MessageBody(MessageKind.EDIT, "Clinic opens at 10", target=OpRef(301, 5))),
        ("e2e-message-delete", "message",
         MessageBody(MessageKind.DELETE, target=OpRef(301, 5), padding=bytes(8))),
    ]




# ---------------------------------------------------------------- JSON forms


def diagnostic(value: Any) -> str:
    """CBOR diagnostic notation (RFC 8949 §8) of a decoded value."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return f"h'{value.hex()}'"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(diagnostic(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{diagnostic(k)}: {diagnostic(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no diagnostic form for {type(value).__name__}")


def fields(value: Any) -> Any:
    """The decoded fields of a frame as JSON: bytes as hex strings, ops tagged by class."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {"type": type(value).__name__}
        for field in dataclasses.fields(value):
            out[field.name] = fields(getattr(value, field.name))
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return "h'" + value.hex() + "'"
    if isinstance(value, tuple | list):
        return [fields(item) for item in value]
    if isinstance(value, dict):
        return {str(k): fields(v) for k, v in value.items()}
    return value


def invalid_inputs() -> list[dict[str, Any]]:
    """Inputs that must be refused, with the frame type tried and the expected code."""
    chat = chat_op(CONV, 301, 5, opaque("chat ciphertext", 100))
    sig = chat.signature.hex()
    conv = CONV.hex()
    push_op = "84" + "03" + "05" + "58" + "64" + opaque("chat ciphertext", 100).hex() + "5840" + sig

    def case(name: str, frame: str, code: ErrorCode, hex_: str | None = None,
             **extra: Any) -> dict[str, Any]:
        item: dict[str, Any] = {"name": name, "frame": frame, "error": code.name.lower()}
        if hex_ is not None:
            item["hex"] = hex_
        item.update(extra)
        return item

    many_ops_prefix = "a1" "01" "81" "99" "0102" "48" + conv
    many_ops_repeat = "84" "03" "01" "40" "5840" + "00" * 64
    return [
        case("empty", "sync-request", ErrorCode.MALFORMED, ""),
        case("truncated-map", "sync-request", ErrorCode.MALFORMED, "a2021a000f42"),
        case("truncated-bstr", "authed-request", ErrorCode.MALFORMED, "85011910921158210a0b"),
        case("trailing-bytes", "sync-request", ErrorCode.MALFORMED, "a1021a000f424000"),
        case("declared-bstr-2^32", "sync-request", ErrorCode.MALFORMED, "5b0000000100000000aa"),
        case("declared-array-2^32", "sync-request", ErrorCode.MALFORMED, "9b000000010000000001"),
        case("declared-map-2^32", "sync-request", ErrorCode.MALFORMED, "bb00000001000000000101"),
        case("indefinite-array", "sync-request", ErrorCode.MALFORMED, "9f01ff"),
        case("indefinite-map", "sync-request", ErrorCode.MALFORMED, "bf0201ff"),
        case("indefinite-bstr", "sync-request", ErrorCode.MALFORMED, "5f41aaff"),
        case("duplicate-keys", "sync-request", ErrorCode.MALFORMED, "a202010201"),
        case("unsorted-keys", "sync-request", ErrorCode.MALFORMED, "a203190800021a000f4240"),
        case("text-key", "sync-request", ErrorCode.MALFORMED, "a1616101"),
        case("non-shortest-int", "sync-request", ErrorCode.MALFORMED, "a1021800"),
        case("non-shortest-length", "challenge-response", ErrorCode.MALFORMED,
             "8201" "5810" + CHALLENGE.hex()),
        case("tag-datetime", "sync-request", ErrorCode.MALFORMED, "c11a5f5e1000"),
        case("tag-self-describe", "sync-request", ErrorCode.MALFORMED, "d9d9f7a0"),
        case("tag-bignum", "sync-request", ErrorCode.MALFORMED, "a102c24101"),
        case("float", "sync-request", ErrorCode.MALFORMED, "a102f93c00"),
        case("undefined", "sync-request", ErrorCode.MALFORMED, "a102f7"),
        case("simple-value", "sync-request", ErrorCode.MALFORMED, "a102f820"),
        case("reserved-info", "sync-request", ErrorCode.MALFORMED, "1c"),
        case("invalid-utf8", "challenge-request", ErrorCode.MALFORMED, "8201" "62c328"),
        case("deep-nesting", "sync-request", ErrorCode.LIMIT_EXCEEDED, "81" * 9 + "00"),
        case("oversize", "sync-request", ErrorCode.TOO_LARGE,
             prefix="5a00040000", repeat="00", count=262144),
        case("too-many-ops", "sync-request", ErrorCode.LIMIT_EXCEEDED,
             prefix=many_ops_prefix, repeat=many_ops_repeat, count=257),
        case("not-a-map", "sync-request", ErrorCode.BAD_FRAME, "80"),
        case("cursor-text", "sync-request", ErrorCode.BAD_FRAME, "a1026131"),
        case("cursor-negative", "sync-request", ErrorCode.BAD_FRAME, "a10220"),
        case("cursor-three-lanes", "sync-request", ErrorCode.BAD_FRAME, "a10283010203"),
        case("conv-id-7-bytes", "sync-request", ErrorCode.BAD_FRAME,
             "a101818247" + conv[:14] + push_op),
        case("op-id-zero", "sync-request", ErrorCode.BAD_FRAME,
             "a1018182" "48" + conv + push_op.replace("840305", "840300", 1)),
        case("signature-63-bytes", "sync-request", ErrorCode.BAD_FRAME,
             "a1018182" "48" + conv + push_op[: -128 - 4] + "583f" + sig[:126]),
        case("unknown-op-type-in-push", "sync-request", ErrorCode.BAD_FRAME,
             "a1018182" "48" + conv + push_op.replace("840305", "840905", 1)),
        case("op-ids-not-increasing", "sync-request", ErrorCode.BAD_FRAME,
             "a1018183" "48" + conv + push_op + push_op),
        case("budget-too-small", "sync-request", ErrorCode.BUDGET_TOO_SMALL, "a1031864"),
        case("wait-too-long", "sync-request", ErrorCode.BAD_FRAME, "a104190e10"),
        case("more-not-bool", "sync-response", ErrorCode.BAD_FRAME, "a2030004f6"),
        case("response-without-cursor", "sync-response", ErrorCode.BAD_FRAME, "a0"),
        case("pulled-gap-zero", "sync-response", ErrorCode.BAD_FRAME,
             "a20281824801020304050607088603001901" "2d05" "4100" "5840" + sig + "0300"),
        case("unknown-version", "authed-request", ErrorCode.UNSUPPORTED_VERSION,
             "850219109211" "4100" "50" + "00" * 16),
        case("version-zero", "register-response", ErrorCode.UNSUPPORTED_VERSION, "8400010240"),
        case("phone-too-long", "directory-request", ErrorCode.LIMIT_EXCEEDED,
             "a10181" "7821" "2b" + "31" * 32),
        case("phone-not-e164", "directory-request", ErrorCode.BAD_FRAME,
             "a101816a30373030303030303031"),
        case("tag-15-bytes", "authed-request", ErrorCode.BAD_FRAME,
             "850119109211" "4100" "4f" + "00" * 15),
        case("op-extra-element", "sync-request", ErrorCode.BAD_FRAME,
             "a1018182" "48" + conv + "85" + push_op[2:] + "00"),
        case("member-extra-element", "sync-request", ErrorCode.BAD_FRAME,
             "a1018182" "48" + conv + "8500" "01" "f6" "8300" "00" "8183010100" "5840" + sig),
        case("directory-empty-list", "directory-request", ErrorCode.BAD_FRAME, "a10180"),
        case("session-sealed-79-bytes", "session-response", ErrorCode.BAD_FRAME,
             "8501191092" "1a69557f00" "584f" + "00" * 79 + "5840" + sig),
        case("create-with-prev", "sync-request", ErrorCode.BAD_FRAME,
             "a1018182" "48" + conv + "8500" "01" "5820" + "00" * 32
             + "8300" "00" "81820101" "5840" + sig),
    ]


def main() -> None:
    valid = []
    for name, rule, frame in valid_frames():
        data = encode(frame)
        valid.append({
            "name": name,
            "rule": rule,
            "type": type(frame).__name__,
            "hex": data.hex(),
            "size": len(data),
            "diagnostic": diagnostic(loads(data)),
            "fields": fields(frame),
        })
    keys = {
        "session_id": SESSION_ID,
        "session_secret": SESSION_SECRET.hex(),
        "ed25519_seeds": {name: seed.hex() for name, seed in SEEDS.items()},
        "x25519_seeds": {name: seed.hex() for name, seed in HPKE_SEEDS.items()},
    }
    document = {
        "protocol_version": 1,
        "about": "syncd protocol v1 test vectors; see protocol/SPEC.md, 'Test vectors'",
        "keys": keys,
        "vectors": valid,
    }
    (HERE / "valid.json").write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    negative: dict[str, Any] = {
        "protocol_version": 1,
        "about": ("inputs a decoder must refuse; 'hex' is the input, or prefix + repeat * count;"
                  " 'frame' is what it is decoded as"),
        "vectors": invalid_inputs(),
    }
    (HERE / "invalid.json").write_text(json.dumps(negative, indent=1) + "\n")
    print(f"wrote {len(valid)} valid and {len(negative['vectors'])} invalid vectors")


if __name__ == "__main__":
    main()
