"""How much fuzzing a run does, and how it stays reproducible.

``SYNCD_FUZZ_EXAMPLES`` sets hypothesis's ``max_examples`` for every fuzz
test (default 100: the whole ``tests/fuzz`` directory then runs in well under
a minute on two cores). A large value, e.g. ``SYNCD_FUZZ_EXAMPLES=5000``,
runs thousands of inputs per test.

Runs are derandomized by default, so CI sees the same inputs every time and a
failure reproduces by running the same test again; the failing input is
printed as hex. ``SYNCD_FUZZ_RANDOM=1`` draws fresh inputs instead (hypothesis
then prints the ``@reproduce_failure`` blob to pin a failure down).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("SYNCD_FUZZ_EXAMPLES", "100"))
RANDOM = os.environ.get("SYNCD_FUZZ_RANDOM", "") not in ("", "0")

# Generous bounds for a loaded CI machine: they catch blow-ups (a quadratic
# path, an allocation sized by a declared length), not micro-regressions.
MAX_DECODE_SECONDS = 1.0  # plus DECODE_SECONDS_PER_MIB for each MiB of input
DECODE_SECONDS_PER_MIB = 16.0  # a full 256 KiB body of nested arrays takes ~0.5 s idle


def decode_seconds_bound(size: int) -> float:
    """Linear in the input: a blow-up (quadratic, or sized by a declared length) exceeds it,
    a loaded CI machine decoding the largest legal body does not."""
    return MAX_DECODE_SECONDS + DECODE_SECONDS_PER_MIB * size / (1 << 20)
MAX_HTTP_SECONDS = 10.0
# Decoding builds Python objects: an empty map costs ~64 bytes for one byte of
# input, plus its slot in the parent. The measured worst case is ~100 bytes
# per input byte (a body of one-entry maps holding empty maps); past this
# bound something allocates by what a head declares rather than what is there.
MAX_BYTES_PER_INPUT_BYTE = 128
MEMORY_SLACK_BYTES = 1 << 20

# What this run fed the targets, for docs/RELIABILITY.md (tests/support/report.py).
COUNTS = {"decodes": 0, "requests": 0}


def fuzz_settings(examples: int = EXAMPLES) -> settings:
    """Hypothesis settings for one fuzz test: bounded, reproducible, no shared database."""
    return settings(
        max_examples=examples,
        derandomize=not RANDOM,
        database=None,
        deadline=None,  # timing is asserted per input, measured, not by hypothesis
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much],
    )
