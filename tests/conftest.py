"""Fixtures for running a suite against every storage backend.

``backend`` is parametrised over ``BACKENDS``; ``storage_url`` is then a fresh
SQLite file path or a fresh PostgreSQL database URL. PostgreSQL comes from
``SYNCD_TEST_POSTGRES_URL`` if set, else from a temporary cluster started once
per session (see tests/support/postgres.py); without PostgreSQL binaries the
PostgreSQL variants are skipped, unless ``SYNCD_REQUIRE_POSTGRES=1``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import (
    REQUIRE_VARIABLE,
    URL_VARIABLE,
    PostgresCluster,
    create_database,
    drop_database,
    find_binaries,
)

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server's maintenance database, for creating test databases."""
    url = os.environ.get(URL_VARIABLE)
    if url:
        yield url
        return
    binaries = find_binaries()
    if binaries is None:
        message = "PostgreSQL binaries (initdb, pg_ctl) not found"
        if os.environ.get(REQUIRE_VARIABLE) == "1":
            pytest.fail(f"{message} and {REQUIRE_VARIABLE}=1", pytrace=False)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="syncd-pg-"))
    cluster = PostgresCluster(root, binaries)
    try:
        cluster.start()
        yield cluster.url
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped after it."""
    url = create_database(postgres_server)
    yield url
    drop_database(postgres_server, url)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database for ``backend``: a SQLite file path or a PostgreSQL URL."""
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "syncd.db")
