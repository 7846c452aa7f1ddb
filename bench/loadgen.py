"""What the comparison benchmarks share: counting requests, and timed concurrent load."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

__all__ = ["Rate", "RequestCounter", "Traffic", "hammer", "percentile", "texts"]

WORDS = ("clinic", "opens", "at", "nine", "tomorrow", "bring", "the", "cards", "stock", "of",
         "vaccines", "arrived", "please", "confirm", "visits", "for", "ward", "two", "malaria",
         "tests", "done", "cold", "chain", "fine", "driver", "late", "road", "closed", "by",
         "rain", "meeting", "moved", "to", "friday", "report", "due", "monday")


def texts(count: int, length: int = 40, seed: int = 1) -> list[str]:
    """``count`` different messages of ``length`` characters, made of ordinary words
    (a fixed seed: every run and both servers send the same ones)."""
    rng = random.Random(seed)
    found: list[str] = []
    while len(found) < count:
        words: list[str] = []
        while len(" ".join(words)) < length:
            words.append(rng.choice(WORDS))
        text = " ".join(words)[:length - 1].rstrip().capitalize().ljust(length, ".")
        if text not in found:
            found.append(text)
    return found


class RequestCounter:
    """Counts the HTTP requests the clients it is attached to send."""

    def __init__(self) -> None:
        self.requests = 0

    def attach(self, client: httpx.Client) -> None:
        client.event_hooks["request"] = [*client.event_hooks.get("request", []), self._hook]

    def _hook(self, request: httpx.Request) -> None:
        self.requests += 1


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The value at ``fraction`` of a sorted, non-empty list (nearest rank)."""
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclass(frozen=True)
class Traffic:
    """Bytes both ways on the TCP stream and HTTP requests, for one phase."""

    up: int
    down: int
    requests: int

    @property
    def total(self) -> int:
        return self.up + self.down


@dataclass(frozen=True)
class Rate:
    """Items per second through concurrent workers, and the latency of one request."""

    per_second: float
    requests: int
    p50_ms: float
    p99_ms: float


Worker = Callable[[], Awaitable[int]]


async def hammer(workers: list[Worker], seconds: float) -> Rate:
    """Run each worker (one request per call, returning the items it carried) in a loop
    until ``seconds`` have passed, all at once."""
    latencies: list[float] = []
    items = 0
    deadline = time.monotonic() + seconds

    async def loop(worker: Worker) -> None:
        nonlocal items
        while time.monotonic() < deadline:
            started = time.perf_counter()
            carried = await worker()  # not `items += await ...`: that loses updates
            latencies.append(time.perf_counter() - started)
            items += carried

    started = time.monotonic()
    await asyncio.gather(*(loop(worker) for worker in workers))
    elapsed = time.monotonic() - started
    latencies.sort()
    return Rate(items / elapsed, len(latencies), statistics.median(latencies) * 1000,
                percentile(latencies, 0.99) * 1000)
