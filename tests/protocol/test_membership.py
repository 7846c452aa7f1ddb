"""Roster rules: the chain, admins, broadcast, leaving."""

from __future__ import annotations

import pytest

from protocol import (
    AddMembers,
    CreateConversation,
    ErrorCode,
    Member,
    ProtocolError,
    RemoveMembers,
    Role,
    Roster,
)

H1, H2, H3 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
ADMIN, ALICE, BOB, CAROL = 1, 2, 3, 4


def created(broadcast: bool = False) -> Roster:
    change = CreateConversation((Member(ADMIN, Role.ADMIN), Member(ALICE)), broadcast)
    return Roster().apply(change, author=ADMIN, prev=None, new_head=H1)


def code_of(call: object) -> ErrorCode:
    with pytest.raises(ProtocolError) as refused:
        call()  # type: ignore[operator]
    return refused.value.code


def test_create_then_add_then_remove_follows_the_chain() -> None:
    roster = created()
    assert roster.head == H1 and roster.is_admin(ADMIN) and roster.role_of(ALICE) is Role.MEMBER
    roster = roster.apply(AddMembers((Member(BOB),)), author=ADMIN, prev=H1, new_head=H2)
    assert roster.role_of(BOB) is Role.MEMBER and roster.head == H2
    roster = roster.apply(RemoveMembers((ALICE,)), author=ADMIN, prev=H2, new_head=H3)
    assert roster.role_of(ALICE) is None


def test_a_change_on_a_stale_head_is_a_roster_conflict() -> None:
    roster = created().apply(AddMembers((Member(BOB),)), author=ADMIN, prev=H1, new_head=H2)
    assert code_of(lambda: roster.apply(AddMembers((Member(CAROL),)), author=ADMIN, prev=H1,
                                        new_head=H3)) is ErrorCode.ROSTER_CONFLICT


def test_only_admins_add_or_remove_others() -> None:
    roster = created()
    assert code_of(lambda: roster.apply(AddMembers((Member(BOB),)), author=ALICE, prev=H1,
                                        new_head=H2)) is ErrorCode.FORBIDDEN
    assert code_of(lambda: roster.apply(RemoveMembers((ADMIN,)), author=ALICE, prev=H1,
                                        new_head=H2)) is ErrorCode.FORBIDDEN
    assert code_of(lambda: roster.apply(AddMembers((Member(BOB),)), author=CAROL, prev=H1,
                                        new_head=H2)) is ErrorCode.FORBIDDEN


def test_a_member_may_leave() -> None:
    roster = created().apply(RemoveMembers((ALICE,)), author=ALICE, prev=H1, new_head=H2)
    assert roster.role_of(ALICE) is None


def test_the_last_admin_cannot_leave_members_behind() -> None:
    roster = created()
    assert code_of(lambda: roster.apply(RemoveMembers((ADMIN,)), author=ADMIN, prev=H1,
                                        new_head=H2)) is ErrorCode.FORBIDDEN


def test_creator_must_be_an_admin_and_create_happens_once() -> None:
    change = CreateConversation((Member(ADMIN, Role.ADMIN),))
    assert code_of(lambda: Roster().apply(change, author=ALICE, prev=None,
                                          new_head=H1)) is ErrorCode.FORBIDDEN
    assert code_of(lambda: created().apply(change, author=ADMIN, prev=None,
                                           new_head=H2)) is ErrorCode.CONVERSATION_EXISTS


def test_changes_to_a_missing_conversation_are_not_found() -> None:
    assert code_of(lambda: Roster().apply(AddMembers((Member(BOB),)), author=ADMIN, prev=H1,
                                          new_head=H2)) is ErrorCode.NOT_FOUND


def test_posting_rules() -> None:
    chat = created()
    assert chat.may_post(ALICE) and chat.may_post(ADMIN)
    assert not chat.may_post(ALICE, announce=True) and chat.may_post(ADMIN, announce=True)
    assert not chat.may_post(CAROL)
    broadcast = created(broadcast=True)
    assert broadcast.may_post(ADMIN) and not broadcast.may_post(ALICE)


def test_changes_validate_their_members() -> None:
    assert code_of(lambda: CreateConversation((Member(ALICE),))) is ErrorCode.BAD_FRAME
    assert code_of(lambda: AddMembers((Member(BOB), Member(BOB)))) is ErrorCode.BAD_FRAME
    assert code_of(lambda: RemoveMembers(())) is ErrorCode.BAD_FRAME
