"""Hypothesis strategies for every frame of the protocol."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import strategies as st

from protocol import (
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
)
from protocol.e2e import EnvelopeKey, MessageBody, MessageKind, OpRef, SealedPayload
from protocol.limits import MAX_UINT, MAX_WAIT_SECONDS

uints = st.integers(min_value=0, max_value=MAX_UINT)
ids = st.integers(min_value=1, max_value=MAX_UINT)
small_ids = st.integers(min_value=1, max_value=70_000)
convs = st.binary(min_size=8, max_size=8)
keys = st.binary(min_size=32, max_size=32)
sigs = st.binary(min_size=64, max_size=64)
hashes = st.binary(min_size=32, max_size=32)
payloads = st.binary(max_size=300)
phones = st.from_regex(r"\+[0-9]{8,15}", fullmatch=True)
texts = st.text(max_size=60)

members = st.builds(Member, small_ids, st.sampled_from(Role))


def _unique_members(min_size: int = 1) -> st.SearchStrategy[tuple[Member, ...]]:
    return st.lists(members, min_size=min_size, max_size=6,
                    unique_by=lambda m: m.user_id).map(tuple)


creates = _unique_members().filter(lambda ms: any(m.role is Role.ADMIN for m in ms)).flatmap(
    lambda ms: st.builds(CreateConversation, st.just(ms), st.booleans()))
adds = st.builds(AddMembers, _unique_members())
removes = st.builds(RemoveMembers, st.lists(small_ids, min_size=1, max_size=6, unique=True)
                    .map(tuple))

content_ops = st.builds(ContentOp, st.sampled_from([OpType.ANNOUNCE, OpType.CHAT, OpType.BULK]),
                        ids, payloads, sigs)
membership_ops = st.one_of(
    st.builds(MembershipOp, ids, st.none(), creates, sigs),
    st.builds(MembershipOp, ids, hashes, st.one_of(adds, removes), sigs),
)


def envelope_ops(pulled: bool) -> st.SearchStrategy[EnvelopeOp]:
    to_device = st.none() if pulled else ids
    return st.builds(EnvelopeOp, ids, to_device, payloads, sigs)


def push_ops() -> st.SearchStrategy[object]:
    return st.one_of(content_ops, membership_ops, envelope_ops(pulled=False))


@st.composite
def push_requests(draw: st.DrawFn) -> SyncRequest:
    blocks = []
    op_id = draw(st.integers(min_value=0, max_value=1000))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        ops: list[Any] = []
        for _ in range(draw(st.integers(min_value=1, max_value=4))):
            op_id += draw(st.integers(min_value=1, max_value=500))
            op = draw(push_ops())
            ops.append(_with_op_id(op, op_id))
        blocks.append(PushBlock(draw(convs), tuple(ops)))
    count = sum(len(b.ops) for b in blocks)
    budget = draw(st.one_of(st.none(), st.integers(min_value=128 + 9 * count, max_value=MAX_UINT)))
    return SyncRequest(tuple(blocks), draw(cursors), budget,
                       draw(st.integers(min_value=0, max_value=MAX_WAIT_SECONDS)))


def _with_op_id(op: object, op_id: int) -> object:
    return dataclasses.replace(op, op_id=op_id)  # type: ignore[type-var]


cursors = st.one_of(
    st.builds(Cursor.at, uints),
    st.tuples(uints, uints, uints, uints).map(Cursor),
)


@st.composite
def pull_blocks(draw: st.DrawFn) -> PullBlock:
    seq = draw(st.integers(min_value=0, max_value=10**7))
    ops = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        seq += draw(st.integers(min_value=1, max_value=10**6))
        op = draw(st.one_of(content_ops, membership_ops, envelope_ops(pulled=True),
                            st.builds(UnknownOp, st.integers(min_value=5, max_value=200),
                                      st.lists(st.one_of(uints, payloads, texts), max_size=3)
                                      .map(tuple))))
        device = 0 if isinstance(op, UnknownOp) else draw(small_ids)
        ops.append(PulledOp(seq, device, op))
    return PullBlock(draw(convs), tuple(ops))


sync_responses = st.builds(
    SyncResponse,
    cursors,
    st.lists(ids, max_size=5).map(tuple),
    st.lists(pull_blocks(), max_size=3).map(tuple),
    st.booleans(),
)

error_frames = st.builds(
    ErrorFrame,
    st.sampled_from(ErrorCode).map(int),
    st.text(max_size=50),  # 200 bytes of UTF-8 at most
    st.one_of(st.none(), uints),
    st.lists(st.integers(min_value=1, max_value=9), max_size=3).map(tuple),
    st.one_of(st.none(), st.integers(min_value=0, max_value=255)),
)

device_entries = st.builds(DeviceEntry, ids, keys, keys, st.booleans())
user_entries = st.builds(UserEntry, ids, phones, st.lists(device_entries, max_size=3).map(tuple))

op_refs = st.builds(OpRef, ids, ids)


@st.composite
def message_bodies(draw: st.DrawFn) -> MessageBody:
    kind = draw(st.sampled_from(MessageKind))
    text = draw(texts) if kind is not MessageKind.DELETE else draw(st.one_of(st.none(), texts))
    target = draw(op_refs) if kind is not MessageKind.TEXT else draw(st.one_of(st.none(), op_refs))
    return MessageBody(kind, text, draw(st.one_of(st.none(), op_refs)), target,
                       draw(st.one_of(st.none(), uints)), draw(st.binary(max_size=16)))


FRAMES: dict[type, st.SearchStrategy[object]] = {
    RegisterRequest: st.builds(RegisterRequest, phones, st.text(min_size=1, max_size=16),
                               keys, keys, sigs),
    RegisterResponse: st.builds(RegisterResponse, ids, ids, keys),
    ChallengeRequest: st.builds(ChallengeRequest, ids),
    ChallengeResponse: st.builds(ChallengeResponse, st.binary(min_size=16, max_size=16)),
    SessionRequest: st.builds(SessionRequest, ids, st.binary(min_size=16, max_size=16), sigs),
    SessionResponse: st.builds(SessionResponse, ids, uints, st.binary(min_size=80, max_size=80),
                               sigs),
    AuthedRequest: st.builds(AuthedRequest, ids, ids, payloads,
                             st.binary(min_size=16, max_size=16)),
    AuthedResponse: st.builds(AuthedResponse, payloads, st.binary(min_size=16, max_size=16)),
    ErrorFrame: error_frames,
    SyncRequest: push_requests(),
    SyncResponse: sync_responses,
    DirectoryRequest: st.builds(
        DirectoryRequest, st.lists(phones, min_size=1, max_size=3).map(tuple),
        st.lists(ids, max_size=3).map(tuple), st.lists(ids, max_size=3).map(tuple),
    ),
    DirectoryResponse: st.builds(DirectoryResponse, st.lists(user_entries, max_size=3).map(tuple)),
    ChainRequest: st.builds(ChainRequest, convs, uints,
                            st.one_of(st.none(), st.integers(min_value=128, max_value=MAX_UINT))),
    ChainResponse: st.builds(ChainResponse, st.one_of(st.none(), pull_blocks()), st.booleans()),
    SealedPayload: st.builds(SealedPayload, uints, st.binary(min_size=16, max_size=200)),
    EnvelopeKey: st.builds(EnvelopeKey, uints, keys),
    MessageBody: message_bodies(),
}
