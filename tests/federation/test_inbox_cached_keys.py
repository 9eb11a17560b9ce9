"""The inbox's per-process copy of the keys that verified lately (`inbox._cached_keys`): one
app (one process) receives several deliveries, so later ones verify with the copy and store in
one statement that checks the copy against the database. Every check still holds: a stale
copy (rotation, a key that changed owner meanwhile) falls back to the checked way, a repeat
takes effect once, and concurrent deliveries are all stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.config import Settings
from kith.federation import domain_blocks
from kith.federation.models import ActorKey, InboxItem
from kith.jobs.models import Job
from kith.runtime import Runtime
from tests.federation.local_http import local_server
from tests.federation.peer import Peer, public_pem, rsa_key
from tests.federation.test_inbox import count
from tests.world import running_app

pytestmark = pytest.mark.usefixtures("rt")


@pytest.fixture
def fed_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"federation_allow_private": True})


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with local_server("127.0.0.1") as server:
        p = Peer(server)
        p.add_actor("alice", key=0)
        p.add_actor("mallory", key=1)
        yield p


@contextmanager
def key_lookups(client: httpx.AsyncClient) -> Iterator[list[str]]:
    """The statements that read `actor_keys` on their own, while the block runs."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    engine = transport.app.state.runtime.engine.sync_engine  # type: ignore[attr-defined]
    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "actor_keys" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listen)


async def post(client: httpx.AsyncClient, signed: tuple[dict[str, str], bytes]) -> int:
    headers, body = signed
    return (await client.post("/inbox", content=body, headers=headers)).status_code


def create(peer: Peer, name: str = "alice") -> dict[str, Any]:
    return peer.activity(name, "Create", peer.note(name))


async def test_second_delivery__verifies_with_the_copy_and_repeats_take_effect_once(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    async with running_app(fed_settings) as client:
        assert await post(client, peer.sign(create(peer))) == 202  # the key is fetched
        second = create(peer)
        with key_lookups(client) as lookups:
            assert await post(client, peer.sign(second)) == 202
        assert lookups == []  # the copy verified it; the store statement checked it
        # A repeat of the same activity is acknowledged and stores nothing new
        assert await post(client, peer.sign(second)) == 202
        assert await post(client, peer.sign(second)) == 202
    assert await count(db, InboxItem) == 2
    assert await count(db, Job, Job.kind == "federation.inbox") == 2
    assert peer.fetches_of("alice") == 1


async def test_rotated_key__the_copy_fails__fetched_again_once(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    async with running_app(fed_settings) as client:
        assert await post(client, peer.sign(create(peer))) == 202
        peer.add_actor("alice", key=2)
        assert await post(client, peer.sign(create(peer))) == 202
        assert peer.fetches_of("alice") == 2
        with key_lookups(client) as lookups:  # the new key is the copy now
            assert await post(client, peer.sign(create(peer))) == 202
        assert lookups == []
        # A signature by a key alice never had: the copy fails, one refetch, refused
        forged = peer.sign(create(peer), key=rsa_key(3))
        assert await post(client, forged) == 401
    assert peer.fetches_of("alice") == 3
    assert await count(db, InboxItem) == 3


async def test_key_given_to_another_actor_meanwhile__the_copy_is_not_trusted(
    db: AsyncSession, rt: Runtime, fed_settings: Settings, peer: Peer
) -> None:
    # Given alice's key verified a delivery (so this process has a copy of it)
    async with running_app(fed_settings) as client:
        assert await post(client, peer.sign(create(peer))) == 202
        assert await post(client, peer.sign(create(peer, "mallory"))) == 202
        # When, in the database (another process), her key id now belongs to mallory
        async with rt.sessions() as other:
            mallory = await other.scalar(select(Account.id).where(Account.username == "mallory"))
            await other.execute(
                update(ActorKey)
                .where(ActorKey.key_id == peer.key_id("alice"))
                .values(account_id=mallory)
            )
            await other.commit()
        # Then a delivery by alice signed with that key is refused: the store statement
        # found the copy stale, and the checked way sees the key is not alice's
        assert await post(client, peer.sign(create(peer))) == 401
    assert await count(db, InboxItem) == 2


async def test_key_pem_changed_meanwhile__checked_against_the_database(
    db: AsyncSession, rt: Runtime, fed_settings: Settings, peer: Peer
) -> None:
    async with running_app(fed_settings) as client:
        assert await post(client, peer.sign(create(peer))) == 202
        # Another process stored another key under alice's key id
        async with rt.sessions() as other:
            await other.execute(
                update(ActorKey)
                .where(ActorKey.key_id == peer.key_id("alice"))
                .values(public_key_pem=public_pem(rsa_key(1)))
            )
            await other.commit()
        # The copy still verifies, but the stored key differs: the checked way fails with
        # the stored key, fetches alice again (she still serves key 0) and accepts
        assert await post(client, peer.sign(create(peer))) == 202
    assert peer.fetches_of("alice") == 2
    assert await count(db, InboxItem) == 2


async def test_concurrent_deliveries__all_stored_once(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    async with running_app(fed_settings) as client:
        assert await post(client, peer.sign(create(peer))) == 202
        batch = [peer.sign(create(peer, name)) for name in ("alice", "mallory") * 12]
        statuses = await asyncio.gather(*(post(client, signed) for signed in batch))
    assert statuses == [202] * 24
    assert await count(db, InboxItem) == 25
    assert await count(db, Job, Job.kind == "federation.inbox") == 25


async def test_suspended_host__refused_with_the_copy_too(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    # Given alice's key verified a delivery (the shared inbox then needs no session for her)
    async with running_app(fed_settings) as client:
        assert await post(client, peer.sign(create(peer))) == 202
        # When an admin of this process suspends her server
        app_runtime: Runtime = client._transport.app.state.runtime  # type: ignore[attr-defined]
        async with app_runtime.sessions() as admin_db:
            await domain_blocks.block_domain(
                admin_db, policy.Viewer(None, is_admin=True), peer.server.authority
            )
            await admin_db.commit()
        # Then her next deliveries are refused: the first reads the blocks again, the
        # second is decided by this process's fresh copy of them
        assert await post(client, peer.sign(create(peer))) == 403
        assert await post(client, peer.sign(create(peer))) == 403
    assert await count(db, InboxItem) == 1
    assert await count(db, Job, Job.kind == "federation.inbox") == 1


async def test_concurrent_repeats__stored_once_each(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    # Given keys already known, and 12 activities each delivered twice at the same moment
    async with running_app(fed_settings) as client:
        assert await post(client, peer.sign(create(peer))) == 202
        assert await post(client, peer.sign(create(peer, "mallory"))) == 202
        activities = [create(peer, name) for name in ("alice", "mallory") * 6]
        batch = [peer.sign(a) for a in activities] * 2
        statuses = await asyncio.gather(*(post(client, signed) for signed in batch))
    # Then every delivery is acknowledged and each activity stored once, with one job
    assert statuses == [202] * 24
    assert await count(db, InboxItem) == 14
    assert await count(db, Job, Job.kind == "federation.inbox") == 14
