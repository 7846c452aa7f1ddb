"""Wake-ups for long-poll syncs: "ops were committed in these conversations".

A sync that finds nothing new may wait (SPEC.md section 9, "Waiting"). It
does not poll the database while it waits: it subscribes to commit events
and pulls again only when one concerns it. An event names the conversations
(wire ids) that got ops and the users whose membership changed, so a waiter
wakes for its own conversations and for being added somewhere new, not for
every commit on the server.

* ``LocalNotifier``: within one process (SQLite: one server, one writer).
* ``PostgresNotifier``: across replicas, over PostgreSQL ``LISTEN/NOTIFY``.
  Every replica, the publisher included, receives each event from the
  database, so a push to replica B wakes a waiter on replica A.

A lost event (a replica killed between its commit and its notify, a listener
reconnecting) delays a waiter until its wait ends, never loses an op: the
waiter's next sync pulls it. After a reconnect the listener wakes every
waiter at once, since it cannot know what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("syncd.notify")

CHANNEL = "syncd_commits"
# PostgreSQL refuses notify payloads of 8000 bytes and more: 300 ids of at most 20
# characters each, with their commas, stay under it.
PER_PAYLOAD = 300


@dataclass(frozen=True, slots=True)
class Commit:
    """What one committed push changed; ``everything`` wakes every waiter."""

    convs: frozenset[bytes] = frozenset()
    users: frozenset[int] = frozenset()
    everything: bool = False

    def payloads(self) -> list[str]:
        """The event as NOTIFY payloads, each under PostgreSQL's limit: a big membership
        change becomes several events, not a wake-up of every waiter."""
        if self.everything:
            return ["*"]
        convs = [c.hex() for c in sorted(self.convs)]
        users = [str(u) for u in sorted(self.users)]
        payloads = [",".join(convs[i:i + PER_PAYLOAD]) + ";"
                    for i in range(0, len(convs), PER_PAYLOAD)]
        payloads += [";" + ",".join(users[i:i + PER_PAYLOAD])
                     for i in range(0, len(users), PER_PAYLOAD)]
        return payloads

    @classmethod
    def decode(cls, text: str) -> Commit:
        if text == "*" or ";" not in text:
            return cls(everything=True)
        convs, users = text.split(";", 1)
        try:
            return cls(frozenset(bytes.fromhex(c) for c in convs.split(",") if c),
                       frozenset(int(u) for u in users.split(",") if u))
        except ValueError:
            return cls(everything=True)


@dataclass(eq=False)
class Subscription:
    """One waiting request. Until ``narrow`` it takes every event; after it, the
    notifier hands it only events for its conversations or its user."""

    notifier: LocalNotifier
    key: int | None = None
    user: int = 0
    convs: frozenset[bytes] = frozenset()
    narrowed: bool = False
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    early: list[Commit] = field(default_factory=list)  # events seen before ``narrow``
    superseded: bool = False

    @property
    def ended(self) -> bool:
        """The server is shutting down, or a newer wait of the same session took over."""
        return self.superseded or self.notifier.closed

    def concerns(self, event: Commit) -> bool:
        return (event.everything or self.user in event.users
                or not self.convs.isdisjoint(event.convs))

    def deliver(self, event: Commit) -> None:
        if not self.narrowed:
            self.early.append(event)
        self.woken.set()

    def narrow(self, convs: Iterable[bytes], user: int) -> None:
        """Listen from now on only for these conversations and this user's memberships."""
        self.convs, self.user = frozenset(convs), user
        self.notifier._narrow(self)
        self.narrowed = True
        if not any(self.concerns(event) for event in self.early):
            self.woken.clear()
        self.early.clear()

    async def wait(self, timeout: float) -> bool:
        """True when woken by an event that concerns this waiter; False at the timeout or
        when the wait ``ended``."""
        if self.ended:
            return False
        try:
            await asyncio.wait_for(self.woken.wait(), max(0.0, timeout))
        except TimeoutError:
            return False
        self.woken.clear()
        return not self.ended


