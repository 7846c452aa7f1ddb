"""What operators use: health, readiness, metrics, the sync log, the admin commands, shutdown."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from protocol import Role
from tests.support.device import Device
from tests.support.server import ServerProcess

from .conftest import next_phone


def admin(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "syncd.cli", "admin", "--db", str(db), *args],
                          capture_output=True, text=True, timeout=60)


def test_health_and_readiness(server: ServerProcess) -> None:
    health = httpx.get(server.url + "/healthz")
    assert health.status_code == 200
    assert "server" not in health.headers and "date" not in health.headers
    assert httpx.get(server.url + "/readyz").status_code == 200


def test_not_ready_while_the_database_cannot_write(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "r.db", env={"SYNCD_BUSY_TIMEOUT_MS": "100"}).start()
    try:
        blocker = sqlite3.connect(server.db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        response = httpx.get(server.url + "/readyz")
        blocker.execute("ROLLBACK")
        blocker.close()
        assert response.status_code == 503 and "database" in response.text
        assert httpx.get(server.url + "/healthz").status_code == 200  # alive all along
        assert httpx.get(server.url + "/readyz").status_code == 200
    finally:
        server.stop()


def test_metrics_count_requests_bytes_ops_and_devices(server: ServerProcess,
                                                      enrol: Callable[[], Device]) -> None:
    amina, brian = enrol(), enrol()
    conv, create = amina.create({brian.user_id: Role.MEMBER})
    amina.push(conv, create, amina.chat(conv, b"x"))
    brian.drain()
    text = httpx.get(server.url + "/metrics").text
    for needle in ('syncd_requests_total{route="sync",status="200"}',
                   'syncd_request_bytes_total{route="sync"}',
                   'syncd_response_bytes_total{route="sync"}',
                   "syncd_sync_seconds_bucket", "syncd_ops_pushed_total",
                   "syncd_ops_pulled_total", "syncd_active_devices", "syncd_database_bytes"):
        assert needle in text, needle
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values["syncd_ops_pushed_total"] >= 2 and values["syncd_ops_pulled_total"] >= 2
    assert values["syncd_active_devices"] >= 2 and values["syncd_database_bytes"] > 0


def test_one_structured_log_line_per_sync(server: ServerProcess,
                                          enrol: Callable[[], Device]) -> None:
    amina = enrol()
    conv, create = amina.create({})
    amina.push(conv, create)
    lines = [json.loads(line.split(" INFO ", 1)[1]) for line in server.log.read_text().splitlines()
             if "syncd.sync INFO" in line]
    mine = [entry for entry in lines if entry.get("device") == amina.device_id]
    assert mine, "no sync log line for the device"
    last = mine[-1]
    assert {"request_id", "device", "bytes_in", "bytes_out", "pushed", "pulled", "status",
            "ms"} <= set(last)
    assert last["pushed"] == 1 and last["status"] == 200


def test_admin_commands_while_serving(server: ServerProcess) -> None:
    phone = next_phone()
    invited = admin(server.db, "--json", "invite", phone, "--ttl", "600")
    assert invited.returncode == 0, invited.stderr
    code = json.loads(invited.stdout)["code"]
    device = Device.enrol(server.url, phone, code)
    listed = json.loads(admin(server.db, "--json", "devices", phone).stdout)
    assert [d["device_id"] for d in listed["devices"]] == [device.device_id]
    stats = json.loads(admin(server.db, "--json", "stats").stdout)
    assert stats["users"] >= 1 and stats["devices"] >= 1 and stats["database_bytes"] > 0
    assert {"conversations", "ops"} <= set(stats)
    revoked = admin(server.db, "revoke", str(device.device_id))
    assert revoked.returncode == 0
    with pytest.raises(Exception):  # noqa: B017 - refused at once: 401 on its session
        device.sync()
    plain = admin(server.db, "invite", next_phone())
    assert plain.returncode == 0 and len(plain.stdout.strip()) == 11
    bad = admin(server.db, "invite", "0700")
    assert bad.returncode == 1 and "E.164" in bad.stderr
    missing = admin(server.db, "revoke", "999999")
    assert missing.returncode == 1 and "no device" in missing.stderr


def test_backup_while_serving_is_consistent(server: ServerProcess, enrol: Callable[[], Device],
                                            tmp_path: Path) -> None:
    amina = enrol()
    conv, create = amina.create({})
    amina.push(conv, create, *[amina.chat(conv, bytes([n])) for n in range(20)])
    target = tmp_path / "copy.db"
    done = admin(server.db, "--json", "backup", str(target))
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(target) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        count = copy.execute("SELECT count(*) FROM ops WHERE device_id = ?",
                             (amina.device_id,)).fetchone()[0]
    assert count == 21
    assert admin(server.db, "backup", str(target)).returncode == 1  # never overwrites


def test_sigterm_shuts_down_cleanly(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "t.db").start()
    phone = next_phone()
    device = Device.enrol(server.url, phone, server.invite(phone))
    conv, create = device.create({})
    device.push(conv, create)
    # uvicorn finishes in-flight work, runs the shutdown, then exits by the signal it got.
    assert server.stop() in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.log.read_text()
    wal = Path(str(server.db) + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed and closed
    with sqlite3.connect(server.db) as db:
        assert db.execute("SELECT count(*) FROM ops").fetchone() == (1,)
