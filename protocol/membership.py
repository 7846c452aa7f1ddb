"""Conversation membership: the changes admins sign, and the roster they build.

Theory of operation (SPEC.md, "Conversations"): a conversation's membership
is a chain of membership ops. The first creates the conversation and names its
first members; each later op names, in ``prev``, the roster hash left by the
op before it, and is signed by a device of a user who is an admin in the
roster that op applies to. The roster hash is SHA-256 of the op's signing
input, so neither the server nor anyone else can insert, drop or reorder a
change without breaking the chain. Server and clients apply the same rules
(``Roster.apply``), so they agree on who is a member, and the server can
refuse a change before it stores it.

The one change a non-admin may make is removing themselves (leaving).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Any

from . import _schema as s
from .errors import ErrorCode, ProtocolError
from .limits import MAX_MEMBERS_PER_CHANGE

__all__ = [
    "AddMembers",
    "Change",
    "CreateConversation",
    "Member",
    "RemoveMembers",
    "Role",
    "Roster",
    "change_from_value",
    "may_post",
]

FLAG_BROADCAST = 1
"""Bit 0 of a create's flags: only admins may post content."""


class Role(IntEnum):
    MEMBER = 0
    ADMIN = 1


class ChangeKind(IntEnum):
    CREATE = 0
    ADD = 1
    REMOVE = 2


@dataclass(frozen=True, slots=True)
class Member:
    """A user and the role they hold in one conversation."""

    user_id: int
    role: Role = Role.MEMBER

    def __post_init__(self) -> None:
        s.uint(self.user_id, "member user id", minimum=1)
        if not isinstance(self.role, Role):
            raise s.bad("member role must be 0 (member) or 1 (admin)")

    def to_value(self) -> list[Any]:
        return [self.user_id, int(self.role)]

    @classmethod
    def from_value(cls, value: Any) -> Member:
        fields = s.array(value, "member", min_len=2)
        if len(fields) != 2:
            raise s.bad("a member is [user id, role]")
        role = s.uint(fields[1], "member role", maximum=max(Role))
        return cls(s.uint(fields[0], "member user id", minimum=1), Role(role))


def _unique_members(members: tuple[Member, ...], what: str) -> None:
    s.items(list(members), what, max_count=MAX_MEMBERS_PER_CHANGE, min_count=1)
    if len({member.user_id for member in members}) != len(members):
        raise s.bad(f"{what} names a user twice")


@dataclass(frozen=True, slots=True)
class CreateConversation:
    """The first op of a conversation: its kind and its first members."""

    members: tuple[Member, ...]
    broadcast: bool = False

    def __post_init__(self) -> None:
        _unique_members(self.members, "create members")
        if not any(member.role is Role.ADMIN for member in self.members):
            raise s.bad("a conversation needs at least one admin")

    def to_value(self) -> list[Any]:
        flags = FLAG_BROADCAST if self.broadcast else 0
        return [int(ChangeKind.CREATE), flags, [m.to_value() for m in self.members]]


@dataclass(frozen=True, slots=True)
class AddMembers:
    """Add users, or change the role of users already in."""

    members: tuple[Member, ...]

    def __post_init__(self) -> None:
        _unique_members(self.members, "added members")

    def to_value(self) -> list[Any]:
        return [int(ChangeKind.ADD), [m.to_value() for m in self.members]]


@dataclass(frozen=True, slots=True)
class RemoveMembers:
    """Remove users (a member may remove only themselves)."""

    user_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        s.items(list(self.user_ids), "removed users", max_count=MAX_MEMBERS_PER_CHANGE, min_count=1)
        for user_id in self.user_ids:
            s.uint(user_id, "removed user id", minimum=1)
        if len(set(self.user_ids)) != len(self.user_ids):
            raise s.bad("removed users name a user twice")

    def to_value(self) -> list[Any]:
        return [int(ChangeKind.REMOVE), list(self.user_ids)]


Change = CreateConversation | AddMembers | RemoveMembers


