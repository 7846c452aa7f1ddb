"""Settings: defaults, then SYNCD_* variables, then flags."""

from __future__ import annotations

from syncd.cli import build_parser
from syncd.config import Settings


def test_environment_overrides_defaults_and_flags_override_both() -> None:
    env = {"SYNCD_PORT": "9000", "SYNCD_DB": "/data/s.db", "SYNCD_RATE_PER_SECOND": "2.5"}
    settings = Settings.from_env(env)
    assert (settings.port, settings.db, settings.rate_per_second) == (9000, "/data/s.db", 2.5)
    assert settings.host == "127.0.0.1" and settings.max_body_bytes == 256 * 1024
    flagged = Settings.from_env(env, port=9100, db=None)
    assert flagged.port == 9100 and flagged.db == "/data/s.db"


def test_serve_and_admin_command_lines() -> None:
    parser = build_parser()
    serve = parser.parse_args(["serve", "--port", "8000", "--db", "x.db"])
    assert (serve.command, serve.port, serve.db, serve.host) == ("serve", 8000, "x.db", None)
    invite = parser.parse_args(["admin", "--db", "x.db", "invite", "+254700000001", "--ttl", "60",
                                "--json"])
    assert (invite.action, invite.phone, invite.ttl, invite.json) == (
        "invite", "+254700000001", 60, True)
    for args in (["admin", "devices", "+254700000001"], ["admin", "revoke", "3"],
                 ["admin", "stats"], ["admin", "backup", "b.db"]):
        assert parser.parse_args(args).action == args[1]
