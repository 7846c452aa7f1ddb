"""The notifier behind long-poll: events, narrowing, one wait per session, payloads."""

from __future__ import annotations

import asyncio

from syncd.notify import PER_PAYLOAD, Commit, LocalNotifier


def test_payloads_split_big_events_and_decode_to_the_same_ids() -> None:
    convs = frozenset(n.to_bytes(8, "big") for n in range(1, 2 * PER_PAYLOAD + 7))
    users = frozenset(range(10**18, 10**18 + PER_PAYLOAD + 1))
    payloads = Commit(convs, users).payloads()
    assert len(payloads) == 3 + 2
    assert all(len(p.encode()) < 8000 for p in payloads)  # PostgreSQL's limit
    decoded = [Commit.decode(p) for p in payloads]
    assert not any(c.everything for c in decoded)
    assert frozenset().union(*(c.convs for c in decoded)) == convs
    assert frozenset().union(*(c.users for c in decoded)) == users
    assert Commit(everything=True).payloads() == ["*"]
    assert Commit.decode("*").everything and Commit.decode("garbage;x").everything


def test_a_narrowed_waiter_wakes_only_for_its_conversations_or_its_user() -> None:
    async def scenario() -> list[bool]:
        notifier = LocalNotifier()
        woke = []
        with notifier.subscribe() as sub:
            sub.narrow({b"mine-000"}, user=7)
            for event in (Commit(frozenset({b"other-00"})), Commit(users=frozenset({8})),
                          Commit(frozenset({b"mine-000"})), Commit(users=frozenset({7})),
                          Commit(everything=True)):
                await notifier.publish(event)
                woke.append(await sub.wait(0.01))
        assert notifier.waiting == 0  # nothing left behind
        return woke

    assert asyncio.run(scenario()) == [False, False, True, True, True]


def test_an_event_before_narrowing_is_kept_if_it_concerns_the_waiter() -> None:
    async def scenario() -> tuple[bool, bool]:
        notifier = LocalNotifier()
        with notifier.subscribe() as sub:  # subscribed, still reading its conversations
            await notifier.publish(Commit(frozenset({b"mine-000"})))
            sub.narrow({b"mine-000"}, user=1)
            kept = await sub.wait(0.01)
        with notifier.subscribe() as sub:
            await notifier.publish(Commit(frozenset({b"other-00"})))
            sub.narrow({b"mine-000"}, user=1)
            dropped = await sub.wait(0.01)
        return kept, dropped

    assert asyncio.run(scenario()) == (True, False)


def test_one_wait_per_session_and_close_ends_every_wait() -> None:
    async def scenario() -> None:
        notifier = LocalNotifier()
        with notifier.subscribe(key=5) as older, notifier.subscribe(key=5) as newer:
            assert older.ended and not newer.ended
            assert await older.wait(5) is False  # at once, not after 5 s
            with notifier.subscribe(key=6) as other:
                await notifier.close()
                assert newer.ended and other.ended
                assert await other.wait(5) is False

    asyncio.run(asyncio.wait_for(scenario(), 2))
