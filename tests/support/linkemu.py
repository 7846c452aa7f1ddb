"""A 2G link emulator: an asyncio TCP proxy on loopback.

It sits between a client and a server and can cap bandwidth per direction,
add latency, cut a connection after a number of bytes (mid-request or
mid-response), and count the bytes of each direction (HTTP headers
included: it sees the TCP stream). Profiles follow the brief:

    profile  down        up          round trip  cuts
    gprs     40 kbit/s   20 kbit/s   800 ms      connections cut mid-transfer
    edge     240 kbit/s  200 kbit/s  400 ms      occasional cuts

Bandwidth is modelled as a serial link per direction: a chunk finishes
transmitting ``len * 8 / bps`` seconds after the link is free, then arrives
half a round trip later, while the next chunk is already on its way (the
latency is paid once per burst, not once per chunk). Order is preserved.
Cuts close both sides at once (an abort, like a lost radio bearer). The
emulator only ever connects to the target it was given, on loopback.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["PROFILES", "LinkEmulator", "Profile", "ThreadedLink"]

CHUNK = 1024


@dataclass(frozen=True)
class Profile:
    name: str
    down_bps: float  # server to client
    up_bps: float  # client to server
    rtt: float  # seconds
    cut_probability: float = 0.0  # chance that a new connection is cut at some point

    def one_way(self) -> float:
        return self.rtt / 2


PROFILES = {
    "gprs": Profile("gprs", 40_000, 20_000, 0.8, cut_probability=0.2),
    "edge": Profile("edge", 240_000, 200_000, 0.4, cut_probability=0.05),
    "loopback": Profile("loopback", 0, 0, 0.0),
}

# A cut plan for one connection: (direction, after this many bytes) or None.
CutPlan = tuple[str, int] | None
# What travels between reading a chunk and delivering it: (arrival time, bytes), the
# read error that ended the stream, or None at its clean end.
InFlight = tuple[float, bytes] | BaseException | None


@dataclass
class Counters:
    up: int = 0
    down: int = 0
    connections: int = 0
    cuts: int = 0

    def snapshot(self) -> tuple[int, int]:
        return self.up, self.down


@dataclass
class LinkEmulator:
    target_host: str
    target_port: int
    profile: Profile = PROFILES["loopback"]
    seed: int = 0
    plan: Callable[[random.Random, int], CutPlan] | None = None
    counters: Counters = field(default_factory=Counters)
    # Further servers (on the same host) to try, in order, when the target refuses a
    # connection: a load balancer's failover between replicas.
    fallback_ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.target_host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the link emulator only forwards to loopback")
        self.rng = random.Random(self.seed)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    def default_plan(self, rng: random.Random, index: int) -> CutPlan:
        if rng.random() >= self.profile.cut_probability:
            return None
        return (rng.choice(["up", "down"]), rng.randint(1, 4000))

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        index = self.counters.connections
        self.counters.connections += 1
        plan = (self.plan or self.default_plan)(self.rng, index)
        for port in (self.target_port, *self.fallback_ports):
            try:
                server_reader, server_writer = await asyncio.open_connection(
                    self.target_host, port)
                break
            except OSError:
                continue
        else:
            client_writer.close()
            return
        cut = asyncio.Event()
        writers = (client_writer, server_writer)

        def abort() -> None:
            if not cut.is_set():
                cut.set()
                self.counters.cuts += 1
            for writer in writers:
                writer.transport.abort()

        up = asyncio.create_task(self._pipe(client_reader, server_writer, "up", plan, abort))
        down = asyncio.create_task(self._pipe(server_reader, client_writer, "down", plan, abort))
        self._tasks |= {up, down}
        try:
            await asyncio.wait({up, down}, return_when=asyncio.ALL_COMPLETED)
        finally:
            self._tasks -= {up, down}
            for writer in writers:
                writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    direction: str, plan: CutPlan, abort: Callable[[], None]) -> None:
        bps = self.profile.up_bps if direction == "up" else self.profile.down_bps
        limit = plan[1] if plan is not None and plan[0] == direction else None
        in_flight: asyncio.Queue[InFlight] = asyncio.Queue()
        transmitter = asyncio.create_task(self._transmit(reader, bps, limit, in_flight))
        sent = 0
        try:
            while True:
                item = await in_flight.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    abort()
                    return
                arrival, data = item
                delay = arrival - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
                sent += len(data)
                if direction == "up":
                    self.counters.up += len(data)
                else:
                    self.counters.down += len(data)
                if limit is not None and sent >= limit:
                    abort()
                    return
        except (ConnectionError, OSError):
            abort()
            return
        finally:
            transmitter.cancel()
        # The source closed cleanly: pass the half-close on.
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError, RuntimeError):
            pass

    async def _transmit(self, reader: asyncio.StreamReader, bps: float, limit: int | None,
                        in_flight: asyncio.Queue[InFlight]) -> None:
        """Put the chunks on the link one after another, each taking ``len * 8 / bps``,
        and queue each with its arrival time, half a round trip after it is sent. The
        next chunk does not wait for that arrival: the link is a pipe, so a response of
        many chunks pays the latency once, not once per chunk."""
        link_free = time.monotonic()
        taken = 0
        try:
            while limit is None or taken < limit:
                data = await reader.read(CHUNK)
                if not data:
                    break
                if limit is not None:
                    data = data[: limit - taken]
                now = time.monotonic()
                link_free = max(link_free, now) + (len(data) * 8 / bps if bps else 0.0)
                in_flight.put_nowait((link_free + self.profile.one_way(), data))
                taken += len(data)
                if link_free > now:
                    await asyncio.sleep(link_free - now)
        except (ConnectionError, OSError) as error:
            in_flight.put_nowait(error)
            return
        in_flight.put_nowait(None)


class ThreadedLink:
    """Run a ``LinkEmulator`` on its own event loop thread, for synchronous tests and tools."""

    def __init__(self, emulator: LinkEmulator) -> None:
        self.emulator = emulator
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedLink:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.emulator.start(), self.loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.emulator.stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.emulator.port}"

    @property
    def counters(self) -> Counters:
        return self.emulator.counters
