"""``syncd serve`` and ``syncd admin`` on PostgreSQL, and ``syncd admin migrate`` from a
SQLite database a server is still serving: real processes, real HTTP, real databases."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest

from protocol import Role
from syncd.storage import open_storage
from syncd.storage.transfer import TABLES, MigrationRefused, migrate
from tests.support.device import Device
from tests.support.server import ServerProcess

from .conftest import next_phone


def admin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "syncd.cli", "admin", *args],
                          capture_output=True, text=True, timeout=60)


def pg_counts(url: str) -> dict[str, int]:
    async def count() -> dict[str, int]:
        db = await asyncpg.connect(url)
        try:
            return {t.name: int(await db.fetchval(f"SELECT count(*) FROM {t.name}"))
                    for t in TABLES}
        finally:
            await db.close()
    return asyncio.run(count())


def enrol(server: ServerProcess) -> Device:
    phone = next_phone()
    return Device.enrol(server.url, phone, server.invite(phone))


def test_serve_and_admin_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "pg.db", database=postgres_url).start()
    try:
        amina = enrol(server)
        brian_phone = next_phone()
        invited = admin("--db", postgres_url, "--json", "invite", brian_phone)
        assert invited.returncode == 0, invited.stderr
        brian = Device.enrol(server.url, brian_phone, json.loads(invited.stdout)["code"])
        conv, create = amina.create({brian.user_id: Role.MEMBER})
        sent = amina.push(conv, create, *[amina.chat(conv, bytes([n]) * 40) for n in range(5)])
        assert list(sent.acks) == list(range(sent.acks[0], sent.acks[0] + 6))
        assert brian.drain() == list(sent.acks)
        assert httpx.get(server.url + "/readyz").status_code == 200

        listed = json.loads(admin("--db", postgres_url, "--json", "devices", brian_phone).stdout)
        assert [d["device_id"] for d in listed["devices"]] == [brian.device_id]
        stats = json.loads(admin("--db", postgres_url, "--json", "stats").stdout)
        assert (stats["users"], stats["devices"], stats["ops"]) == (2, 2, 6)
        assert stats["database_bytes"] > 0
        backup = admin("--db", postgres_url, "backup", str(tmp_path / "copy.db"))
        assert backup.returncode == 1 and "pg_dump" in backup.stderr
        assert admin("--db", postgres_url, "revoke", str(brian.device_id)).returncode == 0
        listed = json.loads(admin("--db", postgres_url, "--json", "devices", brian_phone).stdout)
        assert [d["revoked"] for d in listed["devices"]] == [True]
    finally:
        server.stop()


def test_migrate_a_live_sqlite_database_then_serve_it_from_postgresql(
        postgres_url: str, tmp_path: Path) -> None:
    sqlite_server = ServerProcess(tmp_path / "live.db").start()
    port = sqlite_server.port
    try:
        amina = enrol(sqlite_server)
        brian = enrol(sqlite_server)
        conv, create = amina.create({brian.user_id: Role.MEMBER})
        first = amina.push(conv, create, *[amina.chat(conv, bytes([n]) * 30) for n in range(4)])
        assert brian.drain() == list(first.acks)  # brian's cursor is at the high water
        later = amina.push(conv, *[amina.chat(conv, bytes([n]) * 30) for n in range(3)])
        sqlite_server.invite(next_phone())  # an unused invite travels too

        done = admin("migrate", "--from", str(sqlite_server.db), "--to", postgres_url, "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["verified"] is True and "to" in report
        with sqlite3.connect(sqlite_server.db) as source:
            expected = {t.name: source.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0]
                        for t in TABLES}
        assert {name: t["rows"] for name, t in report["tables"].items()} == expected
        assert pg_counts(postgres_url) == expected
        assert expected["ops"] == 8 and expected["sessions"] == 2 and expected["invites"] == 3
        assert all(len(t["sha256"]) == 64 for t in report["tables"].values())

        again = admin("migrate", "--from", str(sqlite_server.db), "--to", postgres_url)
        assert again.returncode == 1 and "already holds data" in again.stderr
        assert pg_counts(postgres_url) == expected  # nothing added
    finally:
        sqlite_server.stop()

    pg_server = ServerProcess(tmp_path / "pg.db", port=port, database=postgres_url).start()
    try:
        # Same server identity (login verifies the server's key), same device ids, and
        # brian's cursor is valid: he gets exactly the ops he missed, with their seqs.
        brian.login()
        assert brian.drain() == list(later.acks)
        amina.login()
        more = amina.push(conv, amina.chat(conv, b"after the move"))
        assert more.acks == (later.acks[-1] + 1,)
        assert brian.drain() == list(more.acks)
    finally:
        pg_server.stop()


def test_migrate_refuses_what_it_cannot_do_cleanly(postgres_url: str, tmp_path: Path) -> None:
    missing = admin("migrate", "--from", str(tmp_path / "none.db"), "--to", postgres_url)
    assert missing.returncode == 1 and "no SQLite database" in missing.stderr
    assert not (tmp_path / "none.db").exists()
    not_pg = admin("migrate", "--from", str(tmp_path / "none.db"), "--to", str(tmp_path / "x"))
    assert not_pg.returncode == 1 and "postgresql://" in not_pg.stderr
    usage = admin("migrate", "--from", str(tmp_path / "none.db"))
    assert usage.returncode == 2 and "--to" in usage.stderr


def test_a_copy_that_does_not_read_back_identically_is_rolled_back(
        postgres_url: str, tmp_path: Path) -> None:
    """A target that alters what it stores (here a trigger flipping the ciphertext of
    ops) fails the checksum comparison, and the whole copy is rolled back."""
    sqlite_server = ServerProcess(tmp_path / "live.db").start()
    try:
        amina = enrol(sqlite_server)
        conv, create = amina.create({})
        amina.push(conv, create, amina.chat(conv, b"x" * 30))
    finally:
        sqlite_server.stop()

    async def scenario() -> None:
        storage = open_storage(postgres_url)
        await storage.open()  # the schema, so the trigger can be installed
        await storage.close()
        db = await asyncpg.connect(postgres_url)
        try:
            await db.execute(
                "CREATE FUNCTION flip() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN NEW.fields := NEW.fields || '\\x00'::bytea; RETURN NEW; END $$;"
                " CREATE TRIGGER flip BEFORE INSERT ON ops FOR EACH ROW EXECUTE FUNCTION flip()")
            with pytest.raises(MigrationRefused, match="table ops differs"):
                await migrate(sqlite_server.db, postgres_url)
            for table in TABLES:
                assert await db.fetchval(f"SELECT count(*) FROM {table.name}") == 0, table.name
            assert await db.fetchval("SELECT seq FROM op_counter") == 0
        finally:
            await db.close()

    asyncio.run(scenario())
