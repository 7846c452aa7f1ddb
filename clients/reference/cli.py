"""Command line of the reference client (``syncref``). The command names are a contract.

    syncref --home D init --server URL --phone PHONE --code CODE
    syncref --home D whoami [--json]
    syncref --home D fingerprint PHONE [--json]
    syncref --home D group create NAME [--member PHONE ...] [--broadcast]
    syncref --home D group add CONV PHONE
    syncref --home D group remove CONV PHONE
    syncref --home D group list [--json]
    syncref --home D send CONV TEXT [--announce]
    syncref --home D sync [--budget BYTES] [--timeout SECONDS]
    syncref --home D messages CONV [--json]
    syncref --home D problems [--json]

The home folder defaults to ``$SYNCREF_HOME`` or ``~/.syncref``. Read
commands print one JSON document with ``--json``. Errors go to stderr with a
non-zero exit: 1 for a refusal or a mistake, 3 when ``sync`` ran out of time
on a bad link (run it again: nothing is lost).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from protocol import ProtocolError

from .client import Client, ClientError, parse_conv
from .connection import ResponseForged, ServerError
from .engine import SyncIncomplete, SyncRefused

EXIT_ERROR = 1
EXIT_INCOMPLETE = 3
GPRS_BUDGET = 8 * 1024  # about 1.6 s of a 40 kbit/s downlink per round trip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncref", description="syncd reference client")
    parser.add_argument("--home", default=None,
                        help="state folder (default $SYNCREF_HOME or ~/.syncref)")
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="register this home as a new device")
    init.add_argument("--server", required=True, help="server URL, like http://127.0.0.1:8787")
    init.add_argument("--phone", required=True, help="your phone number, E.164")
    init.add_argument("--code", required=True, help="the enrolment code from the operator")

    whoami = commands.add_parser("whoami", help="this device")
    whoami.add_argument("--json", action="store_true")

    fingerprint = commands.add_parser("fingerprint", help="safety number with another user")
    fingerprint.add_argument("phone")
    fingerprint.add_argument("--json", action="store_true")

    group = commands.add_parser("group", help="conversations")
    actions = group.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a conversation; prints its id")
    create.add_argument("name")
    create.add_argument("--member", action="append", default=[], metavar="PHONE")
    create.add_argument("--broadcast", action="store_true", help="only admins post")
    add = actions.add_parser("add", help="add a member (admins)")
    add.add_argument("conv")
    add.add_argument("phone")
    remove = actions.add_parser("remove", help="remove a member (admins); starts a new key epoch")
    remove.add_argument("conv")
    remove.add_argument("phone")
    listing = actions.add_parser("list", help="your conversations")
    listing.add_argument("--json", action="store_true")

    send = commands.add_parser("send", help="queue a message (works offline)")
    send.add_argument("conv")
    send.add_argument("text")
    send.add_argument("--announce", action="store_true", help="an announcement (admins)")

    sync = commands.add_parser("sync", help="push the outbox and pull until there is no more")
    sync.add_argument("--budget", type=int, default=GPRS_BUDGET,
                      help=f"most bytes per response (default {GPRS_BUDGET})")
    sync.add_argument("--timeout", type=float, default=300.0,
                      help="give up after this many seconds of failing link (default 300)")

    messages = commands.add_parser("messages", help="a conversation, in the server's order")
    messages.add_argument("conv")
    messages.add_argument("--json", action="store_true")

    problems = commands.add_parser("problems", help="ops refused by the checks, never shown")
    problems.add_argument("--json", action="store_true")
    return parser


def home_of(args: argparse.Namespace) -> Path:
    return Path(args.home or os.environ.get("SYNCREF_HOME") or Path.home() / ".syncref")


def emit(data: Any, as_json: bool, text: str) -> None:
    print(json.dumps(data, sort_keys=True) if as_json else text)


def progress(report: dict[str, int]) -> None:
    if sys.stderr.isatty():
        print(f"\rsync: {report['round_trips']} round trips, {report['pushed']} sent, "
              f"{report['pulled']} received, {report['bytes_up'] + report['bytes_down']} bytes",
              end="", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    home = home_of(args)
    if args.command == "init":
        client = Client.init(home, args.server, args.phone, args.code)
        print(f"registered {client.phone} as device {client.device_id} in {home}")
        client.close()
        return 0
    client = Client(home)
    try:
        return dispatch(client, args)
    finally:
        client.close()


def dispatch(client: Client, args: argparse.Namespace) -> int:
    if args.command == "whoami":
        me = client.whoami()
        emit(me, args.json, f"{me['phone']}  user {me['user_id']}  device {me['device_id']}  "
                            f"on {me['server']}  ({me['pending_ops']} ops queued)")
    elif args.command == "fingerprint":
        number = client.fingerprint(args.phone)
        emit({"phone": args.phone, "safety_number": number}, args.json, number)
    elif args.command == "group":
        if args.action == "create":
            print(client.create_group(args.name, args.member, args.broadcast).hex())
        elif args.action == "add":
            client.add_member(parse_conv(args.conv), args.phone)
        elif args.action == "remove":
            client.remove_member(parse_conv(args.conv), args.phone)
        else:
            groups = client.groups()
            emit(groups, args.json, "\n".join(
                f"{g['id']}  {g['name'] or '(no name yet)'}  {len(g['members'])} members"
                f"{'  broadcast' if g['broadcast'] else ''}" for g in groups))
    elif args.command == "send":
        print(client.send(parse_conv(args.conv), args.text, announce=args.announce))
    elif args.command == "sync":
        before, seen = len(client.problems()), len(client.notices())
        report = client.sync(budget=args.budget, timeout=args.timeout, progress=progress)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        for problem in client.problems()[before:]:
            print(f"warning: {problem['reason']}", file=sys.stderr)
        for notice in client.notices()[seen:]:
            print(f"notice: {notice}", file=sys.stderr)
        print(f"synced: {report['pushed']} sent, {report['pulled']} received in "
              f"{report['round_trips']} round trips")
    elif args.command == "messages":
        listed = client.messages(parse_conv(args.conv))
        emit(listed, args.json, "\n".join(
            f"{m['time'] or '':20}  {m['sender_phone']}: "
            f"{'(deleted)' if m['deleted'] else m['text']}"
            f"{'  (edited)' if m['edited'] else ''}{'  (pending)' if m['pending'] else ''}"
            for m in listed))
    else:
        found = client.problems()
        notices = client.notices()
        emit({"problems": found, "notices": notices}, args.json,
             "\n".join([*(p["reason"] for p in found), *notices]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.umask(0o077)  # keys, state and its journal: readable by this user only
    try:
        return run(args)
    except SyncIncomplete as incomplete:
        print(f"syncref: {incomplete}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except (ClientError, SyncRefused) as error:
        print(f"syncref: {error}", file=sys.stderr)
        return EXIT_ERROR
    except ServerError as error:
        print(f"syncref: the server refused: {error.frame.message}", file=sys.stderr)
        return EXIT_ERROR
    except ProtocolError as error:
        print(f"syncref: {error.message}", file=sys.stderr)
        return EXIT_ERROR
    except (httpx.HTTPError, ResponseForged) as error:
        print(f"syncref: cannot reach the server ({error}); this command needs the network",
              file=sys.stderr)
        return EXIT_ERROR
    except (OSError, sqlite3.Error) as error:
        print(f"syncref: cannot use the home folder: {error}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
