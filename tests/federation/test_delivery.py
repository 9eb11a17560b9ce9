"""Delivery: one durable job per destination inbox, signed so that the receiver can verify
it, retried on 5xx / 429 / timeouts with back-off and the server's Retry-After, given up on
permanent refusals, and held back by a per-host breaker. The remote inbox is a real HTTP
server on loopback (tests/federation/remote_inbox.py) that checks each signature with the
sender's public key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.config import Settings
from kith.db import utcnow
from kith.federation import delivery, keys, sending
from kith.federation.models import DeliveryHost, OutboundActivity
from kith.jobs.models import Job
from kith.runtime import Runtime
from tests.federation.remote_inbox import (
    RemoteInbox,
    learn_keys,
    remote_inbox,
    remote_person,
    run_jobs,
)
from tests.world import person


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "federation_allow_private": True,
            "federation_delivery_retry_seconds": 30.0,
            "federation_fetch_seconds": 2.0,
        }
    )


@pytest.fixture
async def peer(db: AsyncSession) -> AsyncIterator[RemoteInbox]:
    async with remote_inbox("127.0.0.1") as inbox:
        yield inbox


@pytest.fixture
async def ana(db: AsyncSession, peer: RemoteInbox) -> Account:
    account = await person(db, "ana")
    await keys.local_key(db, account)
    await keys.instance_key(db)
    await learn_keys(db, peer)
    return account


def activity(n: int = 1) -> dict[str, Any]:
    return {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"http://kith.test/users/ana#test/{n}",
        "type": "Like",
        "actor": "http://kith.test/users/ana",
        "object": "http://127.0.0.1/users/bob/statuses/1",
    }


async def jobs(db: AsyncSession) -> list[Job]:
    rows = await db.scalars(
        select(Job)
        .where(Job.kind == delivery.DELIVER_JOB)
        .order_by(Job.run_at)
        .execution_options(populate_existing=True)
    )
    return list(rows.all())


async def make_due(db: AsyncSession) -> None:
    """Time passes: every waiting delivery is due now."""
    await db.execute(update(Job).values(run_at=utcnow() - timedelta(seconds=1)))
    await db.commit()


async def host_state(db: AsyncSession, peer: RemoteInbox) -> DeliveryHost | None:
    return await db.get(DeliveryHost, peer.host, populate_existing=True)


# --- enqueueing ---------------------------------------------------------------------------


async def test_deliver__one_job_per_distinct_inbox_shared_inbox_preferred(
    db: AsyncSession, ana: Account, peer: RemoteInbox
) -> None:
    # Given two people on one server that has a shared inbox, and one on a server without
    bob = await remote_person(db, peer, "bob")
    cy = await remote_person(db, peer, "cy")
    async with remote_inbox("127.0.0.2") as other:
        dee = await remote_person(db, other, "dee", shared=False)
        # When an activity is delivered to all three (and to ourselves, and to garbage)
        inboxes = await delivery.inboxes_of(db, [bob, cy, dee, ana])
        n = await delivery.deliver(
            db, ana, activity(), [*inboxes, "http://kith.test/inbox", "mailto:x@y", ""]
        )
        await db.commit()
    # Then there is one job for the shared inbox and one for dee's own inbox
    assert inboxes == {peer.shared_inbox, other.personal_inbox("dee")}
    assert n == 2
    assert sorted(j.payload["inbox"] for j in await jobs(db)) == sorted(inboxes)
    assert await db.scalar(select(func.count()).select_from(OutboundActivity)) == 1


async def test_deliver__no_remote_inbox_writes_nothing(db: AsyncSession, ana: Account) -> None:
    assert await delivery.deliver(db, ana, activity(), []) == 0
    assert await delivery.inboxes_of(db, [ana]) == set()
    await db.commit()
    assert await jobs(db) == []
    assert await db.scalar(select(func.count()).select_from(OutboundActivity)) == 0


async def test_deliver__is_part_of_the_callers_transaction(
    db: AsyncSession, ana: Account, peer: RemoteInbox
) -> None:
    await delivery.deliver(db, ana, activity(), [peer.shared_inbox])
    await db.rollback()
    assert await jobs(db) == []


async def test_suspended_remote_accounts_get_nothing(
    db: AsyncSession, ana: Account, peer: RemoteInbox
) -> None:
    bob = await remote_person(db, peer, "bob")
    bob.suspended_at = utcnow()
    await db.commit()
    assert await delivery.inboxes_of(db, [bob]) == set()


# --- sending ------------------------------------------------------------------------------


async def test_delivery__signed_by_the_actor_and_verified_by_the_receiver(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    # Given an activity queued for a remote inbox
    await delivery.deliver(db, ana, activity(), [peer.shared_inbox])
    await db.commit()
    # When the worker runs
    await run_jobs(rt)
    # Then the remote server got it once, signed with ana's key, and the job is gone
    assert [(d.activity["id"], d.verified) for d in peer.received] == [(activity()["id"], True)]
    assert peer.received[0].key_id == "http://kith.test/users/ana#main-key"
    assert await jobs(db) == []
    state = await host_state(db, peer)
    assert state is not None and state.last_status == 202 and state.last_success_at


async def test_delivery__instance_actor_signs_when_there_is_no_actor(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    await delivery.deliver(db, None, activity(), [peer.shared_inbox])
    await db.commit()
    await run_jobs(rt)
    assert peer.received[0].key_id == "http://kith.test/actor#main-key"
    assert peer.received[0].verified


async def test_delivery__a_forged_key_is_not_accepted_by_the_receiver(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    # The receiver's check is real: with another key on file, the signature fails.
    peer.keys["http://kith.test/users/ana#main-key"] = peer.keys["http://kith.test/actor#main-key"]
    await delivery.deliver(db, ana, activity(), [peer.shared_inbox])
    await db.commit()
    await run_jobs(rt)
    assert [d.verified for d in peer.received] == [False]


async def test_delivery__error_500__retried_later_then_delivered(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    # Given a server that fails once
    peer.answer(500)
    await delivery.deliver(db, ana, activity(), [peer.shared_inbox])
    await db.commit()
    # When the worker runs
    before = utcnow()
    await run_jobs(rt)
    # Then the delivery waits for a second attempt, about 30 s later (± jitter)
    (job,) = await jobs(db)
    assert job.payload["attempt"] == 2
    assert timedelta(seconds=23) < job.run_at - before < timedelta(seconds=37)
    assert len(peer.received) == 1
    # And when that time comes, it is delivered and nothing is left
    await make_due(db)
    await run_jobs(rt)
    assert len(peer.received) == 2 and await jobs(db) == []
    state = await host_state(db, peer)
    assert state is not None and state.consecutive_failures == 0


async def test_delivery__backoff_doubles_with_each_attempt(settings: Settings) -> None:
    waits = [sending.backoff(settings, n).total_seconds() for n in (1, 2, 3, 10, 40)]
    assert 24 <= waits[0] <= 36 and 48 <= waits[1] <= 72 and 96 <= waits[2] <= 144
    assert waits[3] <= sending.MAX_BACKOFF.total_seconds() * 1.2
    assert waits[4] <= sending.MAX_BACKOFF.total_seconds() * 1.2


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_delivery__429_with_retry_after__waits_as_told(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox, form: str
) -> None:
    when = datetime.now(UTC) + timedelta(seconds=600)
    value = "600" if form == "seconds" else format_datetime(when, usegmt=True)
    peer.answer((429, {"Retry-After": value}))
    await delivery.deliver(db, ana, activity(), [peer.shared_inbox])
    await db.commit()
    before = utcnow()
    await run_jobs(rt)
    (job,) = await jobs(db)
    assert timedelta(seconds=590) < job.run_at - before < timedelta(seconds=602)


def test_retry_after__is_capped_and_floored() -> None:
    now = datetime.now(UTC)
    assert sending.parse_retry_after("99999999", now) == sending.RETRY_AFTER_CAP
    assert sending.parse_retry_after("0", now) == timedelta(seconds=1)
    assert sending.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now) == timedelta(seconds=1)
    assert sending.parse_retry_after("soon", now) is None
    assert sending.parse_retry_after(None, now) is None


@pytest.mark.parametrize("status", [400, 403, 404, 410])
async def test_delivery__permanent_refusal__not_retried(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox, status: int
) -> None:
    peer.answer(status)
    await delivery.deliver(db, ana, activity(), [peer.shared_inbox])
    await db.commit()
    await run_jobs(rt)
    await make_due(db)
    await run_jobs(rt)
    assert len(peer.received) == 1
    assert await jobs(db) == []
    state = await host_state(db, peer)
    # The host answered: that is no failure of the host.
    assert state is not None and state.last_status == status
    assert state.consecutive_failures == 0


async def test_delivery__timeout__retried(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    peer.delay = 3.0  # longer than federation_fetch_seconds (2 s)
    await delivery.deliver(db, ana, activity(), [peer.shared_inbox])
    await db.commit()
    await run_jobs(rt)
    (job,) = await jobs(db)
    assert job.payload["attempt"] == 2
    state = await host_state(db, peer)
    assert state is not None and state.consecutive_failures == 1
    assert state.last_status is None and "too long" in state.last_error


async def test_delivery__gives_up_after_the_last_attempt(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    peer.answer(503)
    await delivery.deliver(db, ana, activity(), [peer.shared_inbox])
    await db.commit()
    (job,) = await jobs(db)
    job.payload = {**job.payload, "attempt": sending.MAX_ATTEMPTS}
    await db.commit()
    await run_jobs(rt)
    assert len(peer.received) == 1 and await jobs(db) == []


async def test_delivery__gives_up_after_three_days(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    peer.answer(503)
    await delivery.deliver(db, ana, activity(), [peer.shared_inbox])
    await db.commit()
    (job,) = await jobs(db)
    old = (utcnow() - sending.GIVE_UP_AFTER - timedelta(minutes=1)).timestamp()
    job.payload = {**job.payload, "first_at": old}
    await db.commit()
    await run_jobs(rt)
    assert await jobs(db) == []


async def test_delivery__forgotten_activity__job_ends_quietly(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    await delivery.deliver(db, ana, activity(), [peer.shared_inbox])
    await db.commit()
    await db.execute(update(OutboundActivity).values(created_at=utcnow() - timedelta(days=8)))
    await db.commit()
    await delivery.forget_old_activities(db)
    await db.commit()
    await run_jobs(rt)
    assert peer.received == [] and await jobs(db) == []


# --- the breaker --------------------------------------------------------------------------


async def test_breaker__opens_after_repeated_failures_and_holds_jobs_without_requests(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    # Given a host that failed BREAKER_THRESHOLD times in a row
    peer.answer(*[500] * sending.BREAKER_THRESHOLD)
    for n in range(sending.BREAKER_THRESHOLD):
        await delivery.deliver(db, ana, activity(n), [peer.shared_inbox])
    await db.commit()
    await run_jobs(rt)
    state = await host_state(db, peer)
    assert state is not None
    assert state.consecutive_failures == sending.BREAKER_THRESHOLD
    assert state.unavailable_until is not None and state.unavailable_until > utcnow()
    assert len(peer.received) == sending.BREAKER_THRESHOLD
    # When more deliveries to it come due during the cool-down
    await delivery.deliver(db, ana, activity(99), [peer.shared_inbox])
    await make_due(db)
    await run_jobs(rt)
    # Then no request is made, and every job waits past the cool-down, none dropped and
    # none charged an attempt
    assert len(peer.received) == sending.BREAKER_THRESHOLD
    waiting = await jobs(db)
    assert len(waiting) == sending.BREAKER_THRESHOLD + 1
    assert all(j.run_at >= state.unavailable_until for j in waiting)
    fresh = [j for j in waiting if j.payload["attempt"] == 1]
    assert len(fresh) == 1


async def test_breaker__closes_when_the_host_answers_again(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    peer.answer(*[500] * sending.BREAKER_THRESHOLD)
    for n in range(sending.BREAKER_THRESHOLD):
        await delivery.deliver(db, ana, activity(n), [peer.shared_inbox])
    await db.commit()
    await run_jobs(rt)
    # When the cool-down is over and the host is back
    await db.execute(update(DeliveryHost).values(unavailable_until=utcnow() - timedelta(seconds=1)))
    await make_due(db)
    await run_jobs(rt)
    # Then everything waiting is delivered and the breaker is closed
    state = await host_state(db, peer)
    assert state is not None
    assert state.consecutive_failures == 0 and state.unavailable_until is None
    delivered = {d.activity["id"] for d in peer.received[sending.BREAKER_THRESHOLD :]}
    assert delivered == {activity(n)["id"] for n in range(sending.BREAKER_THRESHOLD)}
    assert await jobs(db) == []


async def test_breaker__a_failed_probe_opens_it_again_for_longer(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox, settings: Settings
) -> None:
    peer.answer(*[500] * (sending.BREAKER_THRESHOLD + 1))
    for n in range(sending.BREAKER_THRESHOLD):
        await delivery.deliver(db, ana, activity(n), [peer.shared_inbox])
    await db.commit()
    await run_jobs(rt)
    await db.execute(update(DeliveryHost).values(unavailable_until=utcnow() - timedelta(seconds=1)))
    await db.commit()
    (first, *_) = await jobs(db)
    await db.execute(update(Job).where(Job.id == first.id).values(run_at=utcnow()))
    await db.commit()
    await run_jobs(rt)
    state = await host_state(db, peer)
    assert state is not None and state.unavailable_until is not None
    assert state.consecutive_failures == sending.BREAKER_THRESHOLD + 1
    assert sending.cool_down(settings, 6) > sending.cool_down(settings, 5)


async def test_breaker__one_host_down_does_not_hold_back_another(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    await db.merge(
        DeliveryHost(
            host=peer.host,
            consecutive_failures=9,
            unavailable_until=utcnow() + timedelta(hours=1),
        )
    )
    await db.commit()
    async with remote_inbox("127.0.0.2") as other:
        await learn_keys(db, other)
        await delivery.deliver(db, ana, activity(), [peer.shared_inbox, other.shared_inbox])
        await db.commit()
        await run_jobs(rt)
        assert len(other.received) == 1
    assert peer.received == []


# --- one worker, many hosts ---------------------------------------------------------------


async def test_deliveries_to_different_hosts__sent_at_once_each_once(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    # Given three servers that each take a second to answer, and two activities for each
    async with remote_inbox("127.0.0.2") as second, remote_inbox("127.0.0.3") as third:
        servers = [peer, second, third]
        await learn_keys(db, *servers)
        for server in servers:
            server.delay = 1.0
        for n in (1, 2):
            await delivery.deliver(db, ana, activity(n), [s.shared_inbox for s in servers])
        await db.commit()
        # When one worker runs them
        started = asyncio.get_running_loop().time()
        await run_jobs(rt)
        elapsed = asyncio.get_running_loop().time() - started
    # Then the servers were waited on together (one after another would take 6 s), each
    # host's two deliveries one after the other, in order; each verified once
    assert elapsed < 4.0
    for server in servers:
        assert [(d.activity["id"], d.verified) for d in server.received] == [
            (activity(1)["id"], True),
            (activity(2)["id"], True),
        ]
    assert await jobs(db) == []


async def test_success__after_another_worker_counted_a_failure__resets_the_count(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    # Given a host known as healthy when the delivery starts
    await db.merge(DeliveryHost(host=peer.host, last_success_at=utcnow(), last_status=202))
    await delivery.deliver(db, ana, activity(), [peer.shared_inbox])
    await db.commit()
    peer.delay = 0.5
    running = asyncio.create_task(run_jobs(rt))
    # When, while it waits for the answer, another worker counts a failure of that host
    await asyncio.sleep(0.25)
    await db.execute(update(DeliveryHost).values(consecutive_failures=3))
    await db.commit()
    await running
    # Then the answer that came resets the count (the record read before sending was stale)
    state = await host_state(db, peer)
    assert state is not None and state.consecutive_failures == 0 and state.last_status == 202
    assert len(peer.received) == 1


async def test_success__on_a_healthy_host__writes_no_record(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    # A healthy host's record is refreshed at most every HEALTHY_REFRESH, not per delivery.
    recently = utcnow() - timedelta(seconds=30)
    await db.merge(
        DeliveryHost(
            host=peer.host, last_success_at=recently, last_attempt_at=recently, last_status=202
        )
    )
    await delivery.deliver(db, ana, activity(), [peer.shared_inbox])
    await db.commit()
    await run_jobs(rt)
    state = await host_state(db, peer)
    assert len(peer.received) == 1
    assert state is not None and state.last_attempt_at == recently
