"""Forms on the wire: a 5-question survey sent to 50 members, and the 50 responses.

    python bench/forms_bench.py

Runs a real server on loopback and real reference clients (encryption and
signatures included). Bytes are counted by the link emulator on the TCP
stream, HTTP headers included; the catch-up is timed through the GPRS profile
(40 kbit/s down, 20 up, 800 ms round trip). Writes its table to
docs/BENCHMARKS.md. Not part of CI.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clients.reference.client import Client  # noqa: E402
from clients.reference.connection import Connection  # noqa: E402
from clients.reference.forms import Forms  # noqa: E402
from tests.support.linkemu import PROFILES, LinkEmulator, ThreadedLink  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from report import machine, write_section  # noqa: E402

BEGIN, END = "<!-- forms-bench:begin -->", "<!-- forms-bench:end -->"
RESPONDERS = 50
FIELDS = ["visits:number:required", "stock ok:yesno", "services:multi:vaccines|antenatal|malaria",
          "notes:text", "next visit:date"]


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        server = ServerProcess(base / "forms.db").start()
        try:
            def enrol(n: int) -> Client:
                phone = f"+25479{n:07d}"
                return Client.init(base / f"home{n}", server.url, phone, server.invite(phone))

            creator = enrol(0)
            members = [enrol(n) for n in range(1, RESPONDERS + 1)]
            conv = creator.create_group("District clinics", [m.phone for m in members])
            creator.sync()
            for member in members:
                member.sync()
            with ThreadedLink(LinkEmulator("127.0.0.1", server.port)) as link:
                creator.use_connection(Connection(link.url))
                creator.sync()
                before = link.counters.snapshot()
                survey = Forms(creator).create_survey(conv, "Weekly clinic report", FIELDS)
                creator.sync()
                after = link.counters.snapshot()
                create_bytes = (after[0] - before[0]) + (after[1] - before[1])
            for n, member in enumerate(members):
                member.sync()
                Forms(member).respond(survey, [f"visits={10 + n}", "stock ok=yes",
                                               "services=vaccines,malaria",
                                               "notes=cold chain fine", "next visit=2026-12-01"])
                member.sync()
            with ThreadedLink(LinkEmulator("127.0.0.1", server.port, PROFILES["gprs"])) as link:
                creator.use_connection(Connection(link.url, timeout=60))
                before = link.counters.snapshot()
                started = time.monotonic()
                # The creator has been offline while all 50 answered; now it catches up.
                creator.store.put("refreshed_at", int(time.time()))
                report = creator.sync(budget=8 * 1024, timeout=600)
                elapsed = time.monotonic() - started
                after = link.counters.snapshot()
            results = Forms(creator).results(survey)
            assert len(results["responders"]) == RESPONDERS, results["responders"]
            catch_up = (after[0] - before[0]) + (after[1] - before[1])
            for client in (creator, *members):
                client.close()
        finally:
            server.stop()
    lines = [BEGIN, "## Forms", "",
             f"Measured {datetime.now(UTC):%Y-%m-%d} by `python bench/forms_bench.py` on "
             f"{machine()}. Real clients: every payload encrypted and signed; bytes on the "
             "TCP stream, HTTP headers included.", "",
             "| what | bytes | per response | time on GPRS |", "| --- | ---: | ---: | ---: |",
             f"| create a 5-question survey in a group of {RESPONDERS + 1} (push, envelopes "
             f"already sent) | {create_bytes:,} | | |",
             f"| the creator catches up on {RESPONDERS} responses | {catch_up:,} | "
             f"{catch_up / RESPONDERS:,.1f} | {elapsed:.1f} s, "
             f"{report['round_trips']} round trip(s) |", "",
             "A response carries five answers, a hybrid clock and its form reference, "
             "encrypted (16-byte tag) and signed (64 bytes). The GPRS floor for the catch-up "
             f"is {catch_up * 8 / 40_000:.1f} s of transfer plus 0.8 s per round trip.", END]
    section = "\n".join(lines)
    print(section)
    write_section(section, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
