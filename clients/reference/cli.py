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
from .forms import Forms

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

    poll = commands.add_parser("poll", help="polls").add_subparsers(dest="action", required=True)
    poll_create = poll.add_parser("create", help="send a poll; prints the form id")
    poll_create.add_argument("conv")
    poll_create.add_argument("--question", required=True)
    poll_create.add_argument("--option", action="append", required=True)
    poll_create.add_argument("--multi", action="store_true", help="several choices allowed")
    poll_create.add_argument("--deadline", help="ISO 8601; the form closes then")

    survey = commands.add_parser("survey", help="surveys").add_subparsers(dest="action",
                                                                         required=True)
    survey_create = survey.add_parser("create", help="send a survey; prints the form id")
    survey_create.add_argument("conv")
    survey_create.add_argument("--title", required=True)
    survey_create.add_argument("--field", action="append", required=True,
                               metavar="NAME:TYPE[:required][:A|B]",
                               help="TYPE: text, number, single, multi, yesno, date, location")
    survey_create.add_argument("--deadline")

    job = commands.add_parser("job", help="job cards").add_subparsers(dest="action",
                                                                     required=True)
    job_create = job.add_parser("create", help="send a job card; prints the form id")
    job_create.add_argument("conv")
    job_create.add_argument("--title", required=True)
    job_create.add_argument("--assignee", action="append", required=True, metavar="PHONE")
    job_create.add_argument("--due")
    job_update = job.add_parser("update", help="change a job's status, with a comment")
    job_update.add_argument("form")
    job_update.add_argument("--status", required=True, choices=["open", "in-progress", "done"])
    job_update.add_argument("--comment")

    respond = commands.add_parser("respond", help="answer a poll or survey (works offline)")
    respond.add_argument("form")
    respond.add_argument("--answer", action="append", required=True, metavar="FIELD=VALUE")

    form = commands.add_parser("form", help="forms").add_subparsers(dest="action",
                                                                   required=True)
    for name in ("close", "reopen"):
        form.add_parser(name).add_argument("form")
    form_list = form.add_parser("list", help="the forms of a conversation")
    form_list.add_argument("conv")
    form_list.add_argument("--json", action="store_true")
    form_results = form.add_parser("results", help="results every member computes alike")
    form_results.add_argument("form")
    form_results.add_argument("--json", action="store_true")
    form_export = form.add_parser("export", help="one row per responder")
    form_export.add_argument("form")
    form_export.add_argument("--format", required=True, choices=["csv", "json"])
    form_export.add_argument("--out", help="file to write (default: standard output)")

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
    elif args.command in ("poll", "survey", "job", "respond", "form"):
        return forms_command(client, args)
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


def forms_command(client: Client, args: argparse.Namespace) -> int:
    forms = Forms(client)
    command, action = args.command, getattr(args, "action", None)
    if command == "poll":
        print(forms.create_poll(parse_conv(args.conv), args.question, args.option, args.multi,
                                args.deadline))
    elif command == "survey":
        print(forms.create_survey(parse_conv(args.conv), args.title, args.field, args.deadline))
    elif command == "job" and action == "create":
        print(forms.create_job(parse_conv(args.conv), args.title, args.assignee, args.due))
    elif command == "job":
        print(forms.job_update(args.form, args.status, args.comment))
    elif command == "respond":
        print(forms.respond(args.form, args.answer))
    elif action in ("close", "reopen"):
        print(forms.close(args.form, reopen=action == "reopen"))
    elif action == "list":
        listed = forms.list(parse_conv(args.conv))
        emit(listed, args.json, "\n".join(
            f"{f['id']}  {f['kind']}  {f['title']}  {'open' if f['open'] else 'closed'}  "
            f"{f['responders']} answered" for f in listed))
    elif action == "results":
        result = forms.results(args.form)
        emit(result, args.json, json.dumps(result, indent=1, sort_keys=True,
                                           ensure_ascii=False))
    else:
        text = forms.export(args.form, args.format)
        if args.out:
            Path(args.out).write_text(text if text.endswith("\n") else text + "\n")
        else:
            print(text, end="" if text.endswith("\n") else "\n")
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
