"""Forms: polls, surveys and job cards, and the rules every client applies to them.

Theory of operation (SPEC.md, "Forms"). Form ops are content ops like
messages: their payloads are encrypted, the server orders them and sees
nothing. Every client computes a form's state with ``reconcile`` from the set
of form ops it holds, sorted by the server's order (seq), so clients holding
the same ops show the same state and the same results, whatever order and
batches the ops arrived in:

* A response is a record per (form, responder user). Several responses from
  one user merge field by field: for each field the value of the response
  with the highest hybrid logical clock wins, ties broken by device id. The
  clock travels inside the encrypted payload.
* Whether a response counts is decided by the server's order, never by a
  device's clock: it counts if, at its seq, the form was open (the last close
  or reopen before it, by seq, was not a close). A deadline is advisory: the
  creator's client closes the form when it passes.
* Invalid ops are ignored by every client the same way and reported: a
  response whose author was not a member at its seq, to a closed or unknown
  form, with an answer that does not fit its field (a wrong type, an option
  the form does not have, a missing required field); a close or reopen not by
  the creator; a job update not by an assignee or the creator.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from fractions import Fraction
from typing import Any

from . import _schema as s
from .codec import dumps, loads
from .e2e import OpRef
from .limits import MAX_PAYLOAD_BYTES

__all__ = [
    "FIELD_TYPES",
    "FieldType",
    "FormClose",
    "FormCreate",
    "FormEvent",
    "FormKind",
    "FormReopen",
    "FormResponse",
    "FormState",
    "JobStatus",
    "JobUpdate",
    "PayloadKind",
    "SurveyField",
    "parse_form_payload",
    "reconcile",
]

MAX_TEXT = 4096
MAX_FIELDS = 64
MAX_OPTIONS = 64
MAX_ASSIGNEES = 64
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


class PayloadKind(IntEnum):
    FORM_CREATE = 16
    FORM_RESPONSE = 17
    FORM_CLOSE = 18
    FORM_REOPEN = 19
    JOB_UPDATE = 20


class FormKind(IntEnum):
    POLL = 0
    SURVEY = 1
    JOB = 2


class FieldType(IntEnum):
    TEXT = 0
    NUMBER = 1  # an integer; shown divided by 10**scale
    SINGLE = 2
    MULTI = 3
    YESNO = 4
    DATE = 5  # "YYYY-MM-DD"
    LOCATION = 6  # [latitude, longitude] in degrees * 10**7


FIELD_TYPES = {t.name.lower().replace("yesno", "yes/no"): t for t in FieldType}


class JobStatus(IntEnum):
    OPEN = 0
    IN_PROGRESS = 1
    DONE = 2


def _text(value: Any, what: str) -> str:
    return s.tstr(value, what, max_bytes=MAX_TEXT)


@dataclass(frozen=True, slots=True)
class SurveyField:
    name: str
    type: FieldType
    required: bool = False
    options: tuple[str, ...] = ()
    scale: int = 0

    def __post_init__(self) -> None:
        _text(self.name, "field name")
        if self.type in (FieldType.SINGLE, FieldType.MULTI) and not self.options:
            raise s.bad("a choice field has options")
        s.uint(self.scale, "scale", maximum=9)

    def to_value(self) -> list[Any]:
        return [self.name, int(self.type), self.required, list(self.options), self.scale]

    @classmethod
    def from_value(cls, value: Any) -> SurveyField:
        raw = s.array(value, "field", min_len=5)
        kind = s.uint(raw[1], "field type", maximum=max(FieldType))
        options = tuple(_text(o, "option") for o in s.items(raw[3], "options",
                                                             max_count=MAX_OPTIONS))
        return cls(_text(raw[0], "field name"), FieldType(kind), s.boolean(raw[2], "required"),
                   options, s.uint(raw[4], "scale", maximum=9))


@dataclass(frozen=True, slots=True)
class FormCreate:
    """A new form. A poll is one SINGLE or MULTI field named "choice"."""

    form: FormKind
    title: str
    fields: tuple[SurveyField, ...] = ()
    assignees: tuple[int, ...] = ()  # user ids, for a job
    deadline: int | None = None  # Unix seconds, advisory
    kind = PayloadKind.FORM_CREATE

    def __post_init__(self) -> None:
        _text(self.title, "title")
        s.items(list(self.fields), "fields", max_count=MAX_FIELDS)
        if self.form is not FormKind.JOB and not self.fields:
            raise s.bad("a poll or survey has fields")
        if self.form is FormKind.POLL and (
                len(self.fields) != 1 or self.fields[0].name != "choice"
                or self.fields[0].type not in (FieldType.SINGLE, FieldType.MULTI)):
            raise s.bad('a poll has one choice field, named "choice"')
        if self.form is FormKind.JOB and self.fields:
            raise s.bad("a job card has no fields")
        if self.form is not FormKind.JOB and self.assignees:
            raise s.bad("only a job card has assignees")
        if len({f.name for f in self.fields}) != len(self.fields):
            raise s.bad("field names are unique")
        if self.form is FormKind.JOB and not self.assignees:
            raise s.bad("a job has assignees")
        for user in self.assignees:
            s.uint(user, "assignee", minimum=1)

    def to_value(self) -> dict[int, Any]:
        body: dict[int, Any] = {0: int(self.kind), 1: int(self.form), 2: self.title}
        if self.fields:
            body[3] = [f.to_value() for f in self.fields]
        if self.assignees:
            body[4] = list(self.assignees)
        if self.deadline is not None:
            body[5] = self.deadline
        return body

    @classmethod
    def from_value(cls, value: Any) -> FormCreate:
        body = s.mapping(value, "form create")
        form = FormKind(s.uint(body.get(1), "form kind", maximum=max(FormKind)))
        fields = tuple(SurveyField.from_value(f) for f in (
            s.items(body[3], "fields", max_count=MAX_FIELDS, min_count=1) if 3 in body else []))
        assignees = tuple(s.uint(u, "assignee", minimum=1) for u in (
            s.items(body[4], "assignees", max_count=MAX_ASSIGNEES, min_count=1)
            if 4 in body else []))
        deadline = s.uint(body[5], "deadline") if 5 in body else None
        return cls(form, _text(body.get(2), "title"), fields, assignees, deadline)


@dataclass(frozen=True, slots=True)
class FormResponse:
    """Answers by field index; ``clock`` is the hybrid logical clock (ms, counter)."""

    form: OpRef
    answers: Mapping[int, Any]
    clock: tuple[int, int]
    kind = PayloadKind.FORM_RESPONSE

    def to_value(self) -> dict[int, Any]:
        return {0: int(self.kind), 1: self.form.to_value(), 2: dict(self.answers),
                3: list(self.clock)}

    @classmethod
    def from_value(cls, value: Any) -> FormResponse:
        body = s.mapping(value, "form response")
        answers = s.mapping(body.get(2), "answers")
        clock = s.array(body.get(3), "clock", min_len=2)
        return cls(OpRef.from_value(body.get(1)), answers,
                   (s.uint(clock[0], "clock"), s.uint(clock[1], "clock counter")))


@dataclass(frozen=True, slots=True)
class FormClose:
    form: OpRef
    kind = PayloadKind.FORM_CLOSE

    def to_value(self) -> dict[int, Any]:
        return {0: int(self.kind), 1: self.form.to_value()}

    @classmethod
    def from_value(cls, value: Any) -> FormClose:
        return cls(OpRef.from_value(s.mapping(value, "form close").get(1)))


@dataclass(frozen=True, slots=True)
class FormReopen:
    form: OpRef
    kind = PayloadKind.FORM_REOPEN

    def to_value(self) -> dict[int, Any]:
        return {0: int(self.kind), 1: self.form.to_value()}


@dataclass(frozen=True, slots=True)
class JobUpdate:
    form: OpRef
    status: JobStatus
    clock: tuple[int, int]
    comment: str | None = None
    kind = PayloadKind.JOB_UPDATE

    def to_value(self) -> dict[int, Any]:
        body: dict[int, Any] = {0: int(self.kind), 1: self.form.to_value(),
                                2: int(self.status), 3: list(self.clock)}
        if self.comment is not None:
            body[4] = self.comment
        return body

    @classmethod
    def from_value(cls, value: Any) -> JobUpdate:
        body = s.mapping(value, "job update")
        clock = s.array(body.get(3), "clock", min_len=2)
        comment = _text(body[4], "comment") if 4 in body else None
        return cls(OpRef.from_value(body.get(1)),
                   JobStatus(s.uint(body.get(2), "status", maximum=max(JobStatus))),
                   (s.uint(clock[0], "clock"), s.uint(clock[1], "clock counter")), comment)


FormPayload = FormCreate | FormResponse | FormClose | FormReopen | JobUpdate


def parse_form_payload(data: bytes) -> FormPayload:
    """Decode a decrypted form payload; ``ProtocolError`` if it is not one."""
    body = s.mapping(loads(data, max_bytes=MAX_PAYLOAD_BYTES), "form payload")
    kind = s.uint(body.get(0), "payload kind")
    try:
        if kind == PayloadKind.FORM_CREATE:
            return FormCreate.from_value(body)
        if kind == PayloadKind.FORM_RESPONSE:
            return FormResponse.from_value(body)
        if kind == PayloadKind.FORM_CLOSE:
            return FormClose(OpRef.from_value(body.get(1)))
        if kind == PayloadKind.FORM_REOPEN:
            return FormReopen(OpRef.from_value(body.get(1)))
        if kind == PayloadKind.JOB_UPDATE:
            return JobUpdate.from_value(body)
    except (ValueError, TypeError) as exc:
        raise s.bad(f"bad form payload: {exc}") from exc
    raise s.bad(f"not a form payload kind: {kind}")


def encode_form_payload(payload: FormPayload) -> bytes:
    return dumps(payload.to_value())


@dataclass(frozen=True, slots=True)
class FormEvent:
    """One form op as a client holds it: where the server put it, who sent it, what it says."""

    seq: int
    device: int
    op_id: int
    user: int
    payload: FormPayload


def valid_date(text: str) -> bool:
    """ASCII ``YYYY-MM-DD`` naming a real day of the proleptic Gregorian calendar."""
    if DATE.fullmatch(text) is None:
        return False
    year, month, day = int(text[:4]), int(text[5:7]), int(text[8:])
    if not 1 <= month <= 12 or year < 1:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    return 1 <= day <= days


def valid_answer(spec: SurveyField, value: Any) -> bool:
    kind = spec.type
    if kind is FieldType.TEXT:
        return type(value) is str and len(value.encode()) <= MAX_TEXT
    if kind is FieldType.NUMBER:
        return type(value) is int
    if kind is FieldType.SINGLE:
        return type(value) is int and 0 <= value < len(spec.options)
    if kind is FieldType.MULTI:
        return (type(value) is list
                and all(type(v) is int and 0 <= v < len(spec.options) for v in value)
                and len(set(value)) == len(value))
    if kind is FieldType.YESNO:
        return type(value) is bool
    if kind is FieldType.DATE:
        return type(value) is str and valid_date(value)
    return (type(value) is list and len(value) == 2 and all(type(v) is int for v in value)
            and -900_000_000 <= value[0] <= 900_000_000
            and -1_800_000_000 <= value[1] <= 1_800_000_000)


@dataclass
class FormState:
    """A form as every client must compute it."""

    ref: OpRef
    creator: int
    definition: FormCreate
    created_seq: int
    open: bool = True
    closed_seq: int | None = None
    # responder user -> field index -> (clock, device, value)
    answers: dict[int, dict[int, tuple[tuple[int, int], int, Any]]] = field(default_factory=dict)
    status: JobStatus = JobStatus.OPEN
    status_clock: tuple[tuple[int, int], int] = ((0, 0), 0)
    comments: list[tuple[int, int, str]] = field(default_factory=list)  # seq, user, text
    ignored: list[tuple[int, str]] = field(default_factory=list)  # seq, reason

    def records(self) -> dict[int, dict[int, Any]]:
        """Each responder's merged answers: user -> field index -> value."""
        return {user: {index: value for index, (_, _, value) in fields.items()}
                for user, fields in sorted(self.answers.items())}


