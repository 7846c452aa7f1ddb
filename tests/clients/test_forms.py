"""Forms end to end: answered offline, synced in different orders over GPRS, identical results."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from clients.reference.client import Client, ClientError
from clients.reference.connection import Connection
from clients.reference.forms import Forms
from tests.support.linkemu import PROFILES, LinkEmulator, ThreadedLink
from tests.support.server import ServerProcess


def cli(home: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "clients.reference.cli", "--home", str(home),
                           *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_three_members_answer_offline_and_compute_identical_results(
        server: ServerProcess, make_client: Callable[..., Client], tmp_path: Path) -> None:
    amina, brian, chris = (make_client(name=n) for n in ("amina", "brian", "chris"))
    conv = amina.create_group("Clinic staff", [brian.phone, chris.phone])
    forms = Forms(amina)
    poll = forms.create_poll(conv, "Training day?", ["Monday", "Friday"])
    survey = forms.create_survey(conv, "Weekly report", [
        "visits:number:required", "stock ok:yesno", "services:multi:vaccines|antenatal|malaria",
        "notes:text", "next visit:date", "where:location"])
    job = forms.create_job(conv, "Repair the fridge", [brian.phone])
    amina.sync()
    brian.sync()
    chris.sync()
    # Everyone answers offline.
    Forms(brian).respond(poll, ["choice=Friday"])
    Forms(brian).respond(survey, ["visits=12", "stock ok=no", "services=vaccines,malaria",
                                  "where=-1.2921,36.8219", "notes=cold chain broken"])
    Forms(chris).respond(poll, ["choice=Monday"])
    Forms(chris).respond(poll, ["choice=Friday"])  # changed their mind
    Forms(chris).respond(survey, ["visits=7", "stock ok=yes", "next visit=2026-12-01"])
    Forms(amina).respond(survey, ["visits=9"])
    Forms(brian).job_update(job, "in-progress", "parts ordered")
    with pytest.raises(ClientError):
        Forms(chris).respond(survey, ["stock ok=yes"])  # a required field is missing
    rng = random.Random(4)
    with ThreadedLink(LinkEmulator("127.0.0.1", server.port, PROFILES["gprs"],
                                   plan=lambda r, i: None)) as link:
        for client in (amina, brian, chris):
            client.use_connection(Connection(link.url, timeout=30))
        for _ in range(3):
            order = [amina, brian, chris]
            rng.shuffle(order)
            for client in order:
                client.sync(budget=8 * 1024, timeout=120)
    outputs = {name: cli(tmp_path / name, "form", "results", survey, "--json")
               for name in ("amina", "brian", "chris")}
    assert outputs["amina"] == outputs["brian"] == outputs["chris"]  # byte for byte
    survey_results = json.loads(outputs["amina"])
    visits = survey_results["fields"][0]
    assert (visits["count"], visits["min"], visits["max"], visits["mean"]) == (
        3, "7.00", "12.00", "9.33")
    assert [r["phone"] for r in survey_results["responders"]] == [
        amina.phone, brian.phone, chris.phone]
    polls = {name: cli(tmp_path / name, "form", "results", poll, "--json")
             for name in ("amina", "brian", "chris")}
    assert polls["amina"] == polls["brian"] == polls["chris"]
    options = json.loads(polls["amina"])["fields"][0]["options"]
    assert [(o["option"], o["count"], o["percent"]) for o in options] == [
        ("Monday", 0, "0.0"), ("Friday", 2, "100.0")]
    assert json.loads(polls["amina"])["not_answered"][0]["phone"] == amina.phone
    board = json.loads(cli(tmp_path / "chris", "form", "results", job, "--json"))
    assert board["status"] == "in-progress" and board["comments"][0]["text"] == "parts ordered"
    exported = cli(tmp_path / "brian", "form", "export", survey, "--format", "csv").splitlines()
    assert exported[0] == "user,phone,visits,stock ok,services,notes,next visit,where"
    assert len(exported) == 4  # a header, then one row per responder
    rows = json.loads(cli(tmp_path / "chris", "form", "export", survey, "--format", "json"))
    assert {row["phone"] for row in rows} == {amina.phone, brian.phone, chris.phone}
    listed = json.loads(cli(tmp_path / "brian", "form", "list", conv.hex(), "--json"))
    assert [f["kind"] for f in listed] == ["poll", "survey", "job"]
    # Closing: an answer sent after the close does not count, on every member.
    cli(tmp_path / "amina", "form", "close", poll)
    cli(tmp_path / "amina", "sync")
    cli(tmp_path / "brian", "sync")
    # Chris has not seen the close yet and answers; the server puts the close first.
    cli(tmp_path / "chris", "respond", poll, "--answer", "choice=Monday")
    for name in ("chris", "amina", "brian", "chris"):
        cli(tmp_path / name, "sync")
    after = {name: cli(tmp_path / name, "form", "results", poll, "--json")
             for name in ("amina", "brian", "chris")}
    assert after["amina"] == after["brian"] == after["chris"]
    assert json.loads(after["amina"])["open"] is False
    assert json.loads(after["amina"])["fields"][0]["options"][0]["count"] == 0
    # The server holds none of the questions, options or answers.
    files = server.stored_bytes()
    for word in ("Training", "Friday", "Weekly report", "antenatal", "cold chain", "fridge",
                 "parts ordered"):
        assert word.encode() not in files, word


def test_a_far_future_clock_from_someone_else_is_not_adopted(
        make_client: Callable[..., Client]) -> None:
    amina = make_client()
    amina.observe_clock((2**63 - 1, 2**63 - 1))
    wall, counter = amina.next_clock()
    assert wall < 2**62 and counter < 2**32
    with pytest.raises(ClientError):
        conv = amina.create_group("Solo", [])
        Forms(amina).respond(Forms(amina).create_job(conv, "Fix it", [amina.phone]),
                             ["x=1"])
