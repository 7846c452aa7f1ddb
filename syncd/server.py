"""Run the app under uvicorn with settings chosen for phones on 2G."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import h11
import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import create_app
from .config import Settings

log = logging.getLogger("syncd.server")


def deadline_protocol(seconds: float) -> type[H11Protocol]:
    """An HTTP/1.1 protocol that closes a connection whose request is not complete in time.

    uvicorn times out idle keep-alive connections but not a client that
    trickles its headers or body a byte at a time. This subclass gives each
    request ``seconds`` from the moment the connection is ready for it until
    its body is fully received; a slow client is cut, the server keeps going.
    """

    class DeadlineH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _expired(self) -> None:
            if self.conn.their_state is h11.DONE:
                return  # this request is fully received: the app is working on it
            if not self.transport.is_closing():
                log.info("closing a connection that did not send its request within %ss",
                         seconds)
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

    return DeadlineH11Protocol


def uvicorn_config(settings: Settings, app: Starlette | None = None) -> uvicorn.Config:
    return uvicorn.Config(
        app or create_app(settings),
        host=settings.host,
        port=settings.port,
        http=deadline_protocol(settings.read_deadline_seconds),
        server_header=False,  # bytes cost money on 2G
        date_header=False,
        timeout_keep_alive=settings.keep_alive_seconds,
        timeout_graceful_shutdown=30,
        lifespan="on",
        log_level=settings.log_level,
        access_log=False,  # one structured line per sync instead
        proxy_headers=False,
    )


def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT; in-flight requests finish, the database closes."""
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(settings)
    server = app.state.server
    config = uvicorn_config(settings, app)

    releasing: set[asyncio.Task[None]] = set()

    def release() -> None:
        task = asyncio.ensure_future(server.release_waiters())
        releasing.add(task)  # kept until done
        task.add_done_callback(releasing.discard)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # Long-polls answer at once, so in-flight requests finish without waiting
            # out their waits before the database closes. A signal handler runs on the
            # loop's thread, between two steps of it: hand the work to the loop safely.
            super().handle_exit(sig, frame)
            with contextlib.suppress(RuntimeError):  # no loop running: nothing waits
                asyncio.get_running_loop().call_soon_threadsafe(release)

    Server(config).run()
