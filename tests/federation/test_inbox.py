"""The inbox verifies and stores, then answers 202 — and refuses each forgery with nothing
stored: replays, changed bodies, keys of other actors or other hosts, oversized or malformed
bodies. Remote actors and keys are served by a real local HTTP server (tests/federation/peer.py)
and fetched through Kith's SSRF-safe client, nothing mocked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.config import Settings
from kith.federation.models import ActorKey, InboxItem, RemoteActor
from kith.federation.processing import ACTIVITY_HANDLERS, NOT_HANDLED
from kith.jobs import worker
from kith.jobs.models import Job
from kith.runtime import Runtime
from tests.federation.local_http import local_server
from tests.federation.peer import Peer, public_pem, rsa_key
from tests.world import person, running_app

pytestmark = pytest.mark.usefixtures("rt")


@pytest.fixture
def fed_settings(settings: Settings) -> Settings:
    # The peers run on 127.0.0.x: let the outbound client reach loopback, as local
    # federation setups do.
    return settings.model_copy(update={"federation_allow_private": True})


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with local_server("127.0.0.1") as server:
        p = Peer(server)
        p.add_actor("alice", key=0)
        p.add_actor("mallory", key=1)
        yield p


async def count(db: AsyncSession, model: type, *where: object) -> int:
    stmt = select(func.count()).select_from(model).where(*where)  # type: ignore[arg-type]
    return int(await db.scalar(stmt.execution_options(populate_existing=True)) or 0)


async def nothing_stored(db: AsyncSession) -> bool:
    return (
        await count(db, InboxItem) == 0
        and await count(db, Account, Account.domain != "") == 0
        and await count(db, ActorKey, ActorKey.private_key_pem.is_(None)) == 0
        and await count(db, Job, Job.kind == "federation.inbox") == 0
    )


async def deliver(
    settings: Settings, headers: dict[str, str], body: bytes, path: str = "/inbox"
) -> tuple[int, str]:
    async with running_app(settings) as client:
        r = await client.post(path, content=body, headers=headers)
    return r.status_code, r.text


# --- accepted ----------------------------------------------------------------------------


async def test_signed_create__is_stored_with_its_actor_and_a_job(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    # Given a remote actor we have never seen
    activity = peer.activity("alice", "Create", peer.note("alice"))
    # When she delivers a signed Create to the shared inbox
    status, _ = await deliver(fed_settings, *peer.sign(activity))
    # Then it is accepted for later processing
    assert status == 202
    item = await db.scalar(select(InboxItem))
    assert item is not None and item.activity_id == activity["id"]
    assert item.activity_type == "Create" and item.recipient_account_id is None
    assert await count(db, Job, Job.kind == "federation.inbox") == 1
    # And her account, endpoints and key were fetched and remembered
    alice = await db.scalar(select(Account).where(Account.uri == peer.actor_uri("alice")))
    assert alice is not None
    assert (alice.username, alice.domain, alice.display_name) == (
        "alice",
        peer.server.authority,
        "Alice",
    )
    remote = await db.scalar(select(RemoteActor).where(RemoteActor.account_id == alice.id))
    assert remote is not None and remote.shared_inbox_url == f"{peer.base}/inbox"
    key = await db.scalar(select(ActorKey).where(ActorKey.key_id == peer.key_id("alice")))
    assert key is not None and key.account_id == alice.id and key.fetched_at is not None
    # And the key fetch was signed by our instance actor
    fetch = next(r for r in peer.server.requests if r.target == "/users/alice")
    assert 'keyId="http://kith.test/actor#main-key"' in fetch.headers["signature"]


async def test_personal_inbox__records_the_recipient(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    bo = await person(db, "bo")
    activity = peer.activity("alice", "Follow", "http://kith.test/users/bo")
    status, _ = await deliver(
        fed_settings, *peer.sign(activity, path="/users/bo/inbox"), "/users/bo/inbox"
    )
    assert status == 202
    item = await db.scalar(select(InboxItem))
    assert item is not None and item.recipient_account_id == bo.id


async def test_personal_inbox__of_nobody__is_404(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    activity = peer.activity("alice", "Follow", "http://kith.test/users/nobody")
    path = "/users/nobody/inbox"
    status, _ = await deliver(fed_settings, *peer.sign(activity, path=path), path)
    assert status == 404 and await nothing_stored(db)


async def test_rfc9421_signed_delivery__is_accepted(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    activity = peer.activity("alice", "Like", "http://kith.test/users/bo/statuses/1")
    status, _ = await deliver(fed_settings, *peer.sign(activity, rfc9421=True))
    assert status == 202 and await count(db, InboxItem) == 1


async def test_duplicate_delivery__takes_effect_once(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    # Given an activity delivered once
    activity = peer.activity("alice", "Create", peer.note("alice"))
    assert (await deliver(fed_settings, *peer.sign(activity)))[0] == 202
    # When the same activity arrives again (a retry, or a replay within the time window)
    status, _ = await deliver(fed_settings, *peer.sign(activity))
    # Then it is acknowledged, but nothing new is stored or queued
    assert status == 202
    assert await count(db, InboxItem) == 1
    assert await count(db, Job, Job.kind == "federation.inbox") == 1


async def test_key_rotation__is_fetched_again_once(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    # Given alice is known with her first key
    first = peer.activity("alice", "Create", peer.note("alice"))
    assert (await deliver(fed_settings, *peer.sign(first)))[0] == 202
    # When she rotates her key and signs with the new one
    peer.add_actor("alice", key=2)
    second = peer.activity("alice", "Create", peer.note("alice"))
    status, _ = await deliver(fed_settings, *peer.sign(second))
    # Then the stale key fails, the actor is fetched again once, and the delivery is accepted
    assert status == 202
    assert peer.fetches_of("alice") == 2
    key = await db.scalar(
        select(ActorKey)
        .where(ActorKey.key_id == peer.key_id("alice"))
        .execution_options(populate_existing=True)
    )
    assert key is not None and key.public_key_pem == public_pem(rsa_key(2))


async def test_bad_signature_from_a_known_key__refetches_once_then_401(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    first = peer.activity("alice", "Create", peer.note("alice"))
    assert (await deliver(fed_settings, *peer.sign(first)))[0] == 202
    forged = peer.activity("alice", "Delete", peer.actor_uri("alice") + "/statuses/1")
    status, _ = await deliver(fed_settings, *peer.sign(forged, key=rsa_key(3)))
    assert status == 401
    assert peer.fetches_of("alice") == 2  # the first fetch, and one refetch
    assert await count(db, InboxItem) == 1


# --- attacks -----------------------------------------------------------------------------


async def test_attack__replay_with_a_stale_date(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    activity = peer.activity("alice", "Create", peer.note("alice"))
    stale = datetime.now(UTC) - timedelta(hours=13)
    status, text = await deliver(fed_settings, *peer.sign(activity, now=stale))
    assert status == 401 and "12 hours" in text
    assert await nothing_stored(db)
    assert peer.fetches_of("alice") == 0  # refused before any key fetch


async def test_attack__body_altered_after_signing(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    activity = peer.activity("alice", "Create", peer.note("alice", "I like tea"))
    headers, _ = peer.sign(activity)
    altered = peer.activity("alice", "Create", peer.note("alice", "Send me your password"))
    status, _ = await deliver(fed_settings, headers, json.dumps(altered).encode())
    assert status == 400
    assert await nothing_stored(db)


async def test_attack__signed_with_the_key_of_another_actor(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    # Given mallory, on the same server, forges an activity "by" alice with her own key
    forged = peer.activity("alice", "Create", peer.note("alice", "forged"))
    status, text = await deliver(fed_settings, *peer.sign(forged, signer="mallory"))
    # Then the key's owner is not the actor: refused, nothing stored
    assert status == 401 and "another actor" in text
    assert await nothing_stored(db)


async def test_attack__known_key_of_another_actor(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    # Given mallory's key is already known from an honest delivery
    honest = peer.activity("mallory", "Like", "http://kith.test/users/bo/statuses/1")
    assert (await deliver(fed_settings, *peer.sign(honest)))[0] == 202
    # When she signs an activity whose actor is alice
    forged = peer.activity("alice", "Create", peer.note("alice", "forged"))
    status, _ = await deliver(fed_settings, *peer.sign(forged, signer="mallory"))
    # Then it is refused and alice is never even fetched
    assert status == 401
    assert await count(db, InboxItem) == 1
    assert peer.fetches_of("alice") == 0


async def test_attack__key_on_another_host_than_the_actor(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    # Given an attacker's server on another address, with a valid key of its own
    async with local_server("127.0.0.2") as evil_server:
        evil = Peer(evil_server)
        evil.add_actor("mallory", key=1)
        # When it signs an activity whose actor is alice (on the first server)
        forged = peer.activity("alice", "Create", peer.note("alice", "forged"))
        headers, body = evil.sign(forged, signer="mallory")
        status, text = await deliver(fed_settings, headers, body)
    # Then it is refused before anything is fetched
    assert status == 401 and "host" in text
    assert evil_server.requests == [] and peer.fetches_of("alice") == 0
    assert await nothing_stored(db)


async def test_attack__create_of_an_object_on_another_host(
    db: AsyncSession, rt: Runtime, fed_settings: Settings, peer: Peer
) -> None:
    # Given alice's signed Create of a Note whose id is on another server
    note = peer.note("alice")
    note["id"] = "https://victim.example/users/bob/statuses/1"
    activity = peer.activity("alice", "Create", note)
    # When it is delivered and processed
    assert (await deliver(fed_settings, *peer.sign(activity)))[0] == 202
    await worker.run_once(rt.sessions, "test-worker")
    # Then the origin rule refused it
    item = await db.scalar(select(InboxItem).execution_options(populate_existing=True))
    assert item is not None and item.processed_at is not None
    assert item.outcome.startswith("refused:") and "another host" in item.outcome


async def test_processing__dispatches_by_type(
    db: AsyncSession,
    rt: Runtime,
    fed_settings: Settings,
    peer: Peer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    async def on_like(db: AsyncSession, item: InboxItem) -> str:
        seen.append(item.activity_id)
        return "liked"

    monkeypatch.setitem(ACTIVITY_HANDLERS, "Like", on_like)
    like = peer.activity("alice", "Like", "http://kith.test/users/bo/statuses/1")
    move = peer.activity("alice", "Listen", "https://x.test/tracks/1")  # nobody handles it
    for activity in (like, move):
        assert (await deliver(fed_settings, *peer.sign(activity)))[0] == 202
    await worker.run_once(rt.sessions, "test-worker")
    items = {
        i.activity_type: i
        for i in await db.scalars(select(InboxItem).execution_options(populate_existing=True))
    }
    assert seen == [like["id"]] and items["Like"].outcome == "liked"
    assert items["Listen"].outcome == NOT_HANDLED and items["Listen"].processed_at is not None


async def test_attack__oversized_body__413_without_reading_it_all(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(64):  # 4 MiB offered in 64 KiB chunks
            sent += 65536
            yield b" " * 65536

    headers, _ = peer.sign(peer.activity("alice", "Create", peer.note("alice")))
    async with running_app(fed_settings) as client:
        streamed = await client.post("/inbox", content=chunks(), headers=headers)
        declared = await client.post(
            "/inbox", content=b"{}", headers={**headers, "Content-Length": str(2 * 1024 * 1024)}
        )
    assert streamed.status_code == 413 and sent <= 1024 * 1024 + 2 * 65536
    assert declared.status_code == 413
    assert await nothing_stored(db)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"not json", "application/activity+json", 400),
        (b"[1, 2]", "application/activity+json", 400),
        (b'{"type": "Create"}', "application/activity+json", 400),
        (b'{"id": "x", "type": "Create", "actor": "y"}', "application/activity+json", 400),
        (b"[" * 100 + b"]" * 100, "application/activity+json", 400),
        (b"{}", "text/plain", 415),
    ],
)
async def test_malformed_delivery__is_a_4xx(
    db: AsyncSession,
    fed_settings: Settings,
    peer: Peer,
    body: bytes,
    content_type: str,
    status: int,
) -> None:
    headers, _ = peer.sign(body, signer="alice")
    headers["content-type"] = content_type
    assert (await deliver(fed_settings, headers, body))[0] == status
    assert await nothing_stored(db)


async def test_deeply_nested_activity__400(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    nested: dict[str, object] = {"type": "Note"}
    for _ in range(40):
        nested = {"type": "Note", "inReplyTo": nested}
    activity = peer.activity("alice", "Create", nested)
    status, text = await deliver(fed_settings, *peer.sign(activity))
    assert status == 400 and "nested" in text
    assert await nothing_stored(db)


async def test_unsigned_delivery__401(db: AsyncSession, fed_settings: Settings, peer: Peer) -> None:
    body = json.dumps(peer.activity("alice", "Create", peer.note("alice"))).encode()
    status, _ = await deliver(fed_settings, {"Content-Type": "application/activity+json"}, body)
    assert status == 401 and await nothing_stored(db)


async def test_delivery_signed_for_another_host__401(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    activity = peer.activity("alice", "Create", peer.note("alice"))
    headers, body = peer.sign(activity, host="other.example")
    status, _ = await deliver(fed_settings, headers, body)
    assert status == 401 and await nothing_stored(db)


async def test_key_fetch_refused_by_the_outbound_guard__401(
    db: AsyncSession, settings: Settings, peer: Peer
) -> None:
    # Given the default settings: the peer on loopback may not be fetched
    activity = peer.activity("alice", "Create", peer.note("alice"))
    status, text = await deliver(settings, *peer.sign(activity))
    assert status == 401 and "could not get the signing key" in text
    assert peer.server.requests == [] and await nothing_stored(db)
