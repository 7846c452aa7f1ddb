"""Synapse, the Matrix homeserver, as a peer to measure syncd against.

``SynapseServer`` installs ``matrix-synapse`` from PyPI into its own virtual
environment (created once under a cache folder and reused), generates a
configuration, and runs the homeserver in a child process on SQLite,
listening on 127.0.0.1 only, without TLS. The rate limits are raised far
above anything the benchmark reaches, so that throughput measures the
server and not its limiter. Presence is off (it would add events to every
sync). Users are created through the shared-secret registration API.

``MatrixClient`` is a minimal client on httpx: one keep-alive connection,
no headers beyond the access token (and ``Accept-Encoding: gzip`` when asked
for), the way a careful phone client would talk to it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["SYNC_FILTER", "MatrixClient", "SynapseServer", "synapse_python"]

SECRET = "bench-shared-secret"
UNLIMITED = {"per_second": 100_000, "burst_count": 100_000}

SYNC_FILTER: dict[str, Any] = {
    "room": {
        "state": {"lazy_load_members": True},
        "timeline": {"limit": 100, "lazy_load_members": True},
    },
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
}
"""The filter B syncs with: members lazily loaded (what Element and other current
clients ask for), up to 100 timeline events per room, no presence or account data."""


def synapse_python(cache: Path) -> Path:
    """The Python of a virtual environment holding matrix-synapse, created if absent."""
    venv = cache / "synapse-venv"
    python = venv / "bin" / "python"
    marker = venv / "installed"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "matrix-synapse"],
                       check=True)
        marker.write_text("matrix-synapse\n")
    return python


def synapse_version(python: Path) -> str:
    answer = subprocess.run([str(python), "-c",
                             "import importlib.metadata as m; print(m.version('matrix-synapse'))"],
                            check=True, capture_output=True, text=True)
    return answer.stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SynapseServer:
    """A Synapse homeserver in a child process, on a fresh SQLite file in ``folder``."""

    def __init__(self, python: Path, folder: Path) -> None:
        self.python = python
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.base = folder / "homeserver.yaml"
        self.override = folder / "bench.yaml"
        self.db = folder / "homeserver.db"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def configure(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(self.python), "-m", "synapse.app.homeserver", "--server-name",
                        "localhost", "--config-path", str(self.base), "--generate-config",
                        "--report-stats=no", "--data-directory", str(self.folder)],
                       check=True, capture_output=True, cwd=self.folder)
        override = {
            "listeners": [{"port": self.port, "bind_addresses": ["127.0.0.1"], "type": "http",
                           "tls": False, "x_forwarded": False,
                           "resources": [{"names": ["client"], "compress": True}]}],
            "database": {"name": "sqlite3", "args": {"database": str(self.db)}},
            "registration_shared_secret": SECRET,
            "enable_registration": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "report_stats": False,
            "presence": {"enabled": False},
            "rc_message": UNLIMITED,
            "rc_registration": UNLIMITED,
            "rc_room_creation": UNLIMITED,
            "rc_joins_per_room": UNLIMITED,
            "rc_key_requests": UNLIMITED,
            "rc_login": {"address": UNLIMITED, "account": UNLIMITED,
                         "failed_attempts": UNLIMITED},
            "rc_joins": {"local": UNLIMITED, "remote": UNLIMITED},
            "rc_invites": {"per_room": UNLIMITED, "per_user": UNLIMITED,
                           "per_issuer": UNLIMITED},
        }
        # JSON is YAML; Synapse merges the files given with --config-path, later ones win.
        self.override.write_text(json.dumps(override, indent=1))

    def start(self, timeout: float = 120.0) -> SynapseServer:
        if not self.override.exists():
            self.configure()
        log = (self.folder / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            [str(self.python), "-m", "synapse.app.homeserver", "--config-path", str(self.base),
             "--config-path", str(self.override)],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = (self.folder / "stdout.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"synapse exited: {tail}")
            try:
                if httpx.get(f"{self.url}/_matrix/client/versions", timeout=1.0).is_success:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("synapse did not become ready")

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)

    def database_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.folder.glob("homeserver.db*"))

    def register(self, localpart: str) -> tuple[str, str]:
        """A new user through the shared-secret admin API: (user id, access token)."""
        path = "/_synapse/admin/v1/register"
        with httpx.Client(base_url=self.url, timeout=30) as client:
            nonce = client.get(path).raise_for_status().json()["nonce"]
            password = "bench-" + localpart
            mac = hmac.new(SECRET.encode(), b"\x00".join(
                part.encode() for part in (nonce, localpart, password, "notadmin")),
                hashlib.sha1)
            answer = client.post(path, json={"nonce": nonce, "username": localpart,
                                             "password": password, "admin": False,
                                             "mac": mac.hexdigest()}).raise_for_status().json()
        return str(answer["user_id"]), str(answer["access_token"])


class MatrixClient:
    """One Matrix user on one keep-alive connection (through a link emulator, or not)."""

    def __init__(self, base_url: str, user_id: str, token: str, *, gzip: bool = False,
                 timeout: float = 120.0) -> None:
        self.user_id = user_id
        self.client = httpx.Client(base_url=base_url, timeout=timeout)
        self.client.headers.clear()
        self.client.headers["Authorization"] = f"Bearer {token}"
        if gzip:
            self.client.headers["Accept-Encoding"] = "gzip"
        self.txn = 0
        self.filter_id = ""
        self.since = ""

    def close(self) -> None:
        self.client.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             params: dict[str, str] | None = None) -> dict[str, Any]:
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        answer = self.client.request(method, path, content=content, params=params)
        if not answer.is_success:
            raise RuntimeError(f"{method} {path}: HTTP {answer.status_code} {answer.text[:200]}")
        result: dict[str, Any] = answer.json()
        return result

    def create_room(self, invite: list[str]) -> str:
        answer = self.call("POST", "/_matrix/client/v3/createRoom",
                           {"preset": "private_chat", "invite": invite})
        return str(answer["room_id"])

    def join(self, room: str) -> None:
        self.call("POST", f"/_matrix/client/v3/join/{quote(room)}", {})

    def upload_filter(self, definition: dict[str, Any] = SYNC_FILTER) -> None:
        answer = self.call("POST", f"/_matrix/client/v3/user/{quote(self.user_id)}/filter",
                           definition)
        self.filter_id = str(answer["filter_id"])

    def send(self, room: str, text: str) -> str:
        self.txn += 1
        answer = self.call("PUT", f"/_matrix/client/v3/rooms/{quote(room)}/send/"
                                  f"m.room.message/{os.getpid()}.{self.txn}",
                           {"msgtype": "m.text", "body": text})
        return str(answer["event_id"])

    def sync(self) -> dict[str, Any]:
        """One ``/sync`` from the last ``since`` (an initial sync the first time), timeout 0."""
        params = {"timeout": "0"}
        if self.filter_id:
            params["filter"] = self.filter_id
        if self.since:
            params["since"] = self.since
        answer = self.call("GET", "/_matrix/client/v3/sync", params=params)
        self.since = str(answer["next_batch"])
        return answer

    def messages_before(self, room: str, token: str) -> dict[str, Any]:
        """One page of ``/messages`` backwards from ``token`` (after a limited timeline)."""
        params = {"dir": "b", "from": token, "limit": "100"}
        if self.filter_id:
            params["filter"] = json.dumps({"lazy_load_members": True}, separators=(",", ":"))
        return self.call("GET", f"/_matrix/client/v3/rooms/{quote(room)}/messages",
                         params=params)

    def catch_up(self, room: str, expected: set[str], rounds: int = 100) -> int:
        """Sync, paging back through ``/messages`` when the timeline was cut short, until
        every event id in ``expected`` arrived. Returns the requests it took."""
        seen: set[str] = set()
        requests = 1
        answer = self.sync()
        joined = answer.get("rooms", {}).get("join", {}).get(room, {})
        timeline = joined.get("timeline", {})
        seen |= {event["event_id"] for event in timeline.get("events", [])}
        token = timeline.get("prev_batch") if timeline.get("limited") else None
        for _ in range(rounds):
            if expected <= seen or token is None:
                break
            page = self.messages_before(room, token)
            requests += 1
            seen |= {event["event_id"] for event in page.get("chunk", [])}
            token = page.get("end")
        missing = expected - seen
        if missing:
            raise RuntimeError(f"catch-up incomplete: {len(missing)} event(s) missing")
        return requests
