"""PostgreSQL errors translated into the storage interface's (see ``translate``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import asyncpg

from .interface import StorageBusy, StorageFull, StorageUnavailable

# SQLSTATEs: https://www.postgresql.org/docs/current/errcodes-appendix.html
_BUSY = {"40001", "40P01", "55P03", "57014"}  # serialization, deadlock, lock timeout, timeout
_UNAVAILABLE = {"53200", "53300", "57P01", "57P02", "57P03", "25006"}  # memory, connections,
# admin/crash shutdown, starting up, read-only (a standby)


DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError,
                  OSError)


def translate(exc: BaseException) -> BaseException:
    """Connection, shutdown and resource failures become ``StorageUnavailable`` (503,
    retry later), lock waits ``StorageBusy``, a full disk ``StorageFull``; anything
    else is a bug of ours and stays what it is (500)."""
    unchanged = exc
    if isinstance(exc, asyncpg.PostgresError):  # (asyncpg is untyped: exc is Any from here)
        state = str(getattr(exc, "sqlstate", "") or "")
        if state in _BUSY:
            return StorageBusy(str(exc))
        if state.startswith("08") or state in _UNAVAILABLE:
            return StorageUnavailable(str(exc))
        if state.startswith("53"):  # 53100 disk full, 53400 configuration limit exceeded
            return StorageFull(str(exc))
        return unchanged
    if isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc):
        return StorageUnavailable(str(exc))
    if isinstance(exc, OSError):  # refused, reset, unreachable
        return StorageUnavailable(f"cannot reach the database: {exc}")
    return exc


@contextmanager
def translated(connection: asyncpg.Connection | None = None) -> Iterator[None]:
    """Translate errors raised inside (see ``_translate``). Given the connection, any
    driver error once that connection is closed means it was lost: a connection
    killed between two statements can surface as an asyncpg internal state error."""
    try:
        yield
    except DRIVER_ERRORS as exc:
        mapped = translate(exc)
        if mapped is exc and connection is not None and connection.is_closed():
            mapped = StorageUnavailable(f"database connection lost: {exc}")
        if mapped is exc:
            raise
        raise mapped from exc


@asynccontextmanager
async def as_storage_errors(connection: asyncpg.Connection) -> AsyncIterator[None]:
    with translated(connection):
        yield
