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
MAX_PAYLOAD = 7900  # PostgreSQL refuses notify payloads of 8000 bytes and more


@dataclass(frozen=True, slots=True)
class Commit:
    """What one committed push changed; ``everything`` wakes every waiter."""

    convs: frozenset[bytes] = frozenset()
    users: frozenset[int] = frozenset()
    everything: bool = False

    def encode(self) -> str:
        text = ",".join(sorted(c.hex() for c in self.convs)) + ";" + ",".join(
            str(u) for u in sorted(self.users))
        return "*" if self.everything or len(text) > MAX_PAYLOAD else text

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
    user: int = 0
    convs: frozenset[bytes] = frozenset()
    narrowed: bool = False
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    early: list[Commit] = field(default_factory=list)  # events seen before ``narrow``

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
        """True when woken by an event that concerns this waiter, False at the timeout
        or when the server is shutting down."""
        if self.notifier.closed:
            return False
        try:
            await asyncio.wait_for(self.woken.wait(), timeout)
        except TimeoutError:
            return False
        self.woken.clear()
        return not self.notifier.closed


class LocalNotifier:
    """Commit events within one process."""

    def __init__(self) -> None:
        self.closed = False
        self._unnarrowed: set[Subscription] = set()
        self._by_conv: dict[bytes, set[Subscription]] = {}
        self._by_user: dict[int, set[Subscription]] = {}

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
    def subscribe(self) -> Iterator[Subscription]:
        sub = Subscription(self)
        self._unnarrowed.add(sub)
        try:
            yield sub
        finally:
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
    """Commit events across every replica on one PostgreSQL database."""

    RECONNECT_SECONDS = 1.0

    def __init__(self, url: str) -> None:
        from .storage.postgres import split_url

        super().__init__()
        self.dsn = split_url(url)[0]  # without syncd's own parameters
        self._connection: Any = None
        self._keeper: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._lost = asyncio.Event()

    async def start(self) -> None:
        await self._connect()
        self._keeper = asyncio.create_task(self._keep_listening())

    async def _connect(self) -> None:
        import asyncpg

        connection = await asyncpg.connect(self.dsn)
        connection.add_termination_listener(lambda _connection: self._lost.set())
        await connection.add_listener(CHANNEL, self._on_notify)
        self._connection = connection
        self._lost.clear()

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self.dispatch(Commit.decode(payload))

    async def _keep_listening(self) -> None:
        while not self.closed:
            await self._lost.wait()
            if self.closed:
                return
            log.warning("lost the notification connection; reconnecting")
            self._connection = None
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
        async with self._lock:
            connection = self._connection
            if connection is None or connection.is_closed():
                self.dispatch(event)  # at least this replica's waiters
                return
            try:
                await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, event.encode())
            except Exception as exc:  # the op is committed: a lost wake-up only delays
                log.warning("could not publish a commit: %s", exc)
                self.dispatch(event)

    async def close(self) -> None:
        await super().close()
        self._lost.set()
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None


def open_notifier(database: str) -> LocalNotifier:
    """The notifier that fits the database setting."""
    if database.startswith(("postgresql://", "postgres://")):
        return PostgresNotifier(database)
    return LocalNotifier()
