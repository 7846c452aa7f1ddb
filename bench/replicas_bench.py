"""Replicas: syncs and ops per second on SQLite, on one PostgreSQL replica and on two,
and long-poll wake-up latency within a server and across replicas.

    python bench/replicas_bench.py            # writes its section of docs/BENCHMARKS.md
    python bench/replicas_bench.py --quick    # shorter runs, for trying it out

PostgreSQL comes from ``SYNCD_TEST_POSTGRES_URL`` if set, else from a
throw-away cluster this script starts (``tests/support/postgres.py``). Every
server, the database and the load generator share this machine's cores: the
figures compare configurations on one machine, they do not show what more
machines would add.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocol import Role  # noqa: E402
from tests.support.device import Device  # noqa: E402
from tests.support.postgres import (  # noqa: E402
    URL_VARIABLE,
    PostgresCluster,
    create_database,
    drop_database,
    find_binaries,
)
from tests.support.server import ServerProcess  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from loadgen import percentile  # noqa: E402
from report import machine, write_section  # noqa: E402
from server_bench import LoadResult, load  # noqa: E402

BEGIN, END = "<!-- replicas-bench:begin -->", "<!-- replicas-bench:end -->"
CLIENTS = 16


def enrol(servers: list[ServerProcess], n: int) -> Device:
    phone = f"+2549{n:08d}"
    home = servers[n % len(servers)]
    return Device.enrol(home.url, phone, servers[0].invite(phone))


def throughput(servers: list[ServerProcess], seconds: float) -> dict[str, LoadResult]:
    devices = [enrol(servers, n) for n in range(CLIENTS)]
    owner = devices[0]
    conv, create = owner.create({d.user_id: Role.MEMBER for d in devices[1:]})
    owner.push(conv, create)
    for device in devices:
        device.drain()
    results = {"empty": asyncio.run(load(devices, conv, seconds, 0, "empty syncs"))}
    results["push1"] = asyncio.run(load(devices, conv, seconds, 1, "1-op pushes"))
    for device in devices:
        device.drain()
    results["push20"] = asyncio.run(load(devices, conv, seconds, 20, "20-op pushes"))
    return results


def wakeups(waiting_on: ServerProcess, pushing_to: ServerProcess, rounds: int,
            offset: int) -> list[float]:
    """Seconds from a push to replica B until a sync waiting on replica A has it."""
    waiter = enrol([waiting_on], offset)
    sender = Device.enrol(pushing_to.url, f"+2549{offset + 1:08d}",
                          waiting_on.invite(f"+2549{offset + 1:08d}"))
    conv, create = sender.create({waiter.user_id: Role.MEMBER})
    sender.push(conv, create)
    waiter.drain()
    latencies = []
    for n in range(rounds):
        done: dict[str, float] = {}

        def wait(done: dict[str, float] = done) -> None:
            response = waiter.sync(wait=20)
            done["at"] = time.monotonic()
            assert response.op_count == 1

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.2)
        op = sender.chat(conv, f"wake {n}".encode())
        pushed = time.monotonic()
        sender.push(conv, op)
        thread.join(timeout=30)
        latencies.append(done["at"] - pushed)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seconds, rounds = (3.0, 20) if args.quick else (10.0, 100)
    work = Path(tempfile.mkdtemp(prefix="syncd-replicas-"))
    cluster = None
    server_url = os.environ.get(URL_VARIABLE)
    if not server_url:
        binaries = find_binaries()
        if binaries is None:
            print("PostgreSQL binaries not found", file=sys.stderr)
            return 1
        cluster = PostgresCluster(Path(tempfile.mkdtemp(prefix="syncd-pg-")), binaries)
        cluster.start()
        server_url = cluster.url
    rows: list[tuple[str, dict[str, LoadResult]]] = []
    wake: list[tuple[str, list[float]]] = []
    try:
        sqlite_server = ServerProcess(work / "bench.db").start()
        try:
            rows.append(("SQLite, one server", throughput([sqlite_server], seconds)))
            wake.append(("SQLite, one server (in-process notifier)",
                         wakeups(sqlite_server, sqlite_server, rounds, 500)))
        finally:
            sqlite_server.stop()
        for count in (1, 2):
            url = create_database(server_url)
            servers = [ServerProcess(work / f"pg{count}-{n}.db", database=url).start()
                       for n in range(count)]
            try:
                label = f"PostgreSQL, {count} replica{'s' if count > 1 else ''}"
                rows.append((label, throughput(servers, seconds)))
                if count == 2:
                    wake.append(("PostgreSQL, wait on replica A, push to B (LISTEN/NOTIFY)",
                                 wakeups(servers[0], servers[1], rounds, 600)))
            finally:
                for server in servers:
                    server.stop()
                drop_database(server_url, url)
    finally:
        if cluster is not None:
            cluster.stop()
            shutil.rmtree(cluster.root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    date = datetime.now(UTC).date().isoformat()
    lines = [
        BEGIN,
        "## Replicas on PostgreSQL",
        "",
        f"Measured {date} by `python bench/replicas_bench.py"
        f"{' --quick' if args.quick else ''}` on {machine()}. {CLIENTS} devices spread "
        f"evenly over the replicas, each in a loop of syncs for {seconds:.0f} s per row; "
        "the servers, PostgreSQL and the load generator all share this machine's cores, so "
        "a second replica here shows the cost of coordination, not the gain of a second "
        "machine. PostgreSQL runs with its defaults (`synchronous_commit=on`, `fsync=on`).",
        "",
        "| configuration | empty syncs/s | p50 ms | 1-op pushes: ops/s | p50 ms "
        "| 20-op pushes: ops/s | p50 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, result in rows:
        empty, one, twenty = result["empty"], result["push1"], result["push20"]
        lines.append(f"| {label} | {empty.syncs_per_s:.0f} | {empty.p50_ms:.1f} | "
                     f"{one.ops_per_s:.0f} | {one.p50_ms:.1f} | "
                     f"{twenty.ops_per_s:.0f} | {twenty.p50_ms:.1f} |")
    lines += ["", f"Long-poll wake-up: from sending a push until a sync waiting with "
              f"`wait=20` has the op, {rounds} rounds (the push's own round trip included).",
              "", "| path | p50 ms | p99 ms |", "| --- | ---: | ---: |"]
    for label, latencies in wake:
        lines.append(f"| {label} | {1000 * statistics.median(latencies):.1f} | "
                     f"{1000 * percentile(sorted(latencies), 0.99):.1f} |")
    lines.append(END)
    section = "\n".join(lines)
    print(section)
    write_section(section, BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
