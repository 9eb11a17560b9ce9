"""Follows, blocks and reports from another server, through the real inbox and the job; and
a local person's follow of a remote account, pending until its server accepts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.config import Settings
from kith.federation.models import OutboundActivity
from kith.federation.remote_accounts import resolve_handle
from kith.graph import service as graph
from kith.graph.models import Block, Follow, FollowRequest
from kith.moderation.models import Report
from kith.runtime import Runtime
from tests.federation.inbound import (
    count,
    deliver,
    local,
    loopback,
    two_actor_peer,
)
from tests.federation.local_http import json_document
from tests.federation.peer import Peer
from tests.mastodon_api.conftest import token_for
from tests.world import person, running_app
from tests.world import post as local_post

pytestmark = pytest.mark.usefixtures("rt")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with two_actor_peer() as p:
        yield p


async def sent(db: AsyncSession, kind: str) -> list[dict[str, object]]:
    rows = await db.scalars(
        select(OutboundActivity.document).execution_options(populate_existing=True)
    )
    return [d for d in rows.all() if d.get("type") == kind]


async def alice(db: AsyncSession, peer: Peer) -> Account:
    account = await db.scalar(select(Account).where(Account.uri == peer.actor_uri("alice")))
    assert account is not None
    return account


async def test_follow__of_an_open_account__follows_and_accepts(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    bo = await person(db, "bo")
    follow = peer.activity("alice", "Follow", local("bo"))
    assert await deliver(settings, rt, peer, follow) == "accepted"
    assert await count(db, Follow, Follow.followee_id == bo.id) == 1
    (accept,) = await sent(db, "Accept")
    assert isinstance(accept["object"], dict) and accept["object"]["id"] == follow["id"]
    # Undo(Follow) ends it
    undo = peer.activity("alice", "Undo", follow)
    assert await deliver(settings, rt, peer, undo) == "unfollowed"
    assert await count(db, Follow) == 0


async def test_follow__of_a_deleted_account__is_ignored_and_nothing_is_signed(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo's account was deleted here (an admin remains)
    from kith.accounts import deletion
    from kith.federation.models import ActorKey

    await person(db, "ada", admin=True)
    bo = await person(db, "bo")
    await deletion.delete_by_name(db, "bo")
    # When alice's server, which had not heard, sends a Follow of bo
    outcome = await deliver(settings, rt, peer, peer.activity("alice", "Follow", local("bo")))
    # Then nothing follows him, nothing is answered, and no key is made in his name
    assert outcome.startswith("ignored")
    assert await count(db, Follow) == 0 and await sent(db, "Accept") == []
    assert await count(db, ActorKey, ActorKey.account_id == bo.id) == 0


async def test_follow__of_a_locked_account__waits_then_approval_sends_accept(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    bo = await person(db, "bo", locked=True)
    follow = peer.activity("alice", "Follow", local("bo"))
    assert (await deliver(settings, rt, peer, follow)).startswith("requested")
    assert await count(db, Follow) == 0 and await count(db, FollowRequest) == 1
    assert await sent(db, "Accept") == []
    # When bo approves
    await graph.answer_request(db, bo.id, (await alice(db, peer)).id, accept=True)
    # Then alice follows and her server gets an Accept of her very Follow
    assert await count(db, Follow, Follow.followee_id == bo.id) == 1
    (accept,) = await sent(db, "Accept")
    assert isinstance(accept["object"], dict) and accept["object"]["id"] == follow["id"]


async def test_follow_request__rejected_sends_reject(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    bo = await person(db, "bo", locked=True)
    await deliver(settings, rt, peer, peer.activity("alice", "Follow", local("bo")))
    await graph.answer_request(db, bo.id, (await alice(db, peer)).id, accept=False)
    assert await count(db, Follow) == 0 and len(await sent(db, "Reject")) == 1


async def test_outgoing_follow__pending_until_accepted(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo follows remote alice
    bo = await person(db, "bo")
    await deliver(settings, rt, peer, peer.activity("alice", "Like", f"{local('bo')}/statuses/1"))
    assert await graph.follow(db, bo.id, (await alice(db, peer)).id) == "requested"
    assert await count(db, Follow) == 0
    # When a Reject of a follow bo never sent to *mallory* arrives, nothing changes
    stray = peer.activity(
        "mallory",
        "Accept",
        {"type": "Follow", "actor": local("bo"), "object": peer.actor_uri("mallory")},
    )
    assert (await deliver(settings, rt, peer, stray)).startswith("ignored")
    assert await count(db, Follow) == 0
    # When alice accepts
    accept = peer.activity(
        "alice",
        "Accept",
        {"type": "Follow", "actor": local("bo"), "object": peer.actor_uri("alice")},
    )
    assert await deliver(settings, rt, peer, accept) == "follow accepted"
    # Then bo follows her
    assert await count(db, Follow, Follow.follower_id == bo.id) == 1
    assert await count(db, FollowRequest) == 0


async def test_attack__accept_without_a_request_creates_no_follow(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    await person(db, "bo")
    accept = peer.activity(
        "alice",
        "Accept",
        {"type": "Follow", "actor": local("bo"), "object": peer.actor_uri("alice")},
    )
    assert (await deliver(settings, rt, peer, accept)).startswith("ignored")
    assert await count(db, Follow) == 0


async def test_block__removes_follows_both_ways_and_undo(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    bo = await person(db, "bo")
    await deliver(settings, rt, peer, peer.activity("alice", "Follow", local("bo")))
    db.add(Follow(follower_id=bo.id, followee_id=(await alice(db, peer)).id))
    await db.commit()
    block = peer.activity("alice", "Block", local("bo"))
    assert await deliver(settings, rt, peer, block) == "blocked"
    assert await count(db, Follow) == 0 and await count(db, Block) == 1
    assert await deliver(settings, rt, peer, peer.activity("alice", "Undo", block)) == "unblocked"
    assert await count(db, Block) == 0


async def test_flag__files_a_report_from_the_remote_instance(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    bo = await person(db, "bo")
    await person(db, "dee", admin=True)
    mine = await local_post(db, bo, "rude")
    flag = peer.activity(
        "alice", "Flag", [local("bo"), f"{local('bo')}/statuses/{mine.id}"], content="spam"
    )
    assert (await deliver(settings, rt, peer, flag)).startswith("reported")
    report = await db.scalar(select(Report))
    assert report is not None and report.target_account_id == bo.id
    assert report.post_ids == [mine.id] and report.comment == "spam"
    assert report.reporter_id == (await alice(db, peer)).id


async def test_update_person__refreshes_the_profile(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    await person(db, "bo")
    await deliver(settings, rt, peer, peer.activity("alice", "Like", f"{local('bo')}/statuses/1"))
    doc = peer.add_actor("alice", key=0, summary="<p>new<script>x</script></p>")
    doc["name"] = "Alice Renamed"
    assert await deliver(settings, rt, peer, peer.activity("alice", "Update", doc)) == (
        "profile updated"
    )
    account = await db.scalar(
        select(Account)
        .where(Account.uri == peer.actor_uri("alice"))
        .execution_options(populate_existing=True)
    )
    assert account is not None and account.display_name == "Alice Renamed"
    assert "script" not in account.bio_html


async def test_resolve_handle__webfinger_then_actor(db: AsyncSession, peer: Peer) -> None:
    jrd = {
        "subject": f"acct:alice@{peer.server.authority}",
        "links": [
            {"rel": "self", "type": "application/activity+json", "href": peer.actor_uri("alice")}
        ],
    }
    peer.server.routes["/.well-known/webfinger"] = json_document(jrd)
    account = await resolve_handle(db, "alice", peer.server.authority)
    assert account.uri == peer.actor_uri("alice") and account.domain == peer.server.authority


async def test_attack__webfinger_pointing_at_an_actor_elsewhere_unconfirmed(
    db: AsyncSession, peer: Peer
) -> None:
    # Given a WebFinger answer naming an actor on another host that does not confirm it
    jrd = {
        "links": [
            {"rel": "self", "type": "application/activity+json", "href": peer.actor_uri("alice")}
        ]
    }
    from tests.federation.local_http import local_server

    async with local_server("127.0.0.2") as liar:
        liar.routes["/.well-known/webfinger"] = json_document(jrd)
        from kith.federation.actors import ActorFetchFailed

        with pytest.raises(ActorFetchFailed):
            await resolve_handle(db, "bob", liar.authority)


async def test_api_search_resolve__finds_a_remote_handle(
    db: AsyncSession, settings: Settings, peer: Peer
) -> None:
    # Given a signed-in client and a remote account nobody here has seen
    jrd = {
        "links": [
            {"rel": "self", "type": "application/activity+json", "href": peer.actor_uri("alice")}
        ]
    }
    peer.server.routes["/.well-known/webfinger"] = json_document(jrd)
    bo = await person(db, "bo")
    token = await token_for(db, bo, "read")
    handle = f"@alice@{peer.server.authority}"
    async with running_app(settings) as client:
        r = await client.get(
            "/api/v2/search",
            params={"q": handle, "resolve": "true", "type": "accounts"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert r.status_code == 200, r.text
    (found,) = r.json()["accounts"]
    assert found["acct"] == handle.lstrip("@") and found["uri"] == peer.actor_uri("alice")


async def test_api_search_resolve__a_handle_that_cannot_be_found__finds_nothing(
    db: AsyncSession, settings: Settings, peer: Peer
) -> None:
    # Given a signed-in client, and a server that knows no such person (WebFinger 404)
    bo = await person(db, "bo")
    token = await token_for(db, bo, "read")
    async with running_app(settings) as client:
        r = await client.get(
            "/api/v2/search",
            params={"q": f"@nobody@{peer.server.authority}", "resolve": "true"},
            headers={"Authorization": f"Bearer {token}"},
        )
    # Then the answer is an empty result, not an error
    assert r.status_code == 200, r.text
    assert r.json()["accounts"] == []
