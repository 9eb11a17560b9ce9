"""Remote communities (FEP-1b12, as Lemmy federates them): a Kith person finds a `Group` on
another server, joins it (Follow → Accept / Reject), sees what its Group announces — the
inner activity checked against its own origin, never taken from the Announce — and posts
into it. The other server is the scripted peer; its Group `baking` is served at
/users/baking."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.communities import feeds
from kith.communities import service as communities
from kith.communities.models import (
    Community,
    CommunityPost,
    Membership,
    MembershipModel,
    MemberState,
)
from kith.config import Settings
from kith.federation import remote_groups, uris
from kith.federation.models import OutboundActivity
from kith.jobs import worker
from kith.posts.models import Like, Post
from kith.runtime import Runtime
from tests.federation.helpers import PUBLIC
from tests.federation.inbound import count, deliver, loopback, two_actor_peer
from tests.federation.local_http import json_document, respond
from tests.federation.peer import Peer
from tests.world import browser, person, post, running_app

pytestmark = pytest.mark.usefixtures("rt")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with two_actor_peer() as p:
        doc = p.add_actor("baking", key=2, type="Group")
        doc |= {"name": "Baking", "summary": "<p>Bread &amp; <b>cakes</b></p>"}
        p.server.routes["/users/baking"] = json_document(doc)
        yield p


def group(peer: Peer) -> str:
    return peer.actor_uri("baking")


def page(peer: Peer, path: str, author: str = "alice", **extra: Any) -> dict[str, Any]:
    """A Lemmy post (a `Page` with a title), served by the peer at its id."""
    doc = {
        "id": f"{peer.base}{path}",
        "type": "Page",
        "attributedTo": peer.actor_uri(author),
        "to": [group(peer), PUBLIC],
        "cc": [],
        "audience": group(peer),
        "name": "Rye starter ratios",
        "content": "<p>I feed mine 1:5:5.</p>",
        "mediaType": "text/html",
        **extra,
    }
    peer.server.routes[path] = json_document(doc)
    return doc


def announce(peer: Peer, inner: Any) -> dict[str, Any]:
    """The Group passing an activity on, as Lemmy does."""
    return peer.activity("baking", "Announce", inner, to=[PUBLIC], cc=[f"{group(peer)}/followers"])


async def joined(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer, name: str = "bo"
) -> tuple[Account, Community]:
    """`name` found the Group by its URL, asked to join, and the Group accepted."""
    me = await person(db, name)
    community = await remote_groups.find_or_resolve(db, group(peer))
    assert community is not None
    await communities.join(db, me.id, community)
    follows = [
        r.document
        for r in await db.scalars(select(OutboundActivity))
        if r.document.get("type") == "Follow"
    ]
    assert follows and follows[-1]["object"] == group(peer)
    accept = peer.activity("baking", "Accept", follows[-1])
    assert await deliver(settings, rt, peer, accept) == "joined the community"
    return me, community


async def test_find__a_group_becomes_a_remote_community_with_its_card(
    db: AsyncSession, peer: Peer
) -> None:
    # When bo looks the Group up by its URL
    community = await remote_groups.find_or_resolve(db, group(peer))
    # Then it is a community of the peer's host, its card copied from the Group
    assert community is not None and community.is_remote
    assert community.address == f"baking@{peer.server.authority}"
    assert community.name == "Baking" and "Bread & cakes" in community.description
    assert community.membership == MembershipModel.OPEN and community.owner_id is None
    # and its address finds it; the bare handle does not (that would be ours)
    assert await communities.find_by_address(db, community.address) is not None
    assert await communities.find_community(db, "baking") is None
    # A person is no community
    assert await remote_groups.find_or_resolve(db, peer.actor_uri("alice")) is None


async def test_join__waits_for_the_groups_accept(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo asked to join
    bo = await person(db, "bo")
    community = await remote_groups.find_or_resolve(db, group(peer))
    assert community is not None
    row = await communities.join(db, bo.id, community)
    # Then he waits (the Group decides on its server)
    assert row.state == MemberState.PENDING
    # When the Group accepts his Follow
    follow = next(
        r.document
        for r in await db.scalars(select(OutboundActivity))
        if r.document.get("type") == "Follow"
    )
    assert await deliver(settings, rt, peer, peer.activity("baking", "Accept", follow)) == (
        "joined the community"
    )
    # Then he is a member
    state = await db.scalar(
        select(Membership.state).where(
            Membership.community_id == community.id, Membership.account_id == bo.id
        )
    )
    assert state == MemberState.ACTIVE


async def test_join__rejected_by_the_group_removes_the_request(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    bo = await person(db, "bo")
    community = await remote_groups.find_or_resolve(db, group(peer))
    assert community is not None
    await communities.join(db, bo.id, community)
    follow = next(
        r.document
        for r in await db.scalars(select(OutboundActivity))
        if r.document.get("type") == "Follow"
    )
    outcome = await deliver(settings, rt, peer, peer.activity("baking", "Reject", follow))
    assert outcome == "refused by the community"
    assert await count(db, Membership, Membership.community_id == community.id) == 0


async def test_leave__sends_undo_follow_to_the_group(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    bo, community = await joined(db, settings, rt, peer)
    await communities.leave(db, bo.id, community)
    assert await count(db, Membership, Membership.community_id == community.id) == 0
    undo = [
        r.document
        for r in await db.scalars(select(OutboundActivity))
        if r.document.get("type") == "Undo"
    ]
    assert undo and undo[0]["object"]["type"] == "Follow"
    assert undo[0]["object"]["object"] == group(peer)


async def test_announce_create_page__stored_as_the_authors_post_in_the_community(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo is in the community
    bo, community = await joined(db, settings, rt, peer)
    doc = page(peer, "/post/1")
    create = peer.activity("alice", "Create", doc, to=[group(peer), PUBLIC], audience=group(peer))
    # When its Group announces alice's Create(Page)
    assert await deliver(settings, rt, peer, announce(peer, create)) == (
        "stored in a remote community"
    )
    # Then it is alice's post (title shown), a thread of the community
    stored = await db.scalar(select(Post).where(Post.uri == doc["id"]))
    assert stored is not None and stored.reblog_of_id is None
    alice = await db.get(Account, stored.account_id)
    assert alice is not None and alice.uri == peer.actor_uri("alice")
    assert "<strong>Rye starter ratios</strong>" in stored.content_html
    row = await db.get(CommunityPost, (community.id, stored.id))
    assert row is not None and row.is_thread and row.state == "approved"
    # and never a boost by the Group
    group_account = await db.scalar(select(Account).where(Account.uri == group(peer)))
    assert group_account is not None
    assert await count(db, Post, Post.account_id == group_account.id) == 0
    # it shows in bo's "My communities"
    mine = await feeds.my_communities(db, policy.Viewer(bo.id))
    assert [p.id for p in mine.posts] == [stored.id]
    # When the Announce of the post itself arrives too (Kith's Groups send both)
    again = await deliver(settings, rt, peer, announce(peer, doc["id"]))
    # Then it is the same post, stored once
    assert again == "ignored: already in the community"
    assert await count(db, Post, Post.uri == doc["id"]) == 1


async def test_announce__embedded_content_is_never_trusted(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given the served Page, and an Announce embedding another text for it
    await joined(db, settings, rt, peer)
    doc = page(peer, "/post/2")
    forged = {**doc, "name": "Buy pills", "content": "<p>spam</p>"}
    create = peer.activity("alice", "Create", forged)
    assert await deliver(settings, rt, peer, announce(peer, create)) == (
        "stored in a remote community"
    )
    # Then what is stored is what alice's server serves
    stored = await db.scalar(select(Post).where(Post.uri == doc["id"]))
    assert stored is not None
    assert "Rye starter" in stored.content_html and "spam" not in stored.content_html


async def test_attack__announced_create_of_an_object_on_a_third_origin(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo is in the community
    await joined(db, settings, rt, peer)
    # When the Group announces alice's "Create" of a post on another server
    third = {"id": "http://127.0.0.9:9/post/7", "type": "Page", "name": "x", "content": "y"}
    create = peer.activity("alice", "Create", {**third, "attributedTo": peer.actor_uri("alice")})
    outcome = await deliver(settings, rt, peer, announce(peer, create))
    # Then it is refused and nothing is stored
    assert outcome.startswith("refused: the announced activity")
    assert await count(db, Post, Post.uri == third["id"]) == 0


async def test_attack__announced_create_whose_served_post_is_someone_elses(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given a Page mallory wrote (as its server serves it)
    await joined(db, settings, rt, peer)
    doc = page(peer, "/post/3", author="mallory")
    # When the Group announces it as alice's Create
    create = peer.activity("alice", "Create", {**doc, "attributedTo": peer.actor_uri("alice")})
    outcome = await deliver(settings, rt, peer, announce(peer, create))
    # Then it is refused: alice did not write it
    assert outcome == "refused: the announced post is not by the announced activity's actor"
    assert await count(db, Post, Post.uri == doc["id"]) == 0


async def test_attack__announce_signed_by_a_server_that_does_not_host_the_group(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo is in the community
    await joined(db, settings, rt, peer)
    doc = page(peer, "/post/4")
    activity = announce(peer, peer.activity("alice", "Create", doc))
    # When mallory's key signs an Announce "by" the Group
    async with running_app(settings) as client:
        headers, body = peer.sign(activity, signer="mallory")
        r = await client.post("/inbox", content=body, headers=headers)
    # Then the inbox refuses it and nothing is stored
    assert r.status_code == 401
    assert await count(db, Post, Post.uri == doc["id"]) == 0


async def test_attack__a_group_nobody_here_joined_cannot_bring_posts_in(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo is in baking; mallory's server runs another Group claiming baking's audience
    await joined(db, settings, rt, peer)
    peer.add_actor("fakebaking", key=3, type="Group")
    doc = page(peer, "/post/5")
    activity = peer.activity("fakebaking", "Announce", peer.activity("alice", "Create", doc))
    # When it announces a Create naming baking as audience
    outcome = await deliver(settings, rt, peer, activity)
    # Then nothing is stored
    assert outcome == "ignored: an Announce of an activity by a Group nobody here is in"
    assert await count(db, Post, Post.uri == doc["id"]) == 0


async def test_announce_comment__joins_the_thread(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    _, community = await joined(db, settings, rt, peer)
    doc = page(peer, "/post/6")
    await deliver(settings, rt, peer, announce(peer, peer.activity("alice", "Create", doc)))
    comment = {
        "id": f"{peer.base}/comment/1",
        "type": "Note",
        "attributedTo": peer.actor_uri("mallory"),
        "inReplyTo": doc["id"],
        "to": [PUBLIC],
        "cc": [group(peer)],
        "audience": group(peer),
        "content": "<p>Try 1:3:3</p>",
    }
    peer.server.routes["/comment/1"] = json_document(comment)
    create = peer.activity("mallory", "Create", comment)
    assert await deliver(settings, rt, peer, announce(peer, create)) == (
        "stored in a remote community"
    )
    stored = await db.scalar(select(Post).where(Post.uri == comment["id"]))
    assert stored is not None and stored.in_reply_to_id is not None
    row = await db.get(CommunityPost, (community.id, stored.id))
    assert row is not None and not row.is_thread


async def test_announce_delete__by_the_author_deletes_and_by_a_moderator_removes(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    _, community = await joined(db, settings, rt, peer)
    kept, gone = page(peer, "/post/7"), page(peer, "/post/8")
    for doc in (kept, gone):
        await deliver(settings, rt, peer, announce(peer, peer.activity("alice", "Create", doc)))
    # When alice deletes /post/8 (her server answers 404 now) and the Group passes it on
    peer.server.routes["/post/8"] = respond(404)
    delete = peer.activity("alice", "Delete", gone["id"])
    assert await deliver(settings, rt, peer, announce(peer, delete)) == "deleted"
    assert await count(db, Post, Post.uri == gone["id"]) == 0
    # When a moderator (mallory) removes /post/7, which alice's server still serves
    removal = peer.activity("mallory", "Delete", kept["id"])
    assert await deliver(settings, rt, peer, announce(peer, removal)) == (
        "removed from the community"
    )
    # Then it leaves the community, and is not deleted
    stored = await db.scalar(
        select(Post).where(Post.uri == kept["id"]).execution_options(populate_existing=True)
    )
    assert stored is not None
    row = await db.get(CommunityPost, (community.id, stored.id))
    await db.refresh(row)
    assert row is not None and row.state == "removed"


async def test_announce_like__of_our_post_counts_once_verified(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo's post in the community
    bo, community = await joined(db, settings, rt, peer)
    mine = await post(db, bo, "My loaf", community_ids=[community.id])
    mine_uri = uris.post_uri(settings, "bo", mine.id)
    # When the Group announces alice's Like, which her server serves at its id
    like = peer.activity("alice", "Like", mine_uri)
    peer.server.routes[like["id"].removeprefix(peer.base)] = json_document(like)
    assert await deliver(settings, rt, peer, announce(peer, like)) == "liked"
    assert await count(db, Like, Like.post_id == mine.id) == 1
    # and a "Like" her server does not serve counts for nothing
    forged = peer.activity("mallory", "Like", mine_uri)
    outcome = await deliver(settings, rt, peer, announce(peer, forged))
    assert outcome == "ignored: the announced activity could not be fetched from its server"
    assert await count(db, Like, Like.post_id == mine.id) == 1
    # and a Dislike is not counted
    dislike = peer.activity("alice", "Dislike", mine_uri)
    outcome = await deliver(settings, rt, peer, announce(peer, dislike))
    assert outcome == "ignored: dislikes are not counted here"


async def test_post_into_it__addressed_to_the_group_and_public_and_sent_to_its_inbox(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo is in the community
    bo, community = await joined(db, settings, rt, peer)
    # When he posts into it
    mine = await post(db, bo, "Rye, day three", community_ids=[community.id])
    # Then it is a thread of the community here
    row = await db.get(CommunityPost, (community.id, mine.id))
    assert row is not None and row.state == "approved"
    # and its Create goes to the Group's server, naming the Group as Lemmy expects
    create = next(
        r.document
        for r in await db.scalars(select(OutboundActivity))
        if r.document.get("type") == "Create"
    )
    note = create["object"]
    assert note["audience"] == group(peer)
    assert PUBLIC in note["to"] and group(peer) in note["to"]
    while await worker.run_once(rt.sessions, "test-worker"):
        pass
    delivered = [
        r.body for r in peer.server.requests if r.method == "POST" and r.target == "/inbox"
    ]
    assert any(b'"Create"' in body and note["id"].encode() in body for body in delivered)


async def test_post_into_it__only_members_and_alone(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    from kith.communities.service import CommunityInput
    from kith.errors import ValidationFailed

    # Given cy, not a member, and bo, a member who also founded a local community
    bo, community = await joined(db, settings, rt, peer)
    cy = await person(db, "cy")
    ours = await communities.create_community(db, bo.id, "loaves", CommunityInput(name="L"))
    # Then cy cannot post into it, and bo cannot cross-post it with a local one
    with pytest.raises(ValidationFailed):
        await post(db, cy, "Hi", community_ids=[community.id])
    with pytest.raises(ValidationFailed, match="another server"):
        await post(db, bo, "Hi", community_ids=[community.id, ours.id])


async def test_web__search_finds_it_its_page_shows_its_posts_and_join_asks(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given the Group's server answers WebFinger for !baking@host, and ed is signed in
    host = peer.server.authority
    jrd = {
        "subject": f"acct:baking@{host}",
        "links": [
            {"rel": "self", "type": "application/activity+json", "href": group(peer)},
        ],
    }
    peer.server.routes["/.well-known/webfinger"] = json_document(jrd)
    await person(db, "ed")
    async with browser(settings) as b:
        await b.sign_in("ed")
        # When he searches for the community's address
        r = await b.get("/search", params={"q": f"!baking@{host}"}, follow_redirects=True)
        # Then he lands on its page here
        assert r.status_code == 200, r.text
        assert str(r.url).endswith(f"/c/baking@{host}")
        assert "Baking" in r.text and f"!baking@{host}" in r.text
        # When he joins, then he waits for the Group's answer
        r = await b.post(f"/c/baking@{host}/join", follow_redirects=True)
        assert r.status_code == 200 and "waiting" in r.text
    community = await communities.find_by_address(db, f"baking@{host}")
    assert community is not None
    state = await db.scalar(select(Membership.state).where(Membership.community_id == community.id))
    assert state == MemberState.PENDING
