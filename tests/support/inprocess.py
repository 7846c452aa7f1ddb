"""A real uvicorn server in a thread of the test process, for tests that need to
reach into the storage layer (count its calls, inject a failure)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from syncd import admin
from syncd.app import create_app
from syncd.config import Settings
from syncd.storage import Storage

from .server import free_port


@contextmanager
def serve_in_thread(settings: Settings, storage: Storage) -> Iterator[str]:
    """Serve ``storage`` on a free loopback port; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(settings, storage), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError("the in-process server did not become ready")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def invite(db: str, phone: str) -> str:
    """An enrolment code, from a SQLite file the server in this process also has open."""
    return str(asyncio.run(admin.invite(db, phone, 3600))["code"])