def reconcile(events: Iterable[FormEvent],
              member_at: Callable[[int, int], bool]) -> dict[OpRef, FormState]:
    """The state of every form in a conversation, from its form ops in any order.

    ``member_at(user, seq)`` says whether the user was a member at that seq
    (from the verified roster). Ops are taken in seq order; the result depends
    only on the set of ops.
    """
    forms: dict[OpRef, FormState] = {}
    for event in sorted(events, key=lambda e: (e.seq, e.device, e.op_id)):
        payload = event.payload
        if isinstance(payload, FormCreate):
            ref = OpRef(event.device, event.op_id)
            if not member_at(event.user, event.seq):
                continue  # a form from a non-member does not exist for anyone
            forms[ref] = FormState(ref, event.user, payload, event.seq)
            continue
        state = forms.get(payload.form)
        if state is None:
            continue  # a reply to a form this conversation does not have
        try:
            reason = _apply(state, event, member_at)
        except (TypeError, ValueError, KeyError, IndexError):
            reason = "an op of a shape no rule covers"  # one bad op never breaks the form
        if reason is not None:
            state.ignored.append((event.seq, reason))
    return forms


def _apply(state: FormState, event: FormEvent, member_at: Callable[[int, int], bool]
           ) -> str | None:
    payload = event.payload
    if not member_at(event.user, event.seq):
        return "from someone who was not a member"
    if isinstance(payload, FormClose | FormReopen):
        if event.user != state.creator:
            return "close or reopen not by the creator"
        state.open = isinstance(payload, FormReopen)
        state.closed_seq = None if state.open else event.seq
        return None
    if isinstance(payload, JobUpdate):
        if state.definition.form is not FormKind.JOB:
            return "a job update to a form that is not a job"
        if event.user not in state.definition.assignees and event.user != state.creator:
            return "a job update not by an assignee"
        stamp = (payload.clock, event.device)
        if stamp > state.status_clock:
            state.status, state.status_clock = payload.status, stamp
        if payload.comment is not None:
            state.comments.append((event.seq, event.user, payload.comment))
        return None
    assert isinstance(payload, FormResponse)
    if state.definition.form is FormKind.JOB:
        return "a response to a job"
    if not state.open:
        return "an answer to a closed form"
    fields = state.definition.fields
    if any(type(index) is not int or not 0 <= index < len(fields) for index in payload.answers):
        return "an answer to a field the form does not have"
    for index, value in payload.answers.items():
        if not valid_answer(fields[index], value):
            return f"an answer that does not fit field {fields[index].name!r}"
    missing = [f.name for i, f in enumerate(fields) if f.required and i not in payload.answers]
    if missing:  # every response carries every required field
        return f"required fields unanswered: {', '.join(missing)}"
    mine = state.answers.setdefault(event.user, {})
    for index, value in payload.answers.items():
        # Highest (clock, device) wins; on a full tie the later op (higher seq) does,
        # since ops are applied in seq order and ">=" lets it replace the earlier.
        if index not in mine or (payload.clock, event.device) >= mine[index][:2]:
            mine[index] = (payload.clock, event.device, value)
    return None


