"""Records, errors and the abstract interface of the storage layer."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

from protocol import Role, StoredOp


class StorageError(Exception):
    """Base of every storage failure."""


class StorageUnavailable(StorageError):
    """The database cannot serve the request now; the caller may retry later."""


class StorageBusy(StorageUnavailable):
    """Another writer held the database past the busy timeout."""


class StorageFull(StorageUnavailable):
    """The disk or the database is full; nothing was written."""


class InviteRefused(StorageError):
    """The enrolment code is unknown, used, expired or for another phone."""


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_id: int
    user_id: int
    sign_key: bytes
    hpke_key: bytes
    revoked: bool
    created_at: int = 0


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: int
    phone: str
    devices: tuple[DeviceRecord, ...]


@dataclass(frozen=True, slots=True)
class SessionRecord:
    session_id: int
    device_id: int
    user_id: int
    request_key: bytes
    response_key: bytes
    expires_at: int
    highest_counter: int
    revoked: bool
    sign_key: bytes


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    """A conversation's routing state: internal id, roster and chain head."""

    conv_id: int
    conv: bytes
    broadcast: bool
    head: bytes
    members: Mapping[int, Role]


@dataclass(frozen=True, slots=True)
class StoredRow:
    """An op as read for a pull: the pull-form fields after the op id are CBOR in ``fields``."""

    seq: int
    conv: bytes
    op_type: int
    device_id: int
    op_id: int
    fields: bytes


@dataclass(frozen=True, slots=True)
class Stats:
    users: int
    devices: int
    revoked_devices: int
    conversations: int
    ops: int
    sessions: int
    database_bytes: int


class WriteTx(ABC):
    """One write transaction (see ``Storage.transaction``)."""

    @abstractmethod
    async def high_water(self) -> int:
        """The highest seq committed, 0 for none."""

    @abstractmethod
    async def ops_by_id(self, device_id: int, op_ids: Sequence[int]) -> dict[int, StoredOp]:
        """The digest and seq of each of these op ids the device already stored."""

    @abstractmethod
    async def highest_op_id(self, device_id: int) -> int:
        """The highest op id stored for the device, 0 for none."""

    @abstractmethod
    async def conversation(self, conv: bytes, *, members: bool = True
                           ) -> ConversationRecord | None:
        """The conversation with this wire id, or None; its roster only if ``members``
        (a roster can be large: content ops need one role, not the whole list)."""

    @abstractmethod
    async def member_role(self, conv_id: int, user_id: int) -> Role | None:
        """The user's role in the conversation now, None if not a member."""

    @abstractmethod
    async def device_owners(self, device_ids: Sequence[int]) -> dict[int, tuple[int, bool]]:
        """For each known device id: (user id, revoked)."""

    @abstractmethod
    async def known_users(self, user_ids: Sequence[int]) -> set[int]:
        """Which of these user ids exist."""

    @abstractmethod
    async def create_conversation(self, conv: bytes, broadcast: bool, head: bytes) -> int:
        """Create a conversation with an empty roster; returns its internal id."""

    @abstractmethod
    async def insert_op(self, conv_id: int, op_type: int, device_id: int, op_id: int,
                        to_device: int | None, fields: bytes, digest: bytes) -> int:
        """Store one op; returns its sequence number."""

    @abstractmethod
    async def set_roster(self, conv_id: int, head: bytes, changed: Mapping[int, Role],
                         joined: Sequence[int], left: Sequence[int], seq: int) -> None:
        """Move the chain head; set the roles in ``changed`` (new members included), drop
        ``left``; open spans for ``joined`` and close them for ``left`` at ``seq`` (the seq
        of the membership op)."""

    @abstractmethod
    async def set_highest_op_id(self, device_id: int, op_id: int) -> None:
        """Record the device's highest stored op id."""

    @abstractmethod
    async def set_counter(self, session_id: int, counter: int) -> None:
        """Record the highest accepted request counter of a session."""

    @abstractmethod
    async def set_counters(self, counters: Mapping[int, int]) -> None:
        """Record the highest accepted counters of many sessions at once."""


