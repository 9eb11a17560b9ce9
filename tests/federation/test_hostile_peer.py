"""The hostile-peer suite's remaining cases, end to end through the inbox: a peer whose actor
URL redirects into the local network, a key URL that drips its answer forever, and a delivery
whose Digest was stripped. Each is refused with nothing stored. (The other forgeries the
issue lists are in test_inbox.py — wrong key owner, stale date, replay, altered body, size,
nesting — and test_inbound_posts.py / test_origin.py — foreign-origin Create/Update/Delete and
reused object URIs.)"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.config import Settings
from kith.federation.models import ActorKey, InboxItem
from kith.jobs.models import Job
from tests.federation.inbound import count
from tests.federation.local_http import endless, local_server, redirect
from tests.federation.peer import Peer
from tests.world import running_app

pytestmark = pytest.mark.usefixtures("rt")


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with local_server("127.0.0.1") as server:
        p = Peer(server)
        p.add_actor("alice", key=0)
        yield p


async def nothing_stored(db: AsyncSession) -> bool:
    return (
        await count(db, InboxItem) == 0
        and await count(db, Account, Account.domain != "") == 0
        and await count(db, ActorKey, ActorKey.private_key_pem.is_(None)) == 0
        and await count(db, Job, Job.kind == "federation.inbox") == 0
    )


async def post_inbox(settings: Settings, headers: dict[str, str], body: bytes) -> tuple[int, str]:
    async with running_app(settings) as client:
        r = await client.post("/inbox", content=body, headers=headers)
    return r.status_code, r.text


async def test_attack__actor_url_redirects_into_the_local_network(
    db: AsyncSession, settings: Settings, peer: Peer
) -> None:
    # Given only the peer may be reached, and its actor URL redirects to an internal server
    # that would serve a perfectly valid actor with the same key
    async with local_server("127.0.0.2") as internal:
        internal.routes["/users/alice"] = peer.server.routes["/users/alice"]
        peer.server.routes["/users/alice"] = redirect(f"{internal.base}/users/alice")
        allowed = settings.model_copy(update={"federation_allowed_hosts": peer.server.authority})
        # When the peer delivers, making Kith fetch its key
        activity = peer.activity("alice", "Create", peer.note("alice"))
        status, _ = await post_inbox(allowed, *peer.sign(activity))
    # Then the redirect is checked again, the internal server is never asked, nothing stored
    assert status == 401
    assert peer.fetches_of("alice") == 1 and internal.requests == []
    assert await nothing_stored(db)


async def test_attack__key_url_answers_slowly_forever(
    db: AsyncSession, settings: Settings, peer: Peer
) -> None:
    # Given a peer whose key URL drips one byte at a time and never ends (each byte comes
    # before any read timeout, so only the total time limit can stop it)
    peer.server.routes["/users/alice"] = endless(b" ", pause=0.05)
    slow = settings.model_copy(
        update={"federation_allow_private": True, "federation_fetch_seconds": 1.0}
    )
    activity = peer.activity("alice", "Create", peer.note("alice"))
    # When it delivers
    started = time.monotonic()
    status, _ = await post_inbox(slow, *peer.sign(activity))
    # Then the inbox gives up after the fetch's total limit and stores nothing
    assert status == 401
    assert time.monotonic() - started < 8
    assert await nothing_stored(db)


async def test_attack__digest_stripped_after_signing(
    db: AsyncSession, settings: Settings, peer: Peer
) -> None:
    open_settings = settings.model_copy(update={"federation_allow_private": True})
    headers, body = peer.sign(peer.activity("alice", "Create", peer.note("alice")))
    stripped = {k: v for k, v in headers.items() if k.lower() != "digest"}
    status, _ = await post_inbox(open_settings, stripped, body)
    assert status in (400, 401)
    assert await nothing_stored(db)
