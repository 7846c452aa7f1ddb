"""Messages as every client shows them: edits and deletes resolved the same way everywhere.

Theory of operation (SPEC.md section 10, "Messages"). A conversation's
messages are computed from the set of message ops a client holds, taken in
seq order, so clients holding the same ops show the same conversation. An
edit or a delete counts only when its author is the same user as the
target's author; among those that count, the later one (by seq) wins, so an
edit after a delete brings the message back with the new text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .e2e import MessageBody, MessageKind, OpRef

__all__ = ["MessageEvent", "MessageView", "reconcile_messages"]


@dataclass(frozen=True, slots=True)
class MessageEvent:
    seq: int
    device: int
    op_id: int
    user: int
    body: MessageBody


@dataclass(slots=True)
class MessageView:
    ref: OpRef
    seq: int
    user: int
    text: str | None
    reply_to: OpRef | None
    sent_at: int | None
    edited: bool = False
    deleted: bool = False


def reconcile_messages(events: Iterable[MessageEvent]) -> list[MessageView]:
    """The text messages of a conversation in seq order, edits and deletes applied."""
    views: dict[OpRef, MessageView] = {}
    for event in sorted(events, key=lambda e: (e.seq, e.device, e.op_id)):
        body = event.body
        if body.kind is MessageKind.TEXT:
            ref = OpRef(event.device, event.op_id)
            views[ref] = MessageView(ref, event.seq, event.user, body.text, body.reply_to,
                                     body.sent_at)
        elif body.kind in (MessageKind.EDIT, MessageKind.DELETE) and body.target is not None:
            target = views.get(body.target)
            if target is None or target.user != event.user:
                continue  # only the author's own edits and deletes count
            if body.kind is MessageKind.EDIT:
                target.text, target.edited, target.deleted = body.text, True, False
            else:
                target.text, target.deleted = None, True
    return sorted(views.values(), key=lambda v: (v.seq, v.ref.device, v.ref.op_id))