def _members(value: Any, what: str) -> tuple[Member, ...]:
    raw = s.items(value, what, max_count=MAX_MEMBERS_PER_CHANGE, min_count=1)
    return tuple(Member.from_value(item) for item in raw)


def change_from_value(value: Any) -> Change:
    fields = s.array(value, "membership change", min_len=2)
    kind = s.uint(fields[0], "membership change kind")
    if len(fields) != (3 if kind == ChangeKind.CREATE else 2):
        raise s.bad("a membership change has a fixed number of fields")
    if kind == ChangeKind.CREATE:
        flags = s.uint(fields[1], "create flags")
        if flags & ~FLAG_BROADCAST:
            raise s.bad("unknown create flags")
        return CreateConversation(_members(fields[2], "create members"), bool(flags))
    if kind == ChangeKind.ADD:
        return AddMembers(_members(fields[1], "added members"))
    if kind == ChangeKind.REMOVE:
        raw = s.items(fields[1], "removed users", max_count=MAX_MEMBERS_PER_CHANGE, min_count=1)
        return RemoveMembers(tuple(s.uint(u, "removed user id", minimum=1) for u in raw))
    raise s.bad(f"unknown membership change kind {kind}")


def may_post(role: Role | None, *, broadcast: bool, announce: bool) -> bool:
    """The posting rule, for server and clients alike: members post; in a broadcast
    conversation, and for announcements, only admins do."""
    if role is None:
        return False
    return role is Role.ADMIN or not (broadcast or announce)


def _forbidden(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.FORBIDDEN, message)


@dataclass(frozen=True, slots=True)
class Roster:
    """Who is in a conversation, with which role, and the hash at the chain's head."""

    members: Mapping[int, Role] = field(default_factory=lambda: MappingProxyType({}))
    broadcast: bool = False
    head: bytes | None = None

    def role_of(self, user_id: int) -> Role | None:
        return self.members.get(user_id)

    def is_admin(self, user_id: int) -> bool:
        return self.members.get(user_id) is Role.ADMIN

    def may_post(self, user_id: int, *, announce: bool = False) -> bool:
        """May this user post content (announcements are for admins only)?"""
        return may_post(self.members.get(user_id), broadcast=self.broadcast, announce=announce)

    def apply(self, change: Change, *, author: int, prev: bytes | None, new_head: bytes) -> Roster:
        """The roster after ``author`` applies ``change`` whose ``prev`` is given.

        ``new_head`` is the roster hash of the op carrying the change. Raises
        ``roster_conflict`` when ``prev`` is not this roster's head and
        ``forbidden`` when the author may not make the change. The signature
        of the op is the caller's to check (it needs a crypto library).
        """
        if isinstance(change, CreateConversation):
            if self.head is not None:
                raise ProtocolError(ErrorCode.CONVERSATION_EXISTS, "conversation already exists")
            if prev is not None:
                raise s.bad("a create has no prev")
            if not any(m.user_id == author and m.role is Role.ADMIN for m in change.members):
                raise _forbidden("the creator must be an admin of the new conversation")
            members = {m.user_id: m.role for m in change.members}
            return Roster(MappingProxyType(members), change.broadcast, new_head)
        if self.head is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, "no such conversation")
        if prev != self.head:
            raise ProtocolError(ErrorCode.ROSTER_CONFLICT, "prev is not the roster head")
        updated = dict(self.members)
        if isinstance(change, AddMembers):
            if not self.is_admin(author):
                raise _forbidden("only admins add members or change roles")
            for member in change.members:
                updated[member.user_id] = member.role
        else:
            leaving_alone = change.user_ids == (author,) and author in self.members
            if not (self.is_admin(author) or leaving_alone):
                raise _forbidden("only admins remove other members")
            for user_id in change.user_ids:
                if user_id not in updated:
                    raise s.bad(f"user {user_id} is not a member")
                del updated[user_id]
        if updated and not any(role is Role.ADMIN for role in updated.values()):
            raise _forbidden("a conversation with members must keep an admin")
        return Roster(MappingProxyType(updated), self.broadcast, new_head)
