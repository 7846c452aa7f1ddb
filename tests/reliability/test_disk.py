"""A disk that fills up or fails mid-push: no ack without a commit, 503, recovery.

Two ways to fail the disk under a live server:

* a real size-capped filesystem (tmpfs) holding the database, filled by
  concurrent pushes until SQLite reports SQLITE_FULL; then space is freed
  (a ballast file deleted) and the same server takes pushes again, without
  a restart;
* an I/O error injected at the SQLite commit of one push, in a server
  running in this process.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from clients.reference.connection import ServerError
from protocol import ErrorCode, Role
from protocol.ops import Op
from syncd.config import Settings
from syncd.storage.sqlite import SQLiteStorage
from tests.support.device import Device
from tests.support.inprocess import invite, serve_in_thread
from tests.support.report import record
from tests.support.server import ServerProcess

FS_BYTES = 3 * 1024 * 1024
BALLAST_BYTES = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of a few MB, mounted for this test (needs root, as in CI)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES}", "tmpfs",
                           str(mount)], capture_output=True, check=False)
    if done.returncode != 0:
        if os.environ.get("SYNCD_REQUIRE_TMPFS") == "1":
            raise AssertionError(f"cannot mount a tmpfs: {done.stderr.decode()}")
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_refuses_with_503_keeps_every_ack_and_recovers(small_disk: Path) -> None:
    ballast = small_disk / "ballast"
    ballast.write_bytes(os.urandom(BALLAST_BYTES))
    db = small_disk / "syncd.db"
    server = ServerProcess(db).start()
    try:
        phones = [f"+2547330000{n}" for n in range(3)]
        devices = [Device.enrol(server.url, p, server.invite(p)) for p in phones]
        conv, create = devices[0].create({d.user_id: Role.MEMBER for d in devices[1:]})
        devices[0].push(conv, create)
        acked: dict[tuple[int, int], int] = {}
        refused: list[tuple[int, bool]] = []
        unexpected: list[str] = []
        lock = threading.Lock()

        def fill(device: Device) -> None:
            for _ in range(400):
                ops = [device.chat(conv, os.urandom(4000)) for _ in range(3)]
                try:
                    response = device.push(conv, *ops)
                except ServerError as error:
                    with lock:
                        refused.append((error.status, error.frame.retry_after is not None))
                    if len(refused) > 20:
                        return
                    continue
                except Exception as exc:
                    with lock:
                        unexpected.append(repr(exc))
                    return
                with lock:
                    acked.update({(device.device_id, op.op_id): seq
                                  for op, seq in zip(ops, response.acks, strict=True)})

        threads = [threading.Thread(target=fill, args=(d,)) for d in devices]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not unexpected
        assert refused, "the disk never filled"
        assert {status for status, _ in refused} == {503}
        assert all(retry for _, retry in refused), "a 503 without Retry-After"
        assert httpx.get(server.url + "/healthz").status_code == 200

        def stored() -> dict[tuple[int, int], int]:
            with sqlite3.connect(db) as connection:
                assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
                return {(d, o): s for d, o, s in connection.execute(
                    "SELECT device_id, op_id, seq FROM ops")}

        kept = stored()
        lost = [key for key, seq in acked.items() if kept.get(key) != seq]
        assert not lost, "an acked op is missing"
        # Free space: the same server, not restarted, takes the next push.
        ballast.unlink()
        op = devices[1].chat(conv, b"after the disk was freed")
        for _ in range(50):
            try:
                response = devices[1].push(conv, op)
                break
            except ServerError as error:
                assert error.status == 503
                time.sleep(0.1)
        else:
            raise AssertionError("no recovery after space was freed")
        assert stored()[(devices[1].device_id, op.op_id)] == response.acks[0]
    finally:
        server.stop()
    assert "Traceback" not in server.log.read_text()
    record("disk_full", filesystem_bytes=FS_BYTES, ops_acked=len(acked),
           refusals_503=len(refused), ops_lost=len(lost), recovered=True)


class FailingCommits(SQLiteStorage):
    """SQLite whose next ``fail`` commits raise the error a failing disk gives."""

    fail = 0

    async def open(self) -> None:
        await super().open()
        writer = self.writer
        real_commit = writer.commit

        async def commit() -> None:
            if self.fail:
                self.fail -= 1
                raise sqlite3.OperationalError("disk I/O error")
            await real_commit()

        writer.commit = commit  # type: ignore[method-assign]


def test_an_io_error_at_commit_acks_nothing_and_the_retry_lands(tmp_path: Path) -> None:
    storage = FailingCommits(tmp_path / "io.db")
    settings = Settings(db=storage.path, rate_per_second=1000, rate_burst=1000)
    with serve_in_thread(settings, storage) as url:
        device = Device.enrol(url, "+254744000001", invite(storage.path, "+254744000001"))
        conv, create = device.create({})
        ops: list[Op] = [create, *(device.chat(conv, os.urandom(100)) for _ in range(3))]
        storage.fail = 1
        with pytest.raises(ServerError) as refused:
            device.push(conv, *ops)
        assert refused.value.status == 503 and refused.value.code is ErrorCode.UNAVAILABLE
        with sqlite3.connect(storage.path) as connection:
            assert connection.execute("SELECT count(*) FROM ops").fetchone() == (0,)
        acks = device.push(conv, *ops).acks  # the same ops, retried
        with sqlite3.connect(storage.path) as connection:
            kept = dict(connection.execute("SELECT op_id, seq FROM ops"))
        assert [kept[op.op_id] for op in ops] == list(acks)
