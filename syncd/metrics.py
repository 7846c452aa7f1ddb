"""Prometheus metrics of one server process."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

ACTIVE_WINDOW_SECONDS = 300


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("syncd_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=self.registry)
        self.request_bytes = Counter("syncd_request_bytes", "Request body bytes by route",
                                     ["route"], registry=self.registry)
        self.response_bytes = Counter("syncd_response_bytes", "Response body bytes by route",
                                      ["route"], registry=self.registry)
        self.sync_seconds = Histogram(
            "syncd_sync_seconds", "Time to answer a sync",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry)
        self.ops_pushed = Counter("syncd_ops_pushed", "Ops acked (new and replayed)",
                                  registry=self.registry)
        self.shed = Counter("syncd_requests_shed",
                            "Requests answered 503 at once because too many were in flight",
                            registry=self.registry)
        self.waiting = Gauge("syncd_waiting_syncs", "Long-poll syncs waiting for news",
                             registry=self.registry)
        self.ops_pulled = Counter("syncd_ops_pulled", "Ops delivered", registry=self.registry)
        self.active_devices = Gauge("syncd_active_devices",
                                    f"Devices that synced in the last {ACTIVE_WINDOW_SECONDS} s",
                                    registry=self.registry)
        self.database_bytes = Gauge("syncd_database_bytes", "Database file size, WAL included",
                                    registry=self.registry)
        self._last_seen: dict[int, float] = {}

    def saw_device(self, device_id: int) -> None:
        self._last_seen[device_id] = time.monotonic()

    def render(self, database_bytes: int) -> bytes:
        cutoff = time.monotonic() - ACTIVE_WINDOW_SECONDS
        self._last_seen = {d: t for d, t in self._last_seen.items() if t >= cutoff}
        self.active_devices.set(len(self._last_seen))
        self.database_bytes.set(database_bytes)
        return generate_latest(self.registry)