class ReadTx(ABC):
    """One read transaction (see ``Storage.snapshot``)."""

    @abstractmethod
    async def high_water(self) -> int:
        """The highest seq committed, 0 for none."""

    @abstractmethod
    async def pull(self, *, user_id: int, device_id: int, lane: int, after: int, upto: int,
                   limit: int) -> list[StoredRow]:
        """Up to ``limit`` ops of ``lane`` that this device may see, with ``after < seq <=
        upto``, in seq order, excluding the device's own ops (SPEC.md section 9)."""

    @abstractmethod
    async def conversations_of(self, user_id: int) -> set[bytes]:
        """The wire ids of the conversations the user is a member of now."""

    @abstractmethod
    async def chain(self, *, user_id: int, conv: bytes, after: int, limit: int
                    ) -> list[StoredRow] | None:
        """Up to ``limit`` membership ops of the conversation with seq above ``after``, in
        seq order, up to the user's last removal if not a member now (as ``pull`` does);
        None if the user was never a member (or it does not exist)."""


class Storage(ABC):
    """The narrow interface the sync service and the admin commands use."""

    @abstractmethod
    async def open(self) -> None:
        """Connect, and create or migrate the schema to the latest version."""

    @abstractmethod
    async def close(self) -> None:
        """Finish and close every connection."""

    @abstractmethod
    async def schema_version(self) -> int:
        """The schema version the database is at."""

    @property
    @abstractmethod
    def latest_schema_version(self) -> int:
        """The schema version this code migrates to."""

    @property
    def shared(self) -> bool:
        """True when several server processes may serve from this database at once
        (replicas): per-request state, such as replay counters, must then live in it."""
        return False

    async def claim_counter(self, session_id: int, counter: int) -> bool:
        """Raise the session's highest accepted counter to ``counter`` in one atomic step;
        False if it already was at or above it (a replay). Used when ``shared``."""
        raise NotImplementedError("only a shared database keeps counters per request")

    @abstractmethod
    async def check_writable(self) -> None:
        """Raise ``StorageUnavailable`` unless a write transaction can start and commit."""

    @abstractmethod
    async def server_seed(self) -> bytes:
        """The server's Ed25519 seed, created on first use."""

    @abstractmethod
    async def create_invite(self, phone: str, code_hash: bytes, now: int, expires_at: int) -> None:
        """Store a one-time enrolment code (by its hash) for a phone."""

    @abstractmethod
    async def register(self, code_hash: bytes, phone: str, sign_key: bytes, hpke_key: bytes,
                       now: int) -> tuple[int, int]:
        """Use an enrolment code: create the user if new and the device; (user id, device id).
        Raises ``InviteRefused``; nothing changes then."""

    @abstractmethod
    async def device(self, device_id: int) -> DeviceRecord | None:
        """A device by id."""

    @abstractmethod
    async def user_by_phone(self, phone: str) -> UserRecord | None:
        """A user and all their devices (revoked included)."""

    @abstractmethod
    async def revoke(self, device_id: int, now: int) -> bool:
        """Revoke a device and end its sessions; False if no such device."""

    @abstractmethod
    async def use_challenge(self, nonce: bytes, expires_at: int, now: int) -> bool:
        """Mark an answered challenge used until it expires: False if it was used before.
        (Challenges are stateless until answered, so asking for one writes nothing.)"""

    @abstractmethod
    async def create_session(self, device_id: int, request_key: bytes, response_key: bytes,
                             now: int, expires_at: int) -> int:
        """Store a session's keys; returns its id."""

    @abstractmethod
    async def session(self, session_id: int) -> SessionRecord | None:
        """A session with its device's state, or None."""

    @abstractmethod
    async def lookup(self, phones: Sequence[str], user_ids: Sequence[int]) -> list[UserRecord]:
        """Users by phone or id, with their devices; unknown ones are left out."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[WriteTx]:
        """A write transaction: commits on normal exit, rolls back on an exception."""

    @abstractmethod
    def snapshot(self) -> AbstractAsyncContextManager[ReadTx]:
        """A read transaction over one consistent committed state."""

    @abstractmethod
    async def database_bytes(self) -> int:
        """The space the database takes (for the metrics endpoint: cheap)."""

    @abstractmethod
    async def stats(self) -> Stats:
        """Counts for operators."""

    @abstractmethod
    async def backup(self, destination: Path) -> None:
        """A consistent copy of the database, taken while it serves."""
