"""Forms on the reference client: create, answer, close, and compute results.

Everything sent here is a content op whose payload is a form payload
(``protocol.forms``), encrypted like a message, so it works offline and the
server reads nothing. Results come from ``protocol.forms.reconcile`` over the
form ops this device holds, so every member computes the same ones.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from decimal import Decimal
from typing import Any

from protocol import OpType, Role
from protocol.e2e import OpRef
from protocol.forms import (
    FIELD_TYPES,
    FieldType,
    FormClose,
    FormCreate,
    FormEvent,
    FormKind,
    FormReopen,
    FormResponse,
    FormState,
    JobStatus,
    JobUpdate,
    SurveyField,
    encode_form_payload,
    parse_form_payload,
    reconcile,
    results,
    valid_date,
)

from .client import Client, ClientError
from .store import PENDING_SEQ

STATUSES = {"open": JobStatus.OPEN, "in-progress": JobStatus.IN_PROGRESS,
            "done": JobStatus.DONE}


def parse_when(text: str | None) -> int | None:
    """ISO 8601 (a date, or a date and time) to Unix seconds."""
    if text is None:
        return None
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ClientError(f"{text!r} is not an ISO 8601 date or time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def parse_field(text: str) -> SurveyField:
    """NAME:TYPE[:required][:OPTION|OPTION...], e.g. ``visits:number:required``."""
    parts = text.split(":")
    if len(parts) < 2 or (parts[1] not in FIELD_TYPES and parts[1] != "yesno"):
        raise ClientError(f"{text!r}: a field is NAME:TYPE[:required][:A|B|C], TYPE one of "
                          f"{', '.join(FIELD_TYPES)}")
    kind = FieldType.YESNO if parts[1] in ("yesno", "yes/no") else FIELD_TYPES[parts[1]]
    rest = parts[2:]
    required = "required" in rest
    options = tuple(o for part in rest if part != "required" for o in part.split("|") if o)
    if kind in (FieldType.SINGLE, FieldType.MULTI) and not options:
        raise ClientError(f"{text!r}: a choice field lists its options, like :a|b|c")
    return SurveyField(parts[0], kind, required, options)


class Forms:
    """The forms of one device's conversations."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.db = client.store.db

    # ------------------------------------------------------------ sending

    def _send(self, conv: bytes, payload: Any) -> str:
        roster = self.client.store.current_roster(conv)
        if roster is None or self.client.user_id not in roster:
            raise ClientError("no such conversation here (or you are not a member)")
        plain = encode_form_payload(payload)
        parse_form_payload(plain)  # what we send must read back as it will elsewhere
        store = self.client.store
        with store.transaction() as db:
            (op_id,) = store.next_op_ids(db, 1)
            op = self.client._content_bytes(conv, op_id, OpType.CHAT, plain)
            self.client._queue(db, conv, [op])
            db.execute("INSERT INTO form_ops VALUES (?, ?, ?, NULL, ?, ?)",
                       (self.client.device_id, op_id, conv, self.client.user_id, plain))
        return f"{self.client.device_id}:{op_id}"

    def create_poll(self, conv: bytes, question: str, options: list[str], multi: bool = False,
                    deadline: str | None = None) -> str:
        if len(options) < 2:
            raise ClientError("a poll needs at least two options")
        kind = FieldType.MULTI if multi else FieldType.SINGLE
        return self._send(conv, FormCreate(FormKind.POLL, question, (
            SurveyField("choice", kind, True, tuple(options)),), deadline=parse_when(deadline)))

    def create_survey(self, conv: bytes, title: str, fields: list[str],
                      deadline: str | None = None) -> str:
        return self._send(conv, FormCreate(FormKind.SURVEY, title,
                                           tuple(parse_field(f) for f in fields),
                                           deadline=parse_when(deadline)))

    def create_job(self, conv: bytes, title: str, assignees: list[str],
                   due: str | None = None) -> str:
        users = tuple(sorted({self.client.user_of_phone(phone) for phone in assignees}))
        return self._send(conv, FormCreate(FormKind.JOB, title, assignees=users,
                                           deadline=parse_when(due)))

    def _form(self, form_id: str) -> tuple[bytes, OpRef, FormState]:
        match = re.fullmatch(r"(\d+):(\d+)", form_id)
        if match is None:
            raise ClientError(f"{form_id!r} is not a form id (device:op, as create printed)")
        ref = OpRef(int(match[1]), int(match[2]))
        row = self.db.execute("SELECT conv FROM form_ops WHERE from_device = ? AND op_id = ?",
                              (ref.device, ref.op_id)).fetchone()
        if row is None:
            raise ClientError(f"no form {form_id} here (sync first?)")
        conv = bytes(row[0])
        state = self.states(conv).get(ref)
        if state is None:
            raise ClientError(f"{form_id} is not a form anyone may answer")
        return conv, ref, state

    def respond(self, form_id: str, answers: list[str]) -> str:
        conv, ref, state = self._form(form_id)
        if state.definition.form is FormKind.JOB:
            raise ClientError(f"{form_id} is a job card: use `job update`")
        if not state.open:
            raise ClientError(f"{form_id} is closed")
        fields = state.definition.fields
        by_name = {f.name: i for i, f in enumerate(fields)}
        values: dict[int, Any] = {}
        for item in answers:
            name, _, text = item.partition("=")
            if name not in by_name:
                raise ClientError(f"no field {name!r}; fields: {', '.join(by_name)}")
            values[by_name[name]] = self._value(fields[by_name[name]], text)
        missing = [f.name for i, f in enumerate(fields) if f.required and i not in values]
        if missing:
            raise ClientError(f"answer the required fields too: {', '.join(missing)}")
        return self._send(conv, FormResponse(ref, values, self.client.next_clock()))

    @staticmethod
    def _value(spec: SurveyField, text: str) -> Any:
        try:
            if spec.type is FieldType.TEXT:
                return text
            if spec.type is FieldType.NUMBER:
                scaled = Decimal(text) * 10**spec.scale
                if not scaled.is_finite() or scaled != scaled.to_integral_value():
                    raise ValueError(text)
                return int(scaled)
            if spec.type is FieldType.SINGLE:
                return spec.options.index(text)
            if spec.type is FieldType.MULTI:
                return sorted({spec.options.index(o) for o in text.split(",") if o})
            if spec.type is FieldType.YESNO:
                return {"yes": True, "no": False}[text.lower()]
            if spec.type is FieldType.DATE:
                if not valid_date(text):
                    raise ValueError(text)
                return text
            latitude, longitude = (Decimal(x) for x in text.split(","))
            if not (abs(latitude) <= 90 and abs(longitude) <= 180):
                raise ValueError(text)
            return [int((latitude * 10**7).to_integral_value()),
                    int((longitude * 10**7).to_integral_value())]
        except (ValueError, KeyError, ArithmeticError) as exc:
            hint = f" (one of {', '.join(spec.options)})" if spec.options else ""
            raise ClientError(f"{text!r} is not a {spec.type.name.lower()} answer for "
                              f"{spec.name!r}{hint}") from exc

    def job_update(self, form_id: str, status: str, comment: str | None = None) -> str:
        conv, ref, state = self._form(form_id)
        if state.definition.form is not FormKind.JOB:
            raise ClientError(f"{form_id} is not a job card")
        if status not in STATUSES:
            raise ClientError("status is one of open, in-progress, done")
        return self._send(conv, JobUpdate(ref, STATUSES[status], self.client.next_clock(),
                                          comment))

    def close(self, form_id: str, reopen: bool = False) -> str:
        conv, ref, state = self._form(form_id)
        if state.creator != self.client.user_id:
            raise ClientError("only the form's creator closes or reopens it")
        return self._send(conv, FormReopen(ref) if reopen else FormClose(ref))

    def close_due(self) -> int:
        """Close our own open forms whose deadline passed (deadlines are advisory; the
        creator's close is what every client goes by)."""
        closed = 0
        now = time.time()
        for (conv,) in self.db.execute("SELECT DISTINCT conv FROM form_ops").fetchall():
            for ref, state in self.states(bytes(conv)).items():
                deadline = state.definition.deadline
                if (state.open and state.creator == self.client.user_id and deadline
                        and deadline <= now and state.definition.form is not FormKind.JOB):
                    self._send(bytes(conv), FormClose(ref))
                    closed += 1
        return closed

    # ------------------------------------------------------------ reading

    def states(self, conv: bytes) -> dict[OpRef, FormState]:
        events = []
        for device, op_id, seq, author, payload in self.db.execute(
                "SELECT from_device, op_id, seq, author, payload FROM form_ops WHERE conv = ?",
                (conv,)):
            position = PENDING_SEQ + op_id if seq is None else seq
            events.append(FormEvent(position, device, op_id, author, parse_form_payload(payload)))
        store = self.client.store

        def member_at(user: int, seq: int) -> bool:
            roster = store.roster_at(conv, seq)
            return roster is not None and user in roster

        return reconcile(events, member_at)

    def list(self, conv: bytes) -> list[dict[str, Any]]:
        return [{"id": f"{ref.device}:{ref.op_id}", "kind": s.definition.form.name.lower(),
                 "title": s.definition.title, "open": s.open,
                 "deadline": s.definition.deadline,
                 "responders": len(s.answers)}
                for ref, s in sorted(self.states(conv).items(),
                                     key=lambda item: item[1].created_seq)]

    def results(self, form_id: str) -> dict[str, Any]:
        conv, _, state = self._form(form_id)
        # Members when it closed, or now (as the server has confirmed: not our pending changes).
        at = state.closed_seq if state.closed_seq is not None else PENDING_SEQ - 1
        roster = self.client.store.roster_at(conv, at) or {}
        out = results(state, [u for u, r in roster.items() if r in (Role.MEMBER, Role.ADMIN)])
        phone = self.client.phone_of_user
        out["responders"] = [{"user": u, "phone": phone(u)} for u in out["responders"]]
        out["not_answered"] = [{"user": u, "phone": phone(u)} for u in out["not_answered"]]
        return out

    def export(self, form_id: str, fmt: str) -> str:
        """One row per responder: their phone, then each field's value as text."""
        _, _, state = self._form(form_id)
        fields = state.definition.fields
        rows = []
        for user, record in state.records().items():
            row: dict[str, Any] = {"user": user, "phone": self.client.phone_of_user(user)}
            for index, spec in enumerate(fields):
                row[spec.name] = _render(spec, record.get(index))
            rows.append(row)
        if fmt == "json":
            return json.dumps(rows, sort_keys=True, ensure_ascii=False)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=["user", "phone", *(f.name for f in fields)],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()


def _render(spec: SurveyField, value: Any) -> Any:
    if value is None:
        return None
    if spec.type is FieldType.SINGLE:
        return spec.options[value]
    if spec.type is FieldType.MULTI:
        return "|".join(spec.options[v] for v in value)
    if spec.type is FieldType.NUMBER:
        from fractions import Fraction

        from protocol.forms import decimal

        return decimal(Fraction(value, 10**spec.scale), spec.scale)[:-2] if spec.scale else value
    if spec.type is FieldType.YESNO:
        return "yes" if value else "no"
    if spec.type is FieldType.LOCATION:
        return f"{value[0] / 10**7:.7f},{value[1] / 10**7:.7f}"
    return value