def percent(part: int, whole: int) -> str:
    """A percentage with one decimal, rounded half to even: the same text everywhere."""
    if whole == 0:
        return "0.0"
    value = round(Fraction(part * 100, whole) * 10)
    return f"{value // 10}.{value % 10}"


def decimal(value: Fraction, scale: int) -> str:
    """``value`` with ``scale`` + 2 decimals, rounded half to even."""
    digits = scale + 2
    scaled = round(value * 10**digits)
    sign = "-" if scaled < 0 else ""
    scaled = abs(scaled)
    whole, part = divmod(scaled, 10**digits)
    return f"{sign}{whole}.{part:0{digits}d}"


def results(state: FormState, members: Iterable[int]) -> dict[str, Any]:
    """Results every client computes identically (plain JSON values, sorted keys)."""
    definition = state.definition
    records = state.records()
    answered = sorted(records)
    out: dict[str, Any] = {
        "form": f"{state.ref.device}:{state.ref.op_id}", "kind": definition.form.name.lower(),
        "title": definition.title, "open": state.open, "deadline": definition.deadline,
        "responders": answered,
        "not_answered": sorted(set(members) - set(answered)),
        "ignored": len(state.ignored),
    }
    if definition.form is FormKind.JOB:
        out.update(status=state.status.name.lower().replace("_", "-"),
                   assignees=sorted(definition.assignees),
                   comments=[{"seq": seq, "user": user, "text": text}
                             for seq, user, text in state.comments])
        return out
    summaries = []
    for index, spec in enumerate(definition.fields):
        values = [record[index] for record in records.values() if index in record]
        summary: dict[str, Any] = {"field": spec.name, "type": spec.type.name.lower(),
                                   "count": len(values)}
        if spec.type in (FieldType.SINGLE, FieldType.MULTI):
            counts = [0] * len(spec.options)
            for value in values:
                for choice in (value if isinstance(value, list) else [value]):
                    counts[choice] += 1
            summary["options"] = [{"option": option, "count": count,
                                   "percent": percent(count, len(values))}
                                  for option, count in zip(spec.options, counts, strict=True)]
        elif spec.type is FieldType.NUMBER and values:
            scale = Fraction(1, 10**spec.scale)
            summary.update(min=decimal(min(values) * scale, spec.scale),
                           max=decimal(max(values) * scale, spec.scale),
                           mean=decimal(Fraction(sum(values), len(values)) * scale,
                                        spec.scale))
        elif spec.type is FieldType.YESNO:
            summary.update(yes=sum(1 for v in values if v), no=sum(1 for v in values if not v))
        elif spec.type is FieldType.DATE and values:
            summary.update(earliest=min(values), latest=max(values))
        summaries.append(summary)
    out["fields"] = summaries
    return out
