"""The HTTP edge: read the body within limits, decode, delegate, encode.

Every answer to a client's mistake is a 4xx with the spec's error frame; an
unexpected exception is logged with a request id and answered with a generic
500 frame. The sync rules live in ``service.py``; this module never decides
anything about ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from protocol import (
    AuthedRequest,
    ChainRequest,
    ChallengeRequest,
    DirectoryRequest,
    ErrorCode,
    ErrorFrame,
    ProtocolError,
    RegisterRequest,
    SessionRequest,
    SyncRequest,
    decode,
    encode,
)
from protocol.limits import VERSION

from .config import Settings
from .metrics import Metrics
from .notify import open_notifier
from .ratelimit import RateLimiter
from .service import Caller, SyncService
from .storage import Storage, StorageUnavailable, open_storage

log = logging.getLogger("syncd.http")
sync_log = logging.getLogger("syncd.sync")

RETRY_UNAVAILABLE = 2
RETRY_OVERLOADED = 1


class Overloaded(Exception):
    """More requests are being worked on than the server takes at once."""


class BodyTooLarge(Exception):
    pass


class SealedError(Exception):
    """A refusal after the caller authenticated: its error frame travels tagged."""

    def __init__(self, error: ProtocolError, body: bytes) -> None:
        super().__init__(str(error))
        self.error = error
        self.body = body


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def error_response(error: ProtocolError) -> Response:
    headers = {}
    if error.retry_after is not None:
        headers["retry-after"] = str(error.retry_after)
    return Response(encode(ErrorFrame.from_error(error)), status_code=error.code.http_status,
                    headers=headers)


class Server:
    """State shared by the routes of one process."""

    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        self.settings = settings
        self.storage = storage or open_storage(settings.db,
                                               busy_timeout_ms=settings.busy_timeout_ms,
                                               max_bytes=settings.max_db_bytes)
        self.metrics = Metrics()
        self.limiter = RateLimiter(settings.rate_per_second, settings.rate_burst)
        self.service: SyncService | None = None
        self.ready_reason = "starting"
        self._flusher: asyncio.Task[None] | None = None
        self.inflight = 0  # requests past their body read, not yet answered
        self.notifier = open_notifier(settings.db)

    async def start(self) -> None:
        await self.storage.open()
        await self.notifier.start()
        self.service = await SyncService.create(self.storage,
                                                session_ttl=self.settings.session_ttl_seconds,
                                                notifier=self.notifier,
                                                max_wait=self.settings.max_wait_seconds)
        self.ready_reason = ""
        self._flusher = asyncio.create_task(self._flush_counters())

    async def release_waiters(self) -> None:
        """Answer every long-poll now (shutdown): waiting syncs return what they have."""
        await self.notifier.close()

    async def stop(self) -> None:
        self.ready_reason = "stopping"
        await self.notifier.close()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if self.service is not None:
            with contextlib.suppress(StorageUnavailable):
                await self.service.flush_counters()
        await self.storage.close()

    async def _flush_counters(self) -> None:
        while True:
            await asyncio.sleep(self.settings.counter_flush_seconds)
            assert self.service is not None
            try:
                await self.service.flush_counters()
            except StorageUnavailable as exc:
                log.warning("could not persist session counters: %s", exc)

    # ------------------------------------------------------------ plumbing

    async def handle(self, request: Request, route: str,
                     work: Callable[[bytes, dict[str, Any]], Awaitable[bytes]]) -> Response:
        request_id = secrets.token_hex(6)
        started = time.perf_counter()
        info: dict[str, Any] = {"request_id": request_id, "route": route}
        body = b""
        try:
            if self.service is None:
                raise StorageUnavailable("not ready")
            try:
                body = await asyncio.wait_for(read_body(request, self.settings.max_body_bytes),
                                              timeout=self.settings.read_deadline_seconds)
            except BodyTooLarge as exc:
                raise ProtocolError(ErrorCode.TOO_LARGE,
                                    f"body over {self.settings.max_body_bytes} bytes") from exc
            # Load shedding: past the limit, answer at once rather than queue behind the
            # single writer until every request in the queue misses its deadline.
            if self.inflight >= self.settings.max_inflight:
                raise Overloaded
            self.inflight += 1
            try:
                response = Response(await work(body, info))  # CBOR; no content-type (SPEC §4)
            finally:
                self.inflight -= 1
        except SealedError as sealed:
            info["error"] = sealed.error.code.name.lower()
            headers = ({"retry-after": str(sealed.error.retry_after)}
                       if sealed.error.retry_after is not None else {})
            response = Response(sealed.body, status_code=sealed.error.code.http_status,
                                headers=headers)
        except ProtocolError as error:
            info["error"] = error.code.name.lower()
            response = error_response(error)
        except StorageUnavailable as exc:
            info["error"] = "unavailable"
            log.warning("storage unavailable (request %s): %s", request_id, exc)
            response = error_response(ProtocolError(
                ErrorCode.UNAVAILABLE, "server busy, retry later", retry_after=RETRY_UNAVAILABLE))
        except Overloaded:
            info["error"] = "overloaded"
            self.metrics.shed.inc()
            response = error_response(ProtocolError(
                ErrorCode.UNAVAILABLE, "server overloaded, retry later",
                retry_after=RETRY_OVERLOADED))
        except TimeoutError:
            info["error"] = "read_deadline"
            response = Response(b"", status_code=408, headers={"connection": "close"})
        except ClientDisconnect:
            # Normal on 2G: the link died mid-upload. Nothing was read, nothing applied.
            info["error"] = "client_disconnected"
            log.info("client went away mid-request (request %s)", request_id)
            response = Response(b"", status_code=499)
        except Exception:
            log.exception("unexpected error (request %s)", request_id)
            info["error"] = "internal"
            response = error_response(ProtocolError(
                ErrorCode.INTERNAL, f"internal error, request id {request_id}"))
        elapsed = time.perf_counter() - started
        status = str(response.status_code)
        self.metrics.requests.labels(route, status).inc()
        self.metrics.request_bytes.labels(route).inc(len(body))
        self.metrics.response_bytes.labels(route).inc(len(response.body))
        if route == "sync":
            self.metrics.sync_seconds.observe(elapsed)
            info.update(status=response.status_code, bytes_in=len(body),
                        bytes_out=len(response.body), ms=round(elapsed * 1000, 2))
            sync_log.info(json.dumps(info, separators=(",", ":")))
        return response

    # ------------------------------------------------------------ routes

    async def register(self, request: Request) -> Response:
        async def work(body: bytes, info: dict[str, Any]) -> bytes:
            assert self.service is not None
            return encode(await self.service.register(decode(body, RegisterRequest)))
        return await self.handle(request, "register", work)

    async def challenge(self, request: Request) -> Response:
        async def work(body: bytes, info: dict[str, Any]) -> bytes:
            assert self.service is not None
            # Stateless and cheap: a MAC, no database, so no limit that a flood could
            # drain to lock a device out.
            return encode(await self.service.challenge(decode(body, ChallengeRequest)))
        return await self.handle(request, "challenge", work)

    async def session(self, request: Request) -> Response:
        async def work(body: bytes, info: dict[str, Any]) -> bytes:
            assert self.service is not None
            return encode(await self.service.session(decode(body, SessionRequest)))
        return await self.handle(request, "session", work)

    async def sync(self, request: Request) -> Response:
        async def work(body: bytes, info: dict[str, Any]) -> bytes:
            assert self.service is not None
            authed = decode(body, AuthedRequest, max_bytes=self.settings.max_body_bytes)
            caller = await self.service.authenticate("/v1/sync", authed)
            with self._sealing_errors(caller):
                await self.service.admit(caller)
                self._admit(caller, info)
                frame = decode(authed.body, SyncRequest, max_bytes=self.settings.max_body_bytes)
                outcome = await self.service.sync(caller, frame, idle=self._idle)
            reply = encode(self.service.seal(caller, encode(outcome.response)))
            budget = frame.effective_budget
            if len(reply) > budget and outcome.response.op_count != 1:
                raise AssertionError(f"response of {len(reply)} bytes over budget {budget}")
            self.metrics.ops_pushed.inc(outcome.pushed)
            self.metrics.ops_pulled.inc(outcome.pulled)
            info.update(pushed=outcome.pushed, pulled=outcome.pulled, more=outcome.response.more)
            return reply
        return await self.handle(request, "sync", work)

    async def directory(self, request: Request) -> Response:
        async def work(body: bytes, info: dict[str, Any]) -> bytes:
            assert self.service is not None
            authed = decode(body, AuthedRequest, max_bytes=self.settings.max_body_bytes)
            caller = await self.service.authenticate("/v1/directory", authed)
            with self._sealing_errors(caller):
                await self.service.admit(caller)
                self._admit(caller, info)
                frame = decode(authed.body, DirectoryRequest)
                answer = await self.service.directory(caller, frame)
            return encode(self.service.seal(caller, encode(answer)))
        return await self.handle(request, "directory", work)

    async def chain(self, request: Request) -> Response:
        async def work(body: bytes, info: dict[str, Any]) -> bytes:
            assert self.service is not None
            authed = decode(body, AuthedRequest, max_bytes=self.settings.max_body_bytes)
            caller = await self.service.authenticate("/v1/chain", authed)
            with self._sealing_errors(caller):
                await self.service.admit(caller)
                self._admit(caller, info)
                frame = decode(authed.body, ChainRequest)
                answer = await self.service.chain(caller, frame)
            return encode(self.service.seal(caller, encode(answer)))
        return await self.handle(request, "chain", work)

    @contextlib.contextmanager
    def _idle(self) -> Iterator[object]:
        """A long-poll that waits holds no database connection: it leaves the in-flight
        count while it waits and is counted as waiting instead."""
        self.inflight -= 1
        self.metrics.waiting.inc()
        try:
            yield None
        finally:
            self.metrics.waiting.dec()
            self.inflight += 1

    def _admit(self, caller: Caller, info: dict[str, Any]) -> None:
        info["device"] = caller.device_id
        wait = self.limiter.retry_after(caller.device_id)
        if wait:
            raise ProtocolError(ErrorCode.RATE_LIMITED, "too many requests", retry_after=wait)
        self.metrics.saw_device(caller.device_id)

    @contextlib.contextmanager
    def _sealing_errors(self, caller: Caller) -> Iterator[None]:
        """Refusals after authentication go out tagged, so a client may act on them."""
        assert self.service is not None
        try:
            yield
        except ProtocolError as error:
            frame = encode(ErrorFrame.from_error(error))
            raise SealedError(error, encode(self.service.seal(caller, frame))) from error

    async def unknown(self, request: Request) -> Response:
        version = request.path_params.get("version", "")
        if version != f"v{VERSION}" and version.startswith("v") and version[1:].isdigit():
            error = ProtocolError(ErrorCode.UNSUPPORTED_VERSION,
                                  f"{version} is not supported; this server speaks v{VERSION}")
        else:
            error = ProtocolError(ErrorCode.NOT_FOUND, "no such endpoint")
        self.metrics.requests.labels("unknown", str(error.code.http_status)).inc()
        return error_response(error)

    # ------------------------------------------------------------ operators

    async def healthz(self, request: Request) -> Response:
        return Response(b"ok\n", media_type="text/plain")

    async def readyz(self, request: Request) -> Response:
        reason = self.ready_reason
        if not reason:
            try:
                await self.storage.check_writable()
                current = await self.storage.schema_version()
                if current != self.storage.latest_schema_version:
                    reason = f"schema at {current}, expected {self.storage.latest_schema_version}"
            except StorageUnavailable as exc:
                reason = f"database: {exc}"
        if reason:
            return Response(f"not ready: {reason}\n".encode(), status_code=503,
                            media_type="text/plain", headers={"retry-after": "1"})
        return Response(b"ready\n", media_type="text/plain")

    async def metrics_endpoint(self, request: Request) -> Response:
        try:
            size = await self.storage.database_bytes()
        except StorageUnavailable:
            size = 0
        return Response(self.metrics.render(size),
                        media_type="text/plain; version=0.0.4; charset=utf-8")


def create_app(settings: Settings, storage: Storage | None = None) -> Starlette:
    """The ASGI application; the database opens at startup and closes at shutdown."""
    server = Server(settings, storage)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await server.start()
        try:
            yield
        finally:
            await server.stop()

    routes = [
        Route("/v1/register", server.register, methods=["POST"]),
        Route("/v1/challenge", server.challenge, methods=["POST"]),
        Route("/v1/session", server.session, methods=["POST"]),
        Route("/v1/sync", server.sync, methods=["POST"]),
        Route("/v1/directory", server.directory, methods=["POST"]),
        Route("/v1/chain", server.chain, methods=["POST"]),
        Route("/healthz", server.healthz, methods=["GET"]),
        Route("/readyz", server.readyz, methods=["GET"]),
        Route("/metrics", server.metrics_endpoint, methods=["GET"]),
        Route("/{version}/{name:path}", server.unknown,
              methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
        Route("/{name:path}", server.unknown, methods=["GET", "POST", "PUT", "DELETE", "PATCH",
                                                        "HEAD"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.server = server
    return app
