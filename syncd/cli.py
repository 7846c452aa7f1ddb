"""Command line of the syncd server (``syncd``).

    syncd serve [--host H] [--port P] [--db PATH]
    syncd admin --db PATH invite PHONE [PHONE ...] [--ttl SECONDS]
    syncd admin --db PATH devices PHONE
    syncd admin --db PATH revoke DEVICE_ID
    syncd admin --db PATH stats
    syncd admin --db PATH backup PATH
    syncd admin migrate --from SQLITE_PATH --to postgresql://...

``--db`` takes a SQLite file path or a ``postgresql://`` URL.
Every admin command takes ``--json`` and then prints one JSON document.
Settings also come from ``SYNCD_*`` environment variables (see config.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import admin
from .config import Settings
from .storage import StorageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncd", description="syncd sync server")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", default=None, help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (8787)")
    serve.add_argument("--db", default=None,
                       help="SQLite database file (./syncd.db) or postgresql:// URL")

    tool = commands.add_parser("admin", help="operator commands; safe while the server runs")
    tool.add_argument("--db", default=None,
                      help="database file or postgresql:// URL (SYNCD_DB, ./syncd.db)")
    tool.add_argument("--json", action="store_true", help="print one JSON document")
    actions = tool.add_subparsers(dest="action", required=True)
    invite = actions.add_parser("invite", help="print a one-time enrolment code for a phone")
    invite.add_argument("phone")
    invite.add_argument("more_phones", nargs="*", metavar="PHONE",
                        help="more phones: one code per line, in the same order")
    invite.add_argument("--ttl", type=int, default=admin.DEFAULT_INVITE_TTL,
                        help="seconds until the code expires (7 days)")
    devices = actions.add_parser("devices", help="list a user's devices")
    devices.add_argument("phone")
    revoke = actions.add_parser("revoke", help="revoke a device and end its sessions")
    revoke.add_argument("device_id", type=int)
    actions.add_parser("stats", help="users, devices, conversations, ops, database size")
    backup = actions.add_parser("backup", help="consistent copy of the database, while serving")
    backup.add_argument("path")
    migrate = actions.add_parser("migrate", help="copy a SQLite database into an empty"
                                 " PostgreSQL database, verified table by table")
    migrate.add_argument("--from", dest="source", required=True, metavar="SQLITE_PATH")
    migrate.add_argument("--to", dest="target", required=True, metavar="POSTGRESQL_URL")
    for sub in (invite, devices, revoke, backup, migrate):
        sub.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    for name in ("stats",):
        actions.choices[name].add_argument("--json", action="store_true",
                                           default=argparse.SUPPRESS)
    return parser


def run_admin(args: argparse.Namespace) -> int:
    db = args.db or os.environ.get("SYNCD_DB") or Settings().db
    result: dict[str, Any]
    try:
        if args.action == "invite" and args.more_phones:
            for phone in args.more_phones:
                admin.check_phone_text(phone)  # all valid, or no code at all
            invites = [asyncio.run(admin.invite(db, phone, args.ttl))
                       for phone in [args.phone, *args.more_phones]]
            result = {"invites": invites}
            text = "\n".join(item["code"] for item in invites)
        elif args.action == "invite":
            result = asyncio.run(admin.invite(db, args.phone, args.ttl))
            text = result["code"]
        elif args.action == "devices":
            result = asyncio.run(admin.devices(db, args.phone))
            lines = [f"user {result['user_id']} {result['phone']}"]
            lines += [f"  device {d['device_id']}{'  revoked' if d['revoked'] else ''}"
                      for d in result["devices"]]
            text = "\n".join(lines)
        elif args.action == "revoke":
            result = asyncio.run(admin.revoke(db, args.device_id))
            text = f"device {args.device_id} revoked"
        elif args.action == "stats":
            result = asyncio.run(admin.stats(db))
            text = "\n".join(f"{key}: {value}" for key, value in result.items())
        elif args.action == "migrate":
            db = args.target
            result = asyncio.run(admin.migrate(args.source, args.target))
            ops = result["tables"]["ops"]["rows"]
            text = (f"copied {args.source} to {result['to']}: {ops} ops; row counts and"
                    " checksums match in every table")
        else:
            result = asyncio.run(admin.backup(db, args.path))
            text = f"backup written to {result['backup']} ({result['bytes']} bytes)"
    except admin.AdminError as exc:
        print(f"syncd admin: {exc}", file=sys.stderr)
        return 1
    except StorageError as exc:
        from .storage.postgres import redact

        print(f"syncd admin: database {redact(db)}: {exc}", file=sys.stderr)
        return 1
    print(admin.render(result, args.json, text))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from .server import serve

        serve(Settings.from_env(host=args.host, port=args.port, db=args.db))
        return 0
    return run_admin(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
