"""Fixtures: a real server process on loopback over a real SQLite file, and phones."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.device import Device
from tests.support.server import ServerProcess

_phones = itertools.count(254_700_000_001)


def next_phone() -> str:
    return f"+{next(_phones)}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("syncd") / "syncd.db").start()
    yield process
    if process.alive():
        process.stop()


@pytest.fixture
def enrol(server: ServerProcess) -> Callable[[], Device]:
    def make() -> Device:
        phone = next_phone()
        return Device.enrol(server.url, phone, server.invite(phone))
    return make


def db_path(server: ServerProcess) -> Path:
    return server.db
