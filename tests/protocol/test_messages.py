"""Messages converge: any order of the same ops gives the same conversation."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.e2e import MessageBody, MessageKind, OpRef
from protocol.messages import MessageEvent, reconcile_messages


def scenario(seed: int) -> list[MessageEvent]:
    rng = random.Random(seed)
    events: list[MessageEvent] = []
    texts: list[OpRef] = []
    for seq in range(1, 80):
        user = rng.choice([1, 2, 3])
        device = user * 10 + rng.choice([0, 1])
        roll = rng.random()
        if roll < 0.5 or not texts:
            body = MessageBody(MessageKind.TEXT, f"m{seq}",
                               reply_to=rng.choice([None, *texts[-3:]]), sent_at=seq)
            texts.append(OpRef(device, seq))
        elif roll < 0.8:
            body = MessageBody(MessageKind.EDIT, f"edit {seq}", target=rng.choice(texts))
        else:
            body = MessageBody(MessageKind.DELETE, target=rng.choice(texts))
        events.append(MessageEvent(seq, device, seq, user, body))
    return events


@settings(max_examples=80, deadline=None)
@given(st.integers(min_value=0, max_value=2**32), st.randoms(use_true_random=False))
def test_any_order_gives_the_same_conversation(seed: int, rng: random.Random) -> None:
    events = scenario(seed)
    expected = reconcile_messages(events)
    shuffled = events[:]
    rng.shuffle(shuffled)
    assert reconcile_messages(shuffled) == expected


def test_only_the_author_edits_and_the_latest_wins() -> None:
    first = OpRef(10, 1)
    events = [
        MessageEvent(1, 10, 1, 1, MessageBody(MessageKind.TEXT, "hello")),
        MessageEvent(2, 20, 2, 2, MessageBody(MessageKind.EDIT, "hijack", target=first)),
        MessageEvent(3, 11, 3, 1, MessageBody(MessageKind.DELETE, target=first)),  # same user
        MessageEvent(4, 10, 4, 1, MessageBody(MessageKind.EDIT, "hello again", target=first)),
    ]
    (view,) = reconcile_messages(reversed(events))
    assert (view.text, view.edited, view.deleted) == ("hello again", True, False)
    (without_last,) = reconcile_messages(events[:3])
    assert without_last.deleted and without_last.text is None
