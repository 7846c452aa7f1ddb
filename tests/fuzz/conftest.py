"""Fixtures of the live fuzz tests: one real server per module, and one enrolled phone."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import pytest

from tests.support.device import Device
from tests.support.report import record
from tests.support.server import ServerProcess

from .budget import COUNTS, EXAMPLES

_phones = itertools.count(254_711_000_001)


@pytest.fixture(scope="session", autouse=True)
def count_inputs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Report how many inputs the fuzz tests of this run fed the decoders and the server."""
    failed_before = request.session.testsfailed
    yield
    record("fuzz", decodes=COUNTS["decodes"], requests=COUNTS["requests"],
           examples_per_test=EXAMPLES, failures=request.session.testsfailed - failed_before)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # A mutated sync may rightly ask to wait: keep waits short so they fit the time bound.
    process = ServerProcess(tmp_path_factory.mktemp("fuzz") / "syncd.db",
                            env={"SYNCD_MAX_WAIT_SECONDS": "1"}).start()
    yield process
    if process.alive():
        process.stop()


@pytest.fixture(scope="module")
def phone(server: ServerProcess) -> Device:
    """A registered device with an open session, for validly authenticated requests."""
    number = f"+{next(_phones)}"
    return Device.enrol(server.url, number, server.invite(number))


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client
