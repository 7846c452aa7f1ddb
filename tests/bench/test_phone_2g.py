"""The arithmetic behind the 2G table, and the messages both servers are sent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from loadgen import Traffic, percentile, texts
from phone_2g import Timed, floor_seconds

from tests.support.linkemu import PROFILES


def test_floor_is_bytes_at_each_rate_plus_a_round_trip_per_request() -> None:
    gprs = PROFILES["gprs"]  # 20 kbit/s up, 40 kbit/s down, 800 ms
    traffic = Traffic(up=2_500, down=10_000, requests=3)
    assert floor_seconds(traffic, gprs) == pytest.approx(1.0 + 2.0 + 3 * 0.8)
    timed = Timed("catch up", gprs, seconds=8.1, traffic=traffic)
    assert timed.ratio == pytest.approx(8.1 / 5.4)


def test_the_messages_are_all_different_and_all_40_characters() -> None:
    sent = texts(1_000)
    assert len(set(sent)) == 1_000
    assert {len(text) for text in sent} == {40}
    assert texts(100) == sent[:100]  # the same ones on every run and on both servers
    assert texts(100, seed=2) != sent[:100]


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
