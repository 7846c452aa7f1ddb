"""The HTTP layer in process (ASGI): a bug of ours is a logged, generic 500, never a leak."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import httpx
import pytest

from protocol import ErrorCode, ErrorFrame, decode
from syncd.app import create_app
from syncd.config import Settings
from syncd.storage.sqlite import SQLiteStorage


class BrokenStorage(SQLiteStorage):
    async def register(self, code_hash: bytes, phone: str, sign_key: bytes, hpke_key: bytes,
                       now: int) -> tuple[int, int]:
        raise RuntimeError("a bug in the storage layer")


def register_vector() -> bytes:
    vectors = json.loads((Path(__file__).resolve().parents[2] / "protocol" / "vectors"
                          / "valid.json").read_text())["vectors"]
    return bytes.fromhex(next(v["hex"] for v in vectors if v["name"] == "register-request"))


def test_unexpected_exception_is_a_generic_500_with_a_request_id(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(db=str(tmp_path / "app.db"))
    app = create_app(settings, BrokenStorage(settings.db))

    async def run() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.post("/v1/register", content=register_vector())

    with caplog.at_level(logging.ERROR, logger="syncd.http"):
        response = asyncio.run(run())
    assert response.status_code == 500
    frame = decode(response.content, ErrorFrame)
    assert frame.code == ErrorCode.INTERNAL
    assert "request id" in frame.message and "storage layer" not in frame.message
    request_id = frame.message.rsplit(" ", 1)[-1]
    assert any(request_id in record.getMessage() for record in caplog.records)