class LocalNotifier:
    """Commit events within one process."""

    def __init__(self) -> None:
        self.closed = False
        self._unnarrowed: set[Subscription] = set()
        self._by_conv: dict[bytes, set[Subscription]] = {}
        self._by_user: dict[int, set[Subscription]] = {}
        self._by_key: dict[int, Subscription] = {}

    @property
    def waiting(self) -> int:
        return len(self._unnarrowed) + len({s for subs in self._by_user.values() for s in subs})

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        """Wake every waiter so that it answers now; new waits return at once."""
        self.closed = True
        self.dispatch(Commit(everything=True))

    async def publish(self, event: Commit) -> None:
        """Announce a commit (called after the commit returned)."""
        self.dispatch(event)

    def dispatch(self, event: Commit) -> None:
        targets = set(self._unnarrowed)
        if event.everything:
            for subs in self._by_user.values():
                targets |= subs
        else:
            for conv in event.convs:
                targets |= self._by_conv.get(conv, set())
            for user in event.users:
                targets |= self._by_user.get(user, set())
        for sub in targets:
            sub.deliver(event)

    @contextlib.contextmanager
    def subscribe(self, key: int | None = None) -> Iterator[Subscription]:
        """A waiter. With a ``key`` (a session), a newer wait under the same key ends the
        older one, so one phone holds one wait however many requests it sends."""
        sub = Subscription(self, key)
        if key is not None:
            older = self._by_key.get(key)
            if older is not None:
                older.superseded = True
                older.woken.set()
            self._by_key[key] = sub
        self._unnarrowed.add(sub)
        try:
            yield sub
        finally:
            if key is not None and self._by_key.get(key) is sub:
                del self._by_key[key]
            self._unnarrowed.discard(sub)
            self._drop(self._by_user, sub.user, sub)
            for conv in sub.convs:
                self._drop(self._by_conv, conv, sub)

    def _narrow(self, sub: Subscription) -> None:
        self._unnarrowed.discard(sub)
        self._by_user.setdefault(sub.user, set()).add(sub)
        for conv in sub.convs:
            self._by_conv.setdefault(conv, set()).add(sub)

    @staticmethod
    def _drop(index: dict[Any, set[Subscription]], key: Any, sub: Subscription) -> None:
        subs = index.get(key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del index[key]


class PostgresNotifier(LocalNotifier):
    """Commit events across every replica on one PostgreSQL database.

    ``publish`` only queues: a push's ack never waits for the notification. A
    sender task sends what is queued, merged into as few NOTIFYs as fit, on the
    listening connection, each bounded by a timeout; a failure drops that
    connection and the keeper reconnects (waking every local waiter, since
    events may have been missed meanwhile)."""

    RECONNECT_SECONDS = 1.0
    SEND_TIMEOUT = 5.0
    QUEUE = 10_000

    def __init__(self, url: str) -> None:
        from .storage.postgres import split_url

        super().__init__()
        self.dsn = split_url(url)[0]  # without syncd's own parameters
        self._connection: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lost = asyncio.Event()
        self._ready = asyncio.Event()
        self._outbox: asyncio.Queue[Commit] = asyncio.Queue(self.QUEUE)

    async def start(self) -> None:
        await self._connect()
        self._tasks = [asyncio.create_task(self._keep_listening()),
                       asyncio.create_task(self._send())]

    async def _connect(self) -> None:
        import asyncpg

        connection = await asyncpg.connect(self.dsn)
        try:
            self._lost.clear()
            connection.add_termination_listener(lambda _connection: self._connection_lost())
            await connection.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self._ready.set()

    def _connection_lost(self) -> None:
        self._ready.clear()
        self._lost.set()

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self.dispatch(Commit.decode(payload))

    async def _keep_listening(self) -> None:
        while not self.closed:
            await self._lost.wait()
            if self.closed:
                return
            log.warning("lost the notification connection; reconnecting")
            old, self._connection = self._connection, None
            if old is not None:
                with contextlib.suppress(Exception):
                    old.terminate()
            while not self.closed:
                try:
                    await self._connect()
                except Exception as exc:  # asyncpg raises many kinds
                    log.warning("cannot listen for commits yet: %s", exc)
                    await asyncio.sleep(self.RECONNECT_SECONDS)
                    continue
                self.dispatch(Commit(everything=True))  # we may have missed some
                break

    async def publish(self, event: Commit) -> None:
        try:
            self._outbox.put_nowait(event)
        except asyncio.QueueFull:  # far behind: this replica's waiters at least
            self.dispatch(event)

    async def _send(self) -> None:
        while not self.closed:
            event = await self._outbox.get()
            convs, users = set(event.convs), set(event.users)
            everything = event.everything
            while not self._outbox.empty():  # merge what queued up meanwhile
                more = self._outbox.get_nowait()
                convs |= more.convs
                users |= more.users
                everything = everything or more.everything
            merged = Commit(frozenset(convs), frozenset(users), everything)
            await self._ready.wait()
            connection = self._connection
            try:
                for payload in merged.payloads():
                    await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, payload,
                                             timeout=self.SEND_TIMEOUT)
            except Exception as exc:  # committed already: a lost wake-up only delays
                log.warning("could not publish a commit: %s", exc)
                self.dispatch(merged)
                self._connection_lost()

    async def close(self) -> None:
        await super().close()
        self._lost.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None


def open_notifier(database: str) -> LocalNotifier:
    """The notifier that fits the database setting."""
    if database.startswith(("postgresql://", "postgres://")):
        return PostgresNotifier(database)
    return LocalNotifier()
