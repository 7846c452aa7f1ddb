"""A server that lies: its database edited under the clients. Every lie is refused and
reported, never shown as a valid message; and the words sent are never in its files."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable

import pytest

from clients.reference.client import Client
from protocol import dumps, loads
from tests.support.server import ServerProcess


def op_row(server: ServerProcess, device: int, op_id: int) -> tuple[int, int, bytes]:
    with sqlite3.connect(server.db) as db:
        seq, conv_id, fields = db.execute(
            "SELECT seq, conv_id, fields FROM ops WHERE device_id = ? AND op_id = ?",
            (device, op_id)).fetchone()
    return seq, conv_id, bytes(fields)


def message_op_ids(client: Client, conv: bytes) -> list[int]:
    return [int(m["id"].split(":")[1]) for m in client.messages(conv)]


@pytest.mark.parametrize("backend", ["sqlite"])  # it edits the SQLite file as a lying server
def test_every_kind_of_server_lie_is_refused_and_reported(
        server: ServerProcess, make_client: Callable[..., Client]) -> None:
    amina, brian, chris = make_client(), make_client(), make_client()
    conv = amina.create_group("Team", [brian.phone])
    other = amina.create_group("Other", [brian.phone, chris.phone])
    amina.sync()
    brian.sync()
    sent = {}
    for label in ("flipped", "swapped", "moved", "honest"):
        amina.send(conv, f"{label} message")
    amina.sync()
    sent = dict(zip(("flipped", "swapped", "moved", "honest"),
                    message_op_ids(amina, conv)[-4:], strict=True))
    with sqlite3.connect(server.db) as db:
        # A flipped ciphertext byte.
        seq, _, fields = op_row(server, amina.device_id, sent["flipped"])
        payload, signature = loads(fields)
        tampered = bytearray(payload)
        tampered[-3] ^= 0x01
        db.execute("UPDATE ops SET fields = ? WHERE seq = ?",
                   (dumps([bytes(tampered), signature]), seq))
        # The same op attributed to another sender.
        seq, _, _ = op_row(server, amina.device_id, sent["swapped"])
        db.execute("UPDATE ops SET device_id = ?, op_id = 9999 WHERE seq = ?",
                   (chris.device_id, seq))
        # An op replayed into another conversation.
        seq, _, _ = op_row(server, amina.device_id, sent["moved"])
        other_id = db.execute("SELECT id FROM conversations WHERE conv = ?", (other,)).fetchone()
        db.execute("UPDATE ops SET conv_id = ? WHERE seq = ?", (other_id[0], seq))
        # A membership change the server made up: chris added, "signed" by amina's device.
        conv_id, head = db.execute("SELECT id, head FROM conversations WHERE conv = ?",
                                   (conv,)).fetchone()
        forged = dumps([head, [1, [[chris.user_id, 0]]], os.urandom(64)])
        db.execute("INSERT INTO ops (conv_id, op_type, device_id, op_id, fields, digest)"
                   " VALUES (?, 0, ?, 88888, ?, ?)", (conv_id, amina.device_id, forged,
                                                      os.urandom(32)))
        db.execute("INSERT INTO members VALUES (?, ?, 0)", (conv_id, chris.user_id))
        next_seq = db.execute("SELECT max(seq) FROM ops").fetchone()[0]
        db.execute("INSERT INTO spans VALUES (?, ?, ?, NULL)", (conv_id, chris.user_id,
                                                                next_seq))
    brian.sync()
    shown = [m["text"] for m in brian.messages(conv)]
    assert shown == ["honest message"]
    assert [m["text"] for m in brian.messages(other)] == []
    reasons = [p["reason"] for p in brian.problems()]
    assert sum("signature does not verify" in r for r in reasons) == 4, reasons
    roster = next(g for g in brian.groups() if g["id"] == conv.hex())["members"]
    assert chris.user_id not in {m["user_id"] for m in roster}  # the made-up add did not count


@pytest.mark.parametrize("backend", ["sqlite"])  # it edits the SQLite file as a lying server
def test_a_changed_key_is_reported_and_never_trusted(
        server: ServerProcess, make_client: Callable[..., Client]) -> None:
    amina, brian = make_client(), make_client()
    conv = amina.create_group("Team", [brian.phone])
    amina.sync()
    brian.sync()
    safety = brian.fingerprint(amina.phone)
    with sqlite3.connect(server.db) as db:
        db.execute("UPDATE devices SET sign_key = ? WHERE id = ?",
                   (os.urandom(32), amina.device_id))
    assert brian.fingerprint(amina.phone) == safety  # computed from the pinned keys
    assert any("KEY CHANGED" in p["reason"] for p in brian.problems())
    pinned = brian.store.db.execute("SELECT sign_key FROM devices WHERE device_id = ?",
                                    (amina.device_id,)).fetchone()[0]
    assert bytes(pinned) == amina.keys.sign_public
    with sqlite3.connect(server.db) as db:  # the lie was in the directory only
        db.execute("UPDATE devices SET sign_key = ? WHERE id = ?",
                   (amina.keys.sign_public, amina.device_id))
    amina.send(conv, "still really amina")
    amina.sync()
    brian.sync()
    assert [m["text"] for m in brian.messages(conv)] == ["still really amina"]


def test_the_server_files_hold_no_plaintext(server: ServerProcess,
                                            make_client: Callable[..., Client]) -> None:
    amina, brian = make_client(), make_client()
    words = "measles outbreak suspected in Mombasa ward seven"
    conv = amina.create_group("Confidential clinic group", [brian.phone])
    amina.send(conv, words)
    amina.sync()
    brian.sync()
    assert [m["text"] for m in brian.messages(conv)] == [words]
    files = server.stored_bytes()
    for word in [*words.split(), "Confidential", "clinic"]:
        if len(word) > 4:
            assert word.encode() not in files, word
