"""The syncref command line: the contract other tools script against."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.server import ServerProcess


def syncref(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clients.reference.cli", "--home", str(home),
                           *args], capture_output=True, text=True, timeout=120)


def test_commands_and_json_output(server: ServerProcess, tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for home, phone in ((a, "+254755000001"), (b, "+254755000002"), (c, "+254755000003")):
        done = syncref(home, "init", "--server", server.url, "--phone", phone,
                       "--code", server.invite(phone))
        assert done.returncode == 0, done.stderr
    me = json.loads(syncref(a, "whoami", "--json").stdout)
    assert me["phone"] == "+254755000001" and me["device_id"] >= 1
    conv = syncref(a, "group", "create", "Field team", "--member", "+254755000002").stdout.strip()
    assert len(conv) == 16
    assert syncref(a, "group", "add", conv, "+254755000003").returncode == 0
    assert syncref(a, "send", conv, "hello team", "--announce").returncode == 0
    assert syncref(a, "sync").returncode == 0
    for home in (b, c):
        assert syncref(home, "sync", "--budget", "2048", "--timeout", "60").returncode == 0
    groups = json.loads(syncref(b, "group", "list", "--json").stdout)
    assert groups[0]["id"] == conv and groups[0]["name"] == "Field team"
    assert {m["phone"] for m in groups[0]["members"]} == {
        "+254755000001", "+254755000002", "+254755000003"}
    listed = json.loads(syncref(c, "messages", conv, "--json").stdout)
    assert [m["text"] for m in listed] == ["hello team"]
    assert {"id", "sender_phone", "sender_device", "time", "text", "reply_to", "edited",
            "deleted", "pending"} <= set(listed[0])
    assert syncref(a, "group", "remove", conv, "+254755000003").returncode == 0
    safety_a = json.loads(syncref(a, "fingerprint", "+254755000002", "--json").stdout)
    safety_b = json.loads(syncref(b, "fingerprint", "+254755000001", "--json").stdout)
    assert safety_a["safety_number"] == safety_b["safety_number"]
    assert len(safety_a["safety_number"].replace(" ", "")) == 30


def test_errors_go_to_stderr_with_a_non_zero_exit(server: ServerProcess, tmp_path: Path) -> None:
    nowhere = syncref(tmp_path / "nowhere", "whoami")
    assert nowhere.returncode == 1 and "init" in nowhere.stderr and not nowhere.stdout
    assert not (tmp_path / "nowhere").exists()
    bad_code = syncref(tmp_path / "x", "init", "--server", server.url, "--phone",
                       "+254755000009", "--code", "WRONG-CODE")
    assert bad_code.returncode == 1 and "refused" in bad_code.stderr
    offline = syncref(tmp_path / "y", "init", "--server", "http://127.0.0.1:9", "--phone",
                      "+254755000010", "--code", "X")
    assert offline.returncode == 1 and "cannot reach" in offline.stderr
