"""The client on bad links: GPRS with cuts, and killed mid-sync again and again."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from clients.reference.client import Client
from clients.reference.connection import Connection
from tests.support.linkemu import PROFILES, LinkEmulator, Profile, ThreadedLink
from tests.support.server import ServerProcess

MESSAGES = int(os.environ.get("SYNCREF_SOAK_MESSAGES", "50"))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL over GPRS: tests/replicas
def test_gprs_with_cuts_converges_without_duplicates_or_loss(
        server: ServerProcess, make_client: Callable[..., Client]) -> None:
    a, b, c = make_client(), make_client(), make_client()
    conv = a.create_group("Over GPRS", [b.phone, c.phone])
    a.sync()
    b.sync()
    c.sync()
    # Nearly every connection dies a few kilobytes in, mid-request or mid-response.
    def plan(rng: random.Random, index: int) -> tuple[str, int] | None:
        if rng.random() < 0.9:
            return (rng.choice(["up", "down"]), rng.randint(200, 6000))
        return None

    emulator = LinkEmulator("127.0.0.1", server.port, PROFILES["gprs"], seed=5, plan=plan)
    with ThreadedLink(emulator) as link:
        for client in (a, b, c):
            client.use_connection(Connection(link.url, timeout=20))
        for n in range(MESSAGES):
            for client in (a, b, c):
                client.send(conv, f"{client.phone} message {n}")
        for _ in range(3):
            for client in (a, b, c):
                client.sync(budget=8 * 1024, timeout=240)
        assert link.counters.cuts >= 3  # the link really was bad
    views = [client.messages(conv) for client in (a, b, c)]
    assert views[0] == views[1] == views[2]
    assert len(views[0]) == 3 * MESSAGES  # nothing lost
    assert len({m["id"] for m in views[0]}) == 3 * MESSAGES  # nothing twice
    assert not any(m["pending"] for m in views[0])


def syncref(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "clients.reference.cli", "--home", str(home),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killing_the_client_mid_sync_loses_and_doubles_nothing(
        server: ServerProcess, make_client: Callable[..., Client], tmp_path: Path) -> None:
    sender, receiver = make_client(name="sender"), make_client(name="receiver")
    conv = sender.create_group("Kill test", [receiver.phone])
    for n in range(40):
        sender.send(conv, f"queued {n}")
    sender.close()
    receiver.close()
    slow = Profile("slow", down_bps=30_000, up_bps=15_000, rtt=0.3)
    rng = random.Random(9)
    with ThreadedLink(LinkEmulator("127.0.0.1", server.port, slow)) as link:
        for home in (tmp_path / "sender", tmp_path / "receiver"):
            state = Client(home)
            state.store.put("server", link.url)
            state.close()
            for _ in range(8):  # kill it at random moments
                process = syncref(home, "sync", "--budget", "1024")
                time.sleep(rng.uniform(0.2, 1.2))
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)
            done = syncref(home, "sync", "--budget", "1024", "--timeout", "120")
            _, err = done.communicate(timeout=300)
            assert done.returncode == 0, err
    sender, receiver = Client(tmp_path / "sender"), Client(tmp_path / "receiver")
    try:
        sent, received = sender.messages(conv), receiver.messages(conv)
        assert [m["text"] for m in received] == [f"queued {n}" for n in range(40)]
        assert sent == received
        assert sender.whoami()["pending_ops"] == 0
    finally:
        sender.close()
        receiver.close()


def test_a_server_that_forgot_the_device_gets_backoff_not_a_storm(
        tmp_path: Path) -> None:
    import httpx
    import pytest

    from clients.reference.engine import SyncIncomplete, SyncRefused
    from tests.support.server import free_port

    port = free_port()
    first = ServerProcess(tmp_path / "old.db", port=port).start()
    client = Client.init(tmp_path / "home", first.url, "+254744000001",
                         first.invite("+254744000001"))
    client.sync()
    first.stop()
    restored = ServerProcess(tmp_path / "new.db", port=port).start()  # knows no such device
    try:
        started = time.monotonic()
        with pytest.raises((SyncIncomplete, SyncRefused)):
            client.sync(timeout=3)
        assert time.monotonic() - started < 30
        metrics = httpx.get(restored.url + "/metrics").text
        sessions = sum(float(line.split()[-1]) for line in metrics.splitlines()
                       if line.startswith('syncd_requests_total{route="session"'))
        assert 0 < sessions < 30  # backed off, not thousands of requests
    finally:
        client.close()
        restored.stop()
