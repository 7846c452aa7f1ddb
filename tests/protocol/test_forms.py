"""Forms: every replica computes the same state and results from the same set of ops."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.e2e import OpRef
from protocol.forms import (
    FieldType,
    FormClose,
    FormCreate,
    FormEvent,
    FormKind,
    FormReopen,
    FormResponse,
    JobStatus,
    JobUpdate,
    SurveyField,
    decimal,
    encode_form_payload,
    parse_form_payload,
    percent,
    reconcile,
    results,
)

POLL = FormCreate(FormKind.POLL, "Lunch?", (SurveyField("choice", FieldType.SINGLE, True,
                                                        ("rice", "ugali", "chapati")),))
SURVEY = FormCreate(FormKind.SURVEY, "Clinic visit", (
    SurveyField("name", FieldType.TEXT, True),
    SurveyField("patients", FieldType.NUMBER),
    SurveyField("weight", FieldType.NUMBER, scale=1),
    SurveyField("services", FieldType.MULTI, options=("vaccines", "antenatal", "malaria")),
    SurveyField("stock ok", FieldType.YESNO),
    SurveyField("date", FieldType.DATE),
    SurveyField("where", FieldType.LOCATION),
))
JOB = FormCreate(FormKind.JOB, "Fix the pump", assignees=(2, 3), deadline=1_800_000_000)
DEVICES = {1: 11, 2: 21, 3: 31, 4: 41}  # user -> device (user 4 leaves at seq 60)


def member_at(user: int, seq: int) -> bool:
    return user in (1, 2, 3) or (user == 4 and seq < 60)


def random_value(rng: random.Random, spec: SurveyField) -> object:
    options = len(spec.options)
    if spec.type is FieldType.TEXT:
        return rng.choice(["ok", "late", "né"])
    if spec.type is FieldType.NUMBER:
        return rng.randint(-5, 500)
    if spec.type is FieldType.SINGLE:
        return rng.randrange(options)
    if spec.type is FieldType.MULTI:
        return sorted(rng.sample(range(options), rng.randint(0, options)))
    if spec.type is FieldType.YESNO:
        return rng.random() < 0.5
    if spec.type is FieldType.DATE:
        return f"2026-11-{rng.randint(10, 28)}"
    return [rng.randint(-10**7, 10**7), rng.randint(0, 10**8)]


def answer_for(rng: random.Random, form: FormCreate) -> dict[int, object]:
    answers: dict[int, object] = {}
    for index, spec in enumerate(form.fields):
        if spec.required or rng.random() >= 0.3:
            answers[index] = random_value(rng, spec)
    if rng.random() < 0.15:  # sometimes invalid: a wrong type or an option that does not exist
        answers[0] = rng.choice(["xxx", 99, [7], None])
    return answers


def scenario(seed: int) -> list[FormEvent]:
    rng = random.Random(seed)
    events = [FormEvent(1, 11, 1, 1, POLL), FormEvent(2, 11, 2, 1, SURVEY),
              FormEvent(3, 11, 3, 1, JOB)]
    refs = {FormKind.POLL: OpRef(11, 1), FormKind.SURVEY: OpRef(11, 2),
            FormKind.JOB: OpRef(11, 3)}
    op_ids = dict.fromkeys(DEVICES.values(), 100)
    for seq in range(4, 120):
        user = rng.choice(list(DEVICES))
        device = DEVICES[user]
        op_ids[device] += 1
        roll = rng.random()
        clock = (1_000 + rng.randint(0, 50), rng.randint(0, 3))
        if roll < 0.6:
            form = rng.choice([POLL, SURVEY])
            payload: object = FormResponse(refs[form.form], answer_for(rng, form), clock)
        elif roll < 0.75:
            ref = rng.choice([refs[FormKind.POLL], refs[FormKind.SURVEY]])
            payload = rng.choice([FormClose(ref), FormReopen(ref)])
        else:
            payload = JobUpdate(refs[FormKind.JOB], rng.choice(list(JobStatus)), clock,
                                rng.choice([None, "on my way", "parts needed"]))
        events.append(FormEvent(seq, device, op_ids[device], user, payload))  # type: ignore[arg-type]
    return events


def rendered(events: list[FormEvent]) -> str:
    forms = reconcile(events, member_at)
    return json.dumps([results(state, [1, 2, 3]) for _, state in sorted(
        forms.items(), key=lambda item: (item[0].device, item[0].op_id))], sort_keys=True)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=2**32), st.randoms(use_true_random=False))
def test_any_order_and_any_batches_give_identical_results(seed: int,
                                                          rng: random.Random) -> None:
    events = scenario(seed)
    expected = rendered(events)
    shuffled = events[:]
    rng.shuffle(shuffled)
    assert rendered(shuffled) == expected
    # Two replicas that got different batches first converge once they hold the same set.
    cut = rng.randrange(len(events))
    first, second = shuffled[:cut], shuffled[cut:]
    assert rendered(second + first) == expected


def test_payloads_round_trip() -> None:
    for payload in (POLL, SURVEY, JOB, FormClose(OpRef(11, 1)), FormReopen(OpRef(11, 1)),
                    FormResponse(OpRef(11, 2), {0: "ok", 3: [0, 2], 6: [-12345, 987]},
                                 (1000, 2)),
                    JobUpdate(OpRef(11, 3), JobStatus.DONE, (5, 0), "fixed")):
        assert parse_form_payload(encode_form_payload(payload)) == payload


def test_invalid_answers_are_ignored_identically_with_a_reason() -> None:
    poll = OpRef(11, 1)
    events = [
        FormEvent(1, 11, 1, 1, POLL),
        FormEvent(2, 21, 1, 2, FormResponse(poll, {0: 1}, (5, 0))),  # valid: ugali
        FormEvent(3, 31, 1, 3, FormResponse(poll, {0: 7}, (5, 0))),  # no such option
        FormEvent(4, 31, 2, 3, FormResponse(poll, {0: "rice"}, (5, 0))),  # wrong type
        FormEvent(5, 31, 3, 3, FormResponse(poll, {}, (5, 0))),  # required missing
        FormEvent(6, 91, 1, 9, FormResponse(poll, {0: 0}, (5, 0))),  # not a member
        FormEvent(7, 21, 2, 2, FormClose(poll)),  # not the creator
        FormEvent(8, 11, 2, 1, FormClose(poll)),
        FormEvent(9, 31, 4, 3, FormResponse(poll, {0: 2}, (9, 0))),  # after the close
        FormEvent(10, 11, 3, 1, FormReopen(poll)),
        FormEvent(11, 21, 3, 2, FormResponse(poll, {0: 2}, (1, 0))),  # older clock: loses
        # Same clock as seq 2: the higher device id (22) wins.
        FormEvent(12, 22, 1, 2, FormResponse(poll, {0: 0}, (5, 0))),
    ]
    state = reconcile(events, lambda user, seq: user in (1, 2, 3))[poll]
    assert state.records() == {2: {0: 0}}
    reasons = [reason for _, reason in state.ignored]
    assert len(reasons) == 6 and any("closed" in r for r in reasons)
    summary = results(state, [1, 2, 3])
    assert summary["responders"] == [2] and summary["not_answered"] == [1, 3]
    assert summary["fields"][0]["options"][0] == {"option": "rice", "count": 1,
                                                  "percent": "100.0"}


def test_numbers_render_the_same_everywhere() -> None:
    from fractions import Fraction

    assert percent(1, 3) == "33.3" and percent(2, 3) == "66.7" and percent(1, 8) == "12.5"
    assert decimal(Fraction(125, 10), 1) == "12.500" and decimal(Fraction(-1, 3), 0) == "-0.33"


def test_hostile_answers_are_ignored_never_crash() -> None:
    import pytest

    from protocol import ProtocolError

    survey = OpRef(11, 2)
    hostile: list[dict[int, object]] = [
        {0: "x", 3: [[0]]}, {0: "x", 3: [{}]}, {0: "x", 3: [0, 0]},
        {0: "x", 5: "\u0662\u0660\u0662\u0664-\u0660\u0661-\u0660\u0661"},  # not ASCII
        {0: "x", 5: "2026-02-30"}, {0: "x", 5: "9999-99-99"}, {0: "x", 6: [10**9, 0]},
        {0: "x", 1: True}, {0: "x", 4: 1}, {9: "x"},
    ]
    events = [FormEvent(2, 11, 2, 1, SURVEY)] + [
        FormEvent(10 + n, 21, 10 + n, 2, FormResponse(survey, answers, (1, 0)))
        for n, answers in enumerate(hostile)]
    state = reconcile(events, lambda user, seq: True)[survey]
    assert state.records() == {} and len(state.ignored) == len(hostile)
    ok = FormEvent(99, 21, 99, 2, FormResponse(survey, {0: "x", 5: "2024-02-29"}, (1, 0)))
    assert reconcile([*events, ok], lambda user, seq: True)[survey].records() == {
        2: {0: "x", 5: "2024-02-29"}}
    with pytest.raises(ProtocolError):  # a poll is one choice field named "choice"
        FormCreate(FormKind.POLL, "Q", (SurveyField("x", FieldType.TEXT),))
    with pytest.raises(ProtocolError):
        FormCreate(FormKind.SURVEY, "S", SURVEY.fields, assignees=(2,))


def test_ties_and_empty_comments() -> None:
    poll, job = OpRef(11, 1), OpRef(11, 3)
    events = [FormEvent(1, 11, 1, 1, POLL), FormEvent(3, 11, 3, 1, JOB),
              FormEvent(4, 21, 4, 2, FormResponse(poll, {0: 0}, (5, 0))),
              FormEvent(5, 21, 5, 2, FormResponse(poll, {0: 2}, (5, 0))),  # full tie: later wins
              FormEvent(6, 21, 6, 2, JobUpdate(job, JobStatus.DONE, (1, 0), ""))]
    forms = reconcile(events, lambda user, seq: True)
    assert forms[poll].records() == {2: {0: 2}}
    assert forms[job].comments == [(6, 2, "")]
