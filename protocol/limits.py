"""Limits of protocol version 1 (SPEC.md, "Limits").

What happens past each: a body over ``MAX_BODY_BYTES`` is refused before it is
decoded (``too_large``, 413); every other limit is checked while decoding
(``limit_exceeded``, 400). Nothing of a refused request is applied.
"""

from __future__ import annotations

__all__ = [
    "ACK_BUDGET_BYTES",
    "DEFAULT_BUDGET",
    "MAX_BODY_BYTES",
    "MAX_BUDGET",
    "MAX_CODE_BYTES",
    "MAX_DEPTH",
    "MAX_DEVICES_PER_USER",
    "MAX_ERROR_MESSAGE_BYTES",
    "MAX_LOOKUP",
    "MAX_MEMBERS_PER_CHANGE",
    "MAX_OPS_PER_PUSH",
    "MAX_PAYLOAD_BYTES",
    "MAX_PHONE_BYTES",
    "MAX_RESPONSE_BYTES",
    "MAX_TEXT_BYTES",
    "MAX_UINT",
    "MAX_VERSIONS_LISTED",
    "MAX_WAIT_SECONDS",
    "MIN_BUDGET",
    "SUPPORTED_VERSIONS",
    "VERSION",
]

VERSION = 1
"""The protocol version this package speaks."""

SUPPORTED_VERSIONS = (1,)

MAX_BODY_BYTES = 256 * 1024
"""Largest request body a server accepts by default (servers may lower it)."""

MAX_DEPTH = 8
"""Deepest nesting of arrays and maps in any frame (the deepest legal frame uses 7)."""

MAX_UINT = 2**63 - 1
"""Largest id, sequence number, counter or op id (fits a signed 64-bit column)."""

MAX_OPS_PER_PUSH = 256
MAX_PAYLOAD_BYTES = 64 * 1024
"""Largest ciphertext of one op (content payload or sealed key envelope)."""

MAX_MEMBERS_PER_CHANGE = 1024
MAX_DEVICES_PER_USER = 256
"""Most devices one user entry of the directory lists (revoked ones included)."""

MAX_LOOKUP = 64
"""Most users one directory request may name."""

MAX_TEXT_BYTES = 16 * 1024
"""Longest message text (UTF-8 bytes), inside the encryption."""

MAX_PHONE_BYTES = 32
MAX_CODE_BYTES = 64
MAX_ERROR_MESSAGE_BYTES = 200

MIN_BUDGET = 128
"""Smallest response budget: room for the fixed part of any sync response."""

ACK_BUDGET_BYTES = 9
"""Budget a request must add per pushed op, so every ack always fits."""

DEFAULT_BUDGET = 16 * 1024
"""Budget assumed when a sync request carries none."""

MAX_BUDGET = 4 * 1024 * 1024
"""Budgets above this are treated as this (a server never sends more)."""

MAX_RESPONSE_BYTES = MAX_BUDGET + MAX_PAYLOAD_BYTES + 1024
"""Largest response a client must accept: the largest budget, plus one op sent alone
past it (the budget's one exception), plus framing."""

MAX_VERSIONS_LISTED = 16

MAX_WAIT_SECONDS = 300
"""Longest long-poll wait a request may ask for; servers may hold for less."""
