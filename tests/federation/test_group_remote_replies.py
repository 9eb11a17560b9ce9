"""Remote replies in our communities' threads that do not name the Group — as Mastodon and
Lemmy people reply, to the post and its author — join the thread under the rules a local
reply follows (`communities.posting`: bans, who may reply where, locks) and are announced by
the Group to its remote members; a refused reply is not stored at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities import moderation
from kith.communities import service as communities
from kith.communities.models import Community, CommunityPost, MembershipModel
from kith.communities.service import CommunityInput
from kith.config import Settings
from kith.federation.models import OutboundActivity
from kith.posts.models import Post
from kith.runtime import Runtime
from tests.federation.helpers import BASE
from tests.federation.inbound import count, deliver, followers, loopback, two_actor_peer
from tests.federation.peer import Peer
from tests.world import person, post

pytestmark = pytest.mark.usefixtures("rt")

GROUP = f"{BASE}/c/gardeners"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with two_actor_peer() as p:
        yield p


async def thread_in_community(
    db: AsyncSession, membership: MembershipModel = MembershipModel.OPEN
) -> tuple[Account, Community, Post]:
    ann = await person(db, "ann")
    community = await communities.create_community(
        db, ann.id, "gardeners", CommunityInput(name="Gardeners", membership=membership)
    )
    thread = await post(db, ann, "Which roses?", community_ids=[community.id])
    return ann, community, thread


async def member_on_peer(db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer) -> Account:
    """alice follows the open Group from the peer: the Group then announces to her server."""
    assert await deliver(settings, rt, peer, peer.activity("alice", "Follow", GROUP)) == "joined"
    alice = await db.scalar(select(Account).where(Account.uri == peer.actor_uri("alice")))
    assert alice is not None
    return alice


def mastodon_reply(peer: Peer, name: str, in_reply_to: str, text: str) -> dict[str, Any]:
    """A reply as Mastodon writes it: to Public, cc the author's followers and the person
    replied to, a Mention of them — and no word of the community."""
    note = peer.note(name, text)
    note["inReplyTo"] = in_reply_to
    note["cc"] = [followers(peer, name), f"{BASE}/users/ann"]
    note["tag"] = [{"type": "Mention", "href": f"{BASE}/users/ann", "name": "@ann@kith.test"}]
    return note


def create_of(peer: Peer, name: str, note: dict[str, Any]) -> dict[str, Any]:
    return peer.activity(name, "Create", note, to=note["to"], cc=note["cc"])


async def announced_ids(db: AsyncSession) -> list[Any]:
    rows = await db.scalars(
        select(OutboundActivity)
        .order_by(OutboundActivity.id)
        .execution_options(populate_existing=True)
    )
    return [r.document["object"] for r in rows.all() if r.document.get("type") == "Announce"]


async def test_mastodon_reply__without_the_group_joins_the_thread_and_is_announced(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given ann's thread in an open community, and alice, on another server, a member
    ann, community, thread = await thread_in_community(db)
    await member_on_peer(db, settings, rt, peer)
    thread_id = f"{BASE}/users/ann/statuses/{thread.id}"
    # When mallory (not a member: anyone not banned replies in an open community) replies
    # the Mastodon way, naming ann and not the Group
    reply = mastodon_reply(peer, "mallory", thread_id, "Climbers!")
    outcome = await deliver(settings, rt, peer, create_of(peer, "mallory", reply))
    # Then the reply joins the thread in the community
    assert outcome == "stored in a community"
    stored = await db.scalar(select(Post).where(Post.uri == reply["id"]))
    assert stored is not None and stored.in_reply_to_id == thread.id
    row = await db.get(CommunityPost, (community.id, stored.id))
    assert row is not None and not row.is_thread and row.state == "approved"
    root = await db.get(CommunityPost, (community.id, thread.id), populate_existing=True)
    assert root is not None and root.thread_replies == 1 and root.active_id == stored.id
    # and the Group announces it to its remote members, both shapes
    sent = await announced_ids(db)
    assert reply["id"] in sent
    assert any(isinstance(o, dict) and o["object"]["id"] == reply["id"] for o in sent)
    # When alice answers mallory's reply (deeper in the thread), it joins too
    deeper = mastodon_reply(peer, "alice", reply["id"], "Ramblers, even.")
    assert await deliver(settings, rt, peer, create_of(peer, "alice", deeper)) == (
        "stored in a community"
    )
    assert await count(db, CommunityPost, CommunityPost.community_id == community.id) == 3


async def test_mastodon_reply__by_a_banned_person_is_refused_and_not_stored(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given alice, a remote member, banned from the community
    ann, community, thread = await thread_in_community(db)
    alice = await member_on_peer(db, settings, rt, peer)
    await moderation.ban(db, ann.id, community, alice.id, reason="spam")
    # When she replies to a thread there without naming the Group
    reply = mastodon_reply(peer, "alice", f"{BASE}/users/ann/statuses/{thread.id}", "Buy!")
    outcome = await deliver(settings, rt, peer, create_of(peer, "alice", reply))
    # Then it is refused as a local banned person's reply would be: nothing stored, nothing
    # announced (only the ban itself was)
    assert outcome.startswith("refused") and "gardeners" in outcome
    assert await count(db, Post, Post.uri == reply["id"]) == 0
    assert [o["type"] for o in await announced_ids(db) if isinstance(o, dict)] == ["Block"]


async def test_mastodon_reply__to_a_locked_thread_is_refused(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    ann, community, thread = await thread_in_community(db)
    await moderation.lock_thread(db, ann.id, community, thread.id)
    reply = mastodon_reply(peer, "mallory", f"{BASE}/users/ann/statuses/{thread.id}", "Hm")
    outcome = await deliver(settings, rt, peer, create_of(peer, "mallory", reply))
    assert outcome.startswith("refused") and "locked" in outcome
    assert await count(db, Post, Post.uri == reply["id"]) == 0


async def test_reply__to_a_private_communitys_thread_from_a_non_member_is_refused(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given a thread in a private community, and alice on another server a member of it
    ann, community, thread = await thread_in_community(db, MembershipModel.PRIVATE)
    follow = peer.activity("alice", "Follow", GROUP)
    assert (await deliver(settings, rt, peer, follow)).startswith("requested")
    alice = await db.scalar(select(Account).where(Account.uri == peer.actor_uri("alice")))
    assert alice is not None
    _, code = await communities.create_invite(db, ann.id, community)
    await communities.join(db, alice.id, community, invite_code=code)
    thread_id = f"{BASE}/users/ann/statuses/{thread.id}"
    # When mallory, not a member, replies to it (she learnt its id somehow)
    intruder = mastodon_reply(peer, "mallory", thread_id, "Let me in")
    outcome = await deliver(settings, rt, peer, create_of(peer, "mallory", intruder))
    # Then it is refused and kept nowhere
    assert outcome.startswith("refused")
    assert await count(db, Post, Post.uri == intruder["id"]) == 0
    # while the member's reply joins the thread, for members only
    reply = mastodon_reply(peer, "alice", thread_id, "Lovely")
    assert await deliver(settings, rt, peer, create_of(peer, "alice", reply)) == (
        "stored in a community"
    )
    stored = await db.scalar(select(Post).where(Post.uri == reply["id"]))
    assert stored is not None and stored.community_gate == "members"


async def test_mastodon_reply__to_a_post_in_no_community_is_stored_as_before(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    ann = await person(db, "ann")
    plain = await post(db, ann, "Just me")
    reply = mastodon_reply(peer, "mallory", f"{BASE}/users/ann/statuses/{plain.id}", "Hi")
    assert await deliver(settings, rt, peer, create_of(peer, "mallory", reply)) == "stored"
    assert await count(db, CommunityPost) == 0 and await announced_ids(db) == []
