"""Operator commands (``syncd admin``): they open the database directly and work while
the server runs (SQLite WAL lets one writer and many readers share the file)."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from protocol.identity import check_phone

from . import __version__
from .storage import Storage, open_storage

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: read over a phone
DEFAULT_INVITE_TTL = 7 * 24 * 3600


class AdminError(Exception):
    """A command that cannot be done, with a message for the operator."""


def new_code() -> str:
    chars = "".join(secrets.choice(CODE_ALPHABET) for _ in range(10))
    return f"{chars[:5]}-{chars[5:]}"


async def _with_storage(db: str, action: Callable[[Storage], Awaitable[Any]]) -> Any:
    storage = open_storage(db)
    await storage.open()
    try:
        return await action(storage)
    finally:
        await storage.close()


def check_phone_text(phone: str) -> None:
    try:
        check_phone(phone)
    except Exception as exc:
        raise AdminError(f"{phone!r} is not a phone number in E.164 form, like +254700000001") \
            from exc


async def invite(db: str, phone: str, ttl: int) -> dict[str, Any]:
    check_phone_text(phone)
    if ttl <= 0:
        raise AdminError("--ttl must be positive")
    code = new_code()
    now = int(time.time())

    async def run(storage: Storage) -> None:
        await storage.create_invite(phone, hashlib.sha256(code.encode()).digest(), now, now + ttl)

    await _with_storage(db, run)
    return {"phone": phone, "code": code, "expires_at": now + ttl}


async def devices(db: str, phone: str) -> dict[str, Any]:
    user = await _with_storage(db, lambda storage: storage.user_by_phone(phone))
    if user is None:
        raise AdminError(f"no user with phone {phone}")
    return {"user_id": user.user_id, "phone": user.phone, "devices": [
        {"device_id": d.device_id, "created_at": d.created_at, "revoked": d.revoked,
         "sign_key": d.sign_key.hex()} for d in user.devices]}


async def revoke(db: str, device_id: int) -> dict[str, Any]:
    done = await _with_storage(db, lambda storage: storage.revoke(device_id, int(time.time())))
    if not done:
        raise AdminError(f"no device {device_id}")
    return {"device_id": device_id, "revoked": True}


async def stats(db: str) -> dict[str, Any]:
    result = await _with_storage(db, lambda storage: storage.stats())
    return {"version": __version__, **asdict(result)}


async def backup(db: str, destination: str) -> dict[str, Any]:
    target = Path(destination)
    if target.exists():
        raise AdminError(f"{destination} exists; choose a new file")
    await _with_storage(db, lambda storage: storage.backup(target))
    return {"backup": str(target), "bytes": target.stat().st_size}


async def migrate(source: str, target: str) -> dict[str, Any]:
    """Copy a SQLite database into an empty PostgreSQL one (see syncd/storage/transfer.py)."""
    from .storage.postgres import redact
    from .storage.transfer import MigrationRefused
    from .storage.transfer import migrate as copy_database

    try:
        tables = await copy_database(source, target)
    except MigrationRefused as exc:
        raise AdminError(str(exc)) from exc
    return {"from": source, "to": redact(target), "verified": True,
            "tables": {name: asdict(digest) for name, digest in tables.items()}}


def render(result: dict[str, Any], as_json: bool, text: str) -> str:
    return json.dumps(result, sort_keys=True) if as_json else text
