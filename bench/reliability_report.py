"""Run the reliability suites with large settings and publish what they counted.

    python bench/reliability_report.py            # the published run (about half an hour)
    python bench/reliability_report.py --quick    # CI-sized settings, to try it out

Each suite appends JSON lines of what it measured (``tests/support/report.py``)
when ``SYNCD_REPORT`` names a file; this script runs the suites with that set,
adds the lines up and writes ``docs/RELIABILITY.md``. Nothing in that file is
typed in: every figure comes from the run it names.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine

ROOT = Path(__file__).resolve().parents[1]
RELIABILITY = ROOT / "docs" / "RELIABILITY.md"


def run_suite(paths: list[str], env: dict[str, str], report: Path) -> tuple[bool, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *paths], cwd=ROOT, env={**os.environ, **env,
                                                   "SYNCD_REPORT": str(report)}, check=False)
    return done.returncode == 0, time.monotonic() - started


def load(report: Path) -> dict[str, list[dict[str, Any]]]:
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if report.exists():
        for line in report.read_text().splitlines():
            entry = json.loads(line)
            lines[entry.pop("suite")].append(entry)
    return lines


def total(entries: list[dict[str, Any]], key: str) -> int:
    return sum(int(entry.get(key, 0)) for entry in entries)


def sqlite_settings() -> str:
    with sqlite3.connect(":memory:") as db:
        compile_options = [row[0] for row in db.execute("PRAGMA compile_options")]
    threadsafe = next((o for o in compile_options if o.startswith("THREADSAFE")), "")
    return (f"SQLite {sqlite3.sqlite_version} ({threadsafe}); the server opens it with "
            "`journal_mode=WAL`, `synchronous=FULL` (every commit fsyncs the WAL before "
            "the ack), `foreign_keys=ON`, `busy_timeout=5000`, one writer connection and "
            "two read-only readers.")


def render(suites: dict[str, list[dict[str, Any]]], runs: list[tuple[str, bool, float]],
           settings: dict[str, str]) -> str:
    date = datetime.date.today().isoformat()
    out = [
        "# Reliability",
        "",
        f"Measured {date} by `python bench/reliability_report.py"
        f"{' --quick' if settings.get('quick') else ''}` on {machine()}. "
        "The machine is shared; the suites assert exactness (no loss, no duplicate), "
        "not speed.",
        "",
        "| suite | settings | result | minutes |",
        "| --- | --- | --- | ---: |",
    ]
    for name, ok, seconds in runs:
        out.append(f"| `{name}` | {settings.get(name, '')} | {'pass' if ok else 'FAIL'} | "
                   f"{seconds / 60:.1f} |")
    kill = suites.get("sigkill", [])
    if kill:
        out += ["", "## SIGKILL under load (`tests/reliability/test_kill.py`)", "",
                "Four devices push three ops per sync in a loop and a fifth only pulls, "
                "while the server is killed with SIGKILL at random moments and restarted. "
                "After every kill the database is checked: every acked op present with the "
                "seq its ack carried, every push whole or absent, `PRAGMA integrity_check` "
                "ok. At the end the pulling device holds every stored op exactly once.", "",
                "| kills survived | ops sent | ops acked | acked ops lost | duplicated | "
                "ops delivered to the puller | retries through kills |",
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
                f"| {total(kill, 'kills')} | {total(kill, 'ops_sent')} | "
                f"{total(kill, 'ops_acked')} | {total(kill, 'ops_lost')} | "
                f"{total(kill, 'ops_duplicated')} | {total(kill, 'delivered')} | "
                f"{total(kill, 'retries')} |"]
    sim = suites.get("simulation", [])
    if sim:
        keys = sorted({k for entry in sim for k in entry if k not in ("at",)})
        out += ["", "## Deterministic simulation (`tests/simulation/`)", "",
                "Seeded runs of the real sync service and SQLite storage under a virtual "
                "network that drops, duplicates, delays, reorders and truncates, with "
                "server crashes; invariants checked after every run (see the suite's "
                "docstring).", "",
                "| " + " | ".join(keys) + " |", "| " + " | ".join("---:" for _ in keys) + " |",
                "| " + " | ".join(str(total(sim, k)) if all(
                    isinstance(e.get(k, 0), int) for e in sim) else str(sim[-1].get(k, ""))
                    for k in keys) + " |"]
    fuzz = suites.get("fuzz", [])
    if fuzz:
        out += ["", "## Fuzzing (`tests/fuzz/`)", "",
                "Hostile CBOR from hypothesis strategies (deep nesting, huge declared "
                "lengths, indefinite lengths, tags, duplicate keys, non-minimal heads, "
                "invalid UTF-8, truncations and splices of valid frames) against every "
                "decoder and the live HTTP endpoint. Pass: only typed protocol errors and "
                "4xx, no crash, no 500, bounded time and memory per input. The atheris "
                "harness's runs are in `docs/FUZZING.md`.", "",
                "| examples per property | decoder inputs | HTTP requests | failures |",
                "| ---: | ---: | ---: | ---: |",
                f"| {fuzz[-1]['examples_per_test']} | {total(fuzz, 'decodes')} | "
                f"{total(fuzz, 'requests')} | {total(fuzz, 'failures')} |"]
    overload = suites.get("overload", [])
    if overload:
        last = overload[-1]
        statuses = ", ".join(f"{k}: {v}" for k, v in last["statuses"].items())
        out += ["", "## Overload (`tests/reliability/test_overload.py`)", "",
                f"{last['clients']} devices push as fast as they can at a server that takes "
                f"{last['max_inflight']} requests at once, for {last['seconds']} s.", "",
                "| answers | 500s | acked | acked lost | refusal p50 / p99 | accepted p50 | "
                "empty sync before / after |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
                f"| {statuses} | {last['status_500']} | {last['ops_acked']} | "
                f"{last['ops_lost']} | {last['refusal_p50_ms']} / {last['refusal_p99_ms']} ms | "
                f"{last['accepted_p50_ms']} ms | {last['sync_before_ms']} / "
                f"{last['sync_after_ms']} ms |"]
    slow = suites.get("slow_clients", [])
    if slow:
        last = slow[-1]
        out += ["", "## Slow and oversize clients (`tests/reliability/test_slow_clients.py`)",
                "", f"{last['tricklers']} clients trickle a request a byte at a time and "
                f"{last['oversize']} send bodies over the limit, while a normal phone syncs "
                "every 50 ms.", "",
                "| read deadline | tricklers cut | oversize refused (413) | normal syncs | "
                "failed | normal p50 / p99 | normal p50 before |",
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
                f"| {last['read_deadline_s']} s | {last['tricklers']} | "
                f"{last['oversize_refused_413']} | {last['normal_syncs']} | "
                f"{last['normal_failures']} | {last['normal_p50_ms']} / "
                f"{last['normal_p99_ms']} ms | {last['baseline_p50_ms']} ms |"]
    disk = suites.get("disk_full", [])
    if disk:
        last = disk[-1]
        out += ["", "## Full disk (`tests/reliability/test_disk.py`)", "",
                f"The database on a tmpfs of {last['filesystem_bytes'] // 1024} KiB, filled "
                "by three devices pushing; then a ballast file is deleted and the same server "
                "takes pushes again. A second test injects an I/O error at one commit.", "",
                "| acked before full | 503 refusals | acked lost | recovered without restart |",
                "| ---: | ---: | ---: | --- |",
                f"| {last['ops_acked']} | {last['refusals_503']} | {last['ops_lost']} | "
                f"{'yes' if last['recovered'] else 'no'} |"]
    out += ["", "## Storage settings", "", sqlite_settings(), ""]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI-sized settings")
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--sim-seeds", type=int, default=2000)
    parser.add_argument("--fuzz-examples", type=int, default=5000)
    parser.add_argument("--output", type=Path, default=RELIABILITY)
    args = parser.parse_args()
    if args.quick:
        args.kills, args.sim_seeds, args.fuzz_examples = 20, 30, 200
    plan = [
        ("tests/reliability", {"SYNCD_SOAK_KILLS": str(args.kills)},
         f"{args.kills} kills"),
        ("tests/simulation", {"SYNCD_SIM_SEEDS": str(args.sim_seeds)},
         f"{args.sim_seeds} seeds"),
        ("tests/fuzz", {"SYNCD_FUZZ_EXAMPLES": str(args.fuzz_examples)},
         f"{args.fuzz_examples} examples per property"),
    ]
    runs = []
    settings: dict[str, str] = {"quick": "yes"} if args.quick else {}
    with tempfile.TemporaryDirectory() as work:
        report = Path(work) / "report.jsonl"
        for path, env, described in plan:
            if not (ROOT / path).exists():
                continue
            ok, seconds = run_suite([path], env, report)
            runs.append((path, ok, seconds))
            settings[path] = described
        suites = load(report)
    args.output.write_text(render(suites, runs, settings))
    print(args.output.read_text())
    return 0 if all(ok for _, ok, _ in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
