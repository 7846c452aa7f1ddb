"""Fixtures: a real server on loopback and reference clients in temporary homes."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clients.reference.client import Client
from tests.support.server import ServerProcess

_phones = itertools.count(254_733_000_001)


@pytest.fixture
def server(tmp_path: Path, backend: str, request: pytest.FixtureRequest
           ) -> Iterator[ServerProcess]:
    """A server on each backend (``backend`` comes from tests/conftest.py)."""
    database = (str(request.getfixturevalue("postgres_url")) if backend == "postgresql"
                else None)
    process = ServerProcess(tmp_path / "server.db", database=database).start()
    yield process
    if process.alive():
        process.stop()


@pytest.fixture
def make_client(server: ServerProcess, tmp_path: Path) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(phone: str | None = None, name: str | None = None) -> Client:
        phone = phone or f"+{next(_phones)}"
        home = tmp_path / (name or f"home-{len(made)}")
        client = Client.init(home, server.url, phone, server.invite(phone))
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
