"""Wire cost of the protocol, measured by encoding real frames.

    python bench/wire_cost.py            print the tables, update SPEC.md and docs/BENCHMARKS.md
    python bench/wire_cost.py --check    exit 1 if SPEC.md's table is not what the code gives

Sizes are HTTP body bytes (HTTP headers are measured by the server benchmarks).
The byte counts are deterministic: the same code gives the same table on any
machine. The one timing here (refusing hostile 1 MiB inputs) goes to
docs/BENCHMARKS.md with the machine it ran on, never into the spec.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocol import (  # noqa: E402
    AuthedRequest,
    AuthedResponse,
    Candidate,
    ContentOp,
    Cursor,
    LaneBatch,
    OpType,
    ProtocolError,
    PulledOp,
    PushBlock,
    SyncRequest,
    SyncResponse,
    encode,
    loads,
    pack_response,
)
from protocol.limits import MAX_BUDGET  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from report import machine, replace_section, write_section  # noqa: E402

SPEC = ROOT / "protocol" / "SPEC.md"
BEGIN, END = "<!-- wire-cost:begin -->", "<!-- wire-cost:end -->"
BENCH_BEGIN, BENCH_END = "<!-- protocol-wire-cost:begin -->", "<!-- protocol-wire-cost:end -->"

CIPHERTEXT = 100  # bytes of ciphertext per op in the scenarios
SIGNATURE = 64
SESSION = 4242  # a session id below 65,536
COUNTER = 17  # a counter below 65,536
HIGH_WATER = 1_000_000  # a server that holds about a million ops
CONV = bytes.fromhex("7f3a9c0e51d2b864")


def request_size(body: SyncRequest) -> int:
    return len(encode(AuthedRequest(SESSION, COUNTER, encode(body), bytes(16))))


def response_size(body: SyncResponse) -> int:
    return len(encode(AuthedResponse(encode(body), bytes(16))))


def chat(op_id: int, size: int = CIPHERTEXT) -> ContentOp:
    return ContentOp(OpType.CHAT, op_id, bytes(size), bytes(SIGNATURE))


@dataclass(frozen=True)
class Row:
    what: str
    request: int | None
    response: int | None
    note: str = ""

    @property
    def total(self) -> int:
        return (self.request or 0) + (self.response or 0)


def pull(ops: list[tuple[bytes, PulledOp]]) -> SyncResponse:
    """A response delivering ``ops`` as the server packs them (budget large enough)."""
    candidates = [Candidate(conv, pulled) for conv, pulled in ops]
    top = max(p.seq for _, p in ops)
    return pack_response(acks=(), lanes=[LaneBatch(), LaneBatch(), LaneBatch(candidates),
                                         LaneBatch()],
                         cursor=Cursor.at(HIGH_WATER), high_water=top, budget=MAX_BUDGET)


def pull_one_conversation(count: int) -> SyncResponse:
    ops = [(CONV, PulledOp(HIGH_WATER + n, 301, chat(5000 + n))) for n in range(1, count + 1)]
    return pull(ops)


def pull_mixed(count: int, seed: int = 7) -> SyncResponse:
    """Ops from 4 conversations and 10 senders, with other traffic between them."""
    rng = random.Random(seed)
    convs = [rng.randbytes(8) for _ in range(4)]
    senders = {device: rng.randrange(1000, 60_000) for device in rng.sample(range(300, 2000), 10)}
    seq = HIGH_WATER
    ops = []
    for _ in range(count):
        seq += rng.randint(1, 40)
        device = rng.choice(list(senders))
        senders[device] += 1
        ops.append((rng.choice(convs), PulledOp(seq, device, chat(senders[device]))))
    return pull(ops)


def rows() -> list[Row]:
    empty_request = request_size(SyncRequest(cursor=Cursor.at(HIGH_WATER)))
    empty_response = response_size(SyncResponse(Cursor.at(HIGH_WATER)))
    one = SyncRequest(push=(PushBlock(CONV, (chat(5001),)),), cursor=Cursor.at(HIGH_WATER))
    one_ack = SyncResponse(Cursor.at(HIGH_WATER + 1), acks=(HIGH_WATER + 1,))
    batch = SyncRequest(push=(PushBlock(CONV, tuple(chat(5001 + n) for n in range(100))),),
                        cursor=Cursor.at(HIGH_WATER), budget=4096)
    batch_ack = SyncResponse(Cursor.at(HIGH_WATER + 100),
                             acks=tuple(HIGH_WATER + 1 + n for n in range(100)))
    payload = CIPHERTEXT + SIGNATURE
    one_request = request_size(one)
    pull_1 = response_size(pull_one_conversation(100))
    pull_4 = response_size(pull_mixed(100))
    batch_request = request_size(batch)
    empty_budget_request = request_size(SyncRequest(cursor=Cursor.at(HIGH_WATER), budget=4096))

    def per_op(total: int, empty: int, count: int) -> str:
        return f"{(total - empty - count * payload) / count:.1f}"

    empty_body = len(encode(SyncRequest(cursor=Cursor.at(HIGH_WATER))))
    empty_reply_body = len(encode(SyncResponse(Cursor.at(HIGH_WATER))))
    return [
        Row("empty sync (cursor at 1,000,000, default budget)", empty_request, empty_response,
            f"bodies {empty_body} + {empty_reply_body} B; authenticated framing "
            f"{empty_request - empty_body} + {empty_response - empty_reply_body} B"),
        Row("push 1 op (100 B ciphertext + 64 B signature), its ack", one_request,
            response_size(one_ack),
            f"op framing {one_request - empty_request - payload} B incl. its 8 B conversation id"),
        Row("push 100 ops in one request, their acks", batch_request, response_size(batch_ack),
            f"framing per op {per_op(batch_request, empty_budget_request, 100)} B"),
        Row("pull 100 ops, one conversation", None, pull_1,
            f"framing per op {per_op(pull_1, empty_response, 100)} B"),
        Row("pull 100 ops, 4 conversations, 10 senders, interleaved", None, pull_4,
            f"framing per op {per_op(pull_4, empty_response, 100)} B"),
    ]


def overhead_per_op() -> dict[str, float]:
    """Framing bytes per op beyond ciphertext and signature, for the targets."""
    payload = CIPHERTEXT + SIGNATURE
    empty_response = response_size(SyncResponse(Cursor.at(HIGH_WATER)))
    return {
        "pull, one conversation": (response_size(pull_one_conversation(100)) - empty_response
                                   - 100 * payload) / 100,
        "pull, mixed": (response_size(pull_mixed(100)) - empty_response - 100 * payload) / 100,
    }


def empty_exchange() -> int:
    return rows()[0].total


def render_table() -> str:
    def cell(value: int | None) -> str:
        return "" if value is None else str(value)

    lines = [
        "| exchange | request body | response body | total | note |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row in rows():
        lines.append(f"| {row.what} | {cell(row.request)} | {cell(row.response)} | {row.total} "
                     f"| {row.note} |")
    return "\n".join(lines)


def render_vector_table() -> str:
    import json

    vectors = json.loads((ROOT / "protocol" / "vectors" / "valid.json").read_text())["vectors"]
    lines = ["| vector | frame | bytes |", "| --- | --- | ---: |"]
    lines += [f"| `{v['name']}` | `{v['rule']}` | {v['size']} |" for v in vectors]
    return "\n".join(lines)


def spec_section() -> str:
    return (f"{BEGIN}\n<!-- written by bench/wire_cost.py; do not edit by hand -->\n\n"
            f"{render_table()}\n\nEvery vector in `protocol/vectors/valid.json`:\n\n"
            f"{render_vector_table()}\n{END}")


def hostile_inputs() -> dict[str, Callable[[int], bytes]]:
    return {
        "nesting as deep as the input": lambda n: b"\x81" * n,
        "array declaring 2^63 items": lambda n: b"\x9b" + (2**63).to_bytes(8, "big") + bytes(n - 9),
        "bstr declaring 2^40 bytes": lambda n: b"\x5b" + (2**40).to_bytes(8, "big") + bytes(n - 9),
        "65,535 empty arrays then junk": lambda n: b"\x99\xff\xff" + b"\x80" * (n - 3),
    }


def time_refusals() -> list[tuple[str, float]]:  # microseconds
    """Median time to refuse each hostile 1 MiB input, with the size limit raised past it."""
    results = []
    for name, make in hostile_inputs().items():
        data = make(1024 * 1024)
        samples = []
        for _ in range(7):
            started = time.perf_counter()
            with contextlib.suppress(ProtocolError):
                loads(data, max_bytes=2 * 1024 * 1024)
            samples.append(time.perf_counter() - started)
        results.append((name, statistics.median(samples) * 1_000_000))
    return results


def benchmarks_section() -> str:
    timings = "\n".join(f"| {name} | {us:,.0f} |" for name, us in time_refusals())
    return (f"{BENCH_BEGIN}\n## Protocol wire cost\n\nMeasured {datetime.now(UTC):%Y-%m-%d} by "
            f"`python bench/wire_cost.py` on {machine()}.\n\nHTTP body bytes "
            f"(deterministic; also in `protocol/SPEC.md`):\n\n{render_table()}\n\n"
            f"Time to refuse a hostile 1 MiB body when the size limit is raised above it (the "
            f"default limit refuses it before decoding); median of 7:\n\n"
            f"| input | µs |\n| --- | ---: |\n{timings}\n{BENCH_END}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check SPEC.md is current")
    args = parser.parse_args(argv)
    spec = SPEC.read_text()
    wanted = replace_section(spec, spec_section(), BEGIN, END)
    if args.check:
        if wanted != spec:
            print("protocol/SPEC.md wire-cost table is stale: run python bench/wire_cost.py")
            return 1
        return 0
    print(render_table())
    print()
    for name, value in overhead_per_op().items():
        print(f"framing per op, {name}: {value:.1f} B (target <= 16)")
    print(f"empty sync exchange: {empty_exchange()} B (target <= 64)")
    SPEC.write_text(wanted)
    section = benchmarks_section()
    write_section(section, BENCH_BEGIN, BENCH_END)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
