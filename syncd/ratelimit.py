"""Per-device rate limit: a token bucket per device, in this process's memory.

A limit per replica: with several replicas behind a load balancer a device
can get up to N times the rate, which still bounds abuse; the database is
not asked on every request to enforce a soft limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate limit: rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[int, tuple[float, float]] = {}  # key -> (tokens, last refill)

    def retry_after(self, key: int) -> int:
        """Take a token for ``key``: 0 when allowed, else whole seconds to wait."""
        now = self.clock()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= self.max_keys and key not in self._buckets:
                self._buckets.clear()  # bounded memory; a reset only ever lets requests through
            self._buckets[key] = (tokens - 1.0, now)
            return 0
        self._buckets[key] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.rate))
