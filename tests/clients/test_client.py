"""The reference client against a real server: convergence, removal, offline sending."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from clients.reference.client import Client, ClientError
from tests.support.server import ServerProcess


def texts(client: Client, conv: bytes) -> list[str | None]:
    return [m["text"] for m in client.messages(conv)]


def settle(*clients: Client, rounds: int = 3) -> None:
    for _ in range(rounds):
        for client in clients:
            client.sync(timeout=30)


def test_three_users_one_with_two_devices_converge(server: ServerProcess,
                                                   make_client: Callable[..., Client],
                                                   tmp_path: Path) -> None:
    amina = make_client("+254733100001")
    amina_tablet = make_client("+254733100001")  # a second device of the same user
    brian, chris = make_client("+254733100002"), make_client("+254733100003")
    assert amina.user_id == amina_tablet.user_id and amina.device_id != amina_tablet.device_id
    conv = amina.create_group("Clinic staff", [brian.phone, chris.phone])
    amina.sync()
    for client in (amina_tablet, brian, chris):
        client.sync()
    # Everyone writes while offline, then syncs in some order.
    amina.send(conv, "amina 1")
    brian.send(conv, "brian 1")
    amina_tablet.send(conv, "amina's tablet 1")
    chris.send(conv, "chris 1")
    brian.send(conv, "brian 2")
    assert texts(brian, conv)[-2:] == ["brian 1", "brian 2"]  # shown at once, pending
    assert all(m["pending"] for m in brian.messages(conv)[-2:])
    settle(chris, brian, amina_tablet, amina)
    views = [client.messages(conv) for client in (amina, amina_tablet, brian, chris)]
    assert all(view == views[0] for view in views)  # same messages, same order, same fields
    assert sorted(m["text"] for m in views[0]) == sorted(
        ["amina 1", "brian 1", "amina's tablet 1", "chris 1", "brian 2"])
    assert [m["seq"] for m in views[0]] == sorted(m["seq"] for m in views[0])
    assert not any(m["pending"] for m in views[0])
    assert len({m["id"] for m in views[0]}) == 5  # exactly once
    for client in (amina, amina_tablet, brian, chris):
        assert client.problems() == []
        assert client.groups()[0]["name"] == "Clinic staff"
    assert amina.fingerprint(brian.phone) == brian.fingerprint(amina.phone)


def test_removed_member_gets_and_decrypts_nothing_new(make_client: Callable[..., Client]) -> None:
    amina, brian, chris = make_client(), make_client(), make_client()
    conv = amina.create_group("Team", [brian.phone, chris.phone])
    amina.send(conv, "before the removal")
    settle(amina, brian, chris)
    amina.remove_member(conv, chris.phone)
    amina.send(conv, "after the removal")
    brian.send(conv, "brian after")
    settle(amina, brian, chris)
    assert texts(chris, conv) == ["before the removal"]
    for client in (amina, brian):
        assert texts(client, conv) == ["before the removal", "after the removal", "brian after"]
    chris_keys = chris.store.db.execute("SELECT max(epoch) FROM epoch_keys").fetchone()[0]
    amina_keys = amina.store.db.execute("SELECT max(epoch) FROM epoch_keys").fetchone()[0]
    assert amina_keys == chris_keys + 1  # a new epoch chris never received
    with pytest.raises(ClientError):
        chris.send(conv, "still here?")


def test_added_member_reads_from_joining_and_broadcast_rules(
        make_client: Callable[..., Client]) -> None:
    amina, brian, chris = make_client(), make_client(), make_client()
    conv = amina.create_group("News", [brian.phone], broadcast=True)
    amina.send(conv, "first announcement", announce=True)
    settle(amina, brian)
    amina.add_member(conv, chris.phone)
    amina.send(conv, "second announcement", announce=True)
    settle(amina, brian, chris)
    assert texts(chris, conv) == ["second announcement"]
    assert texts(brian, conv) == ["first announcement", "second announcement"]
    with pytest.raises(ClientError):
        brian.add_member(conv, chris.phone)  # not an admin


def test_send_needs_no_network(make_client: Callable[..., Client],
                               server: ServerProcess) -> None:
    amina, brian = make_client(), make_client()
    conv = amina.create_group("Team", [brian.phone])
    amina.sync()
    server.stop()
    amina.send(conv, "written while the server is down")
    assert amina.messages(conv)[-1]["pending"]
    assert amina.whoami()["pending_ops"] == 1


def test_a_member_added_later_gets_and_verifies_the_whole_chain(
        make_client: Callable[..., Client]) -> None:
    amina, brian, chris = make_client(), make_client(), make_client()
    team = amina.create_group("Team", [brian.phone])
    amina.send(team, "before chris joined")
    amina.sync()
    own = chris.create_group("Chris's own", [brian.phone])
    for n in range(5):
        chris.send(own, f"busy {n}")
    chris.sync()  # his cursor is now past the team's creation
    assert min(chris.store.cursor.lanes) > 1
    amina.add_member(team, chris.phone)
    amina.send(team, "welcome chris")
    amina.sync()
    chris.sync()
    assert chris.problems() == []
    assert texts(chris, team) == ["welcome chris"]  # nothing from before he joined
    members = next(g for g in chris.groups() if g["id"] == team.hex())["members"]
    assert {m["user_id"] for m in members} == {amina.user_id, brian.user_id, chris.user_id}


def test_a_new_device_gets_the_current_epoch_and_a_revoked_one_forces_a_new_one(
        server: ServerProcess, make_client: Callable[..., Client]) -> None:
    import asyncio

    from syncd import admin

    amina, brian = make_client(), make_client("+254733200002")
    conv = amina.create_group("Team", [brian.phone])
    amina.send(conv, "history the tablet will not get")
    settle(amina, brian)
    tablet = make_client("+254733200002")  # brian's new device
    assert amina.refresh_keys() == {"devices_keyed": 1, "epochs_started": 0}
    amina.send(conv, "for every device")
    settle(amina, brian, tablet)
    assert texts(tablet, conv) == ["for every device"]
    assert tablet.problems() == []
    asyncio.run(admin.revoke(server.database, tablet.device_id))
    epoch_before = amina._current_key(conv)[0]
    assert amina.refresh_keys() == {"devices_keyed": 0, "epochs_started": 1}
    assert amina._current_key(conv)[0] == epoch_before + 1
    amina.send(conv, "after the revocation")
    settle(amina, brian)
    assert texts(brian, conv)[-1] == "after the revocation"
    addressed = {row[0] for row in amina.store.db.execute(
        "SELECT device_id FROM key_holders WHERE conv = ? AND epoch = ?",
        (conv, epoch_before + 1))}
    assert tablet.device_id not in addressed and brian.device_id in addressed


def test_content_that_arrives_before_its_key_is_kept_until_the_key_comes(
        make_client: Callable[..., Client]) -> None:
    amina, brian = make_client(), make_client("+254733300002")
    conv = amina.create_group("Team", [brian.phone])
    settle(amina, brian)
    tablet = make_client("+254733300002")
    amina.send(conv, "sent before anyone keyed the tablet")
    amina.sync(refresh_every=10**9)
    tablet.sync(refresh_every=10**9)  # gets the message, not yet its key
    assert tablet.groups() and texts(tablet, conv) == []
    amina.refresh_keys()
    amina.sync(refresh_every=10**9)
    tablet.sync(refresh_every=10**9)
    assert texts(tablet, conv) == ["sent before anyone keyed the tablet"]
    assert tablet.problems() == []


def test_a_removal_that_loses_a_race_is_dropped_whole_and_nothing_breaks(
        make_client: Callable[..., Client]) -> None:
    amina, brian, chris, dan = make_client(), make_client(), make_client(), make_client()
    conv = amina.create_group("Team", [brian.phone, chris.phone, dan.phone])
    amina.sync()
    settle(amina, brian, chris, dan)
    # Make brian an admin too, then both remove someone at the same time.
    from protocol import AddMembers, Member, Role

    with amina.store.transaction() as db:
        (op_id,) = amina.store.next_op_ids(db, 1)
        roster = amina.store.current_roster(conv) or {}
        op = amina._membership(db, conv, op_id, AddMembers((Member(brian.user_id, Role.ADMIN),)),
                               {**roster, brian.user_id: Role.ADMIN})
        amina._queue(db, conv, [op])
    settle(amina, brian)
    amina.remove_member(conv, dan.phone)
    brian.remove_member(conv, chris.phone)
    amina.sync()
    brian.sync()  # loses: its removal and the envelopes of its new epoch go together
    assert any("another admin" in p["reason"] for p in brian.problems())
    assert brian.store.db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    brian.send(conv, "still readable by everyone left")
    settle(amina, brian, chris, dan)
    for client in (amina, chris):
        assert texts(client, conv)[-1] == "still readable by everyone left"
    assert "still readable by everyone left" not in texts(dan, conv)
