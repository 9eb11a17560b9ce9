"""A remote community's moderation applied here (FEP-1b12, Lemmy's shapes): its Group
announces a moderator's Lock, pins (Add / Remove to `featured`), removals and their Undo,
and bans of our people (Block with the Group as `target`) — they change the same rows our
own moderation does. Only a moderator on the Group's own host counts; the same activities
from anywhere else change nothing. The other server is the scripted peer of
test_remote_communities (its Group `baking`; alice and mallory live there too)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.communities import feeds, rosters
from kith.communities import service as communities
from kith.communities.models import (
    Community,
    CommunityBan,
    CommunityPost,
    Membership,
    MemberState,
    ModerationLogEntry,
)
from kith.config import Settings
from kith.errors import Forbidden, ValidationFailed
from kith.federation import uris
from kith.federation.models import OutboundActivity
from kith.graph.models import Block
from kith.notifications.models import Notification, NotificationType
from kith.posts.models import Post
from kith.runtime import Runtime
from tests.federation.inbound import count, deliver, loopback, two_actor_peer
from tests.federation.local_http import json_document
from tests.federation.peer import Peer
from tests.federation.test_remote_communities import announce, group, joined, page
from tests.world import browser, post

pytestmark = pytest.mark.usefixtures("rt")

ELSEWHERE = "http://127.0.0.9:9"  # a server that does not host the Group


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    """The scripted server with its Group `baking` (and alice and mallory)."""
    async with two_actor_peer() as p:
        doc = p.add_actor("baking", key=2, type="Group")
        p.server.routes["/users/baking"] = json_document(doc | {"name": "Baking"})
        yield p


async def _thread(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer, path: str
) -> tuple[dict[str, Any], Post]:
    """alice's Page at `path`, announced by the Group: a thread of the community here."""
    doc = page(peer, path)
    assert await deliver(settings, rt, peer, announce(peer, peer.activity("alice", "Create", doc)))
    stored = await db.scalar(select(Post).where(Post.uri == doc["id"]))
    assert stored is not None
    return doc, stored


async def _row(db: AsyncSession, community: Community, post_id: int) -> CommunityPost:
    row = await db.get(CommunityPost, (community.id, post_id), populate_existing=True)
    assert row is not None
    return row


async def _log(db: AsyncSession, community: Community) -> list[ModerationLogEntry]:
    rows = await db.scalars(
        select(ModerationLogEntry)
        .where(ModerationLogEntry.community_id == community.id)
        .order_by(ModerationLogEntry.id)
        .execution_options(populate_existing=True)
    )
    return list(rows.all())


async def _account(db: AsyncSession, uri: str) -> Account:
    found = await db.scalar(select(Account).where(Account.uri == uri))
    assert found is not None
    return found


def _featured(peer: Peer) -> str:
    return f"{group(peer)}/featured"


# --- locks --------------------------------------------------------------------------------


async def test_announced_lock__replies_from_here_are_refused_until_unlocked(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo is in the community and alice's thread is in it
    bo, community = await joined(db, settings, rt, peer)
    doc, thread = await _thread(db, settings, rt, peer, "/post/20")
    # When the Group announces mallory's (a moderator there) Lock of it
    lock = peer.activity("mallory", "Lock", doc["id"], summary="Heated")
    assert await deliver(settings, rt, peer, announce(peer, lock)) == "locked"
    # Then the thread is locked here: bo's reply is refused, with nothing written
    assert (await _row(db, community, thread.id)).locked_at is not None
    before = await count(db, Post)
    with pytest.raises(ValidationFailed, match="locked") as refused:
        await post(db, bo, "But rye!", reply_to=thread)
    assert refused.value.field == "in_reply_to_id"
    assert await count(db, Post) == before
    # and the log says a moderator of that server did it, why, and where
    entry = (await _log(db, community))[-1]
    mallory = await _account(db, peer.actor_uri("mallory"))
    assert (entry.action, entry.actor_id, entry.reason) == ("lock", mallory.id, "Heated")
    assert peer.server.authority in entry.detail
    # When it is unlocked there
    unlock = peer.activity("mallory", "Undo", lock)
    assert await deliver(settings, rt, peer, announce(peer, unlock)) == "unlocked"
    # Then bo may reply again
    assert (await _row(db, community, thread.id)).locked_at is None
    reply = await post(db, bo, "Rye, then", reply_to=thread)
    assert await db.get(CommunityPost, (community.id, reply.id)) is not None


# --- pins ---------------------------------------------------------------------------------


async def test_announced_add_and_remove_to_featured__pin_and_unpin_the_thread(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    bo, community = await joined(db, settings, rt, peer)
    doc, thread = await _thread(db, settings, rt, peer, "/post/21")
    # When the Group announces an Add of the thread to another collection, nothing is pinned
    elsewhere = peer.activity("mallory", "Add", doc["id"], target=f"{group(peer)}/moderators")
    outcome = await deliver(settings, rt, peer, announce(peer, elsewhere))
    assert outcome.startswith("ignored: Add to another collection")
    assert (await _row(db, community, thread.id)).pinned_at is None
    # When it announces the Add to its featured collection
    add = peer.activity("mallory", "Add", doc["id"], target=_featured(peer))
    assert await deliver(settings, rt, peer, announce(peer, add)) == "pinned"
    # Then the thread is pinned above the community's feed here
    pinned = await feeds.pinned_threads(db, policy.Viewer(bo.id), community)
    assert [p.id for p in pinned] == [thread.id]
    # When it announces the Remove
    remove = peer.activity("mallory", "Remove", doc["id"], target=_featured(peer))
    assert await deliver(settings, rt, peer, announce(peer, remove)) == "unpinned"
    assert await feeds.pinned_threads(db, policy.Viewer(bo.id), community) == []
    assert [e.action for e in await _log(db, community)] == ["pin", "unpin"]


# --- removals and restores --------------------------------------------------------------------


async def test_announced_undo_of_a_removal__restores_the_post(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    bo, community = await joined(db, settings, rt, peer)
    doc, thread = await _thread(db, settings, rt, peer, "/post/22")
    # Given a moderator there removed it (alice's server still serves it)
    removal = peer.activity("mallory", "Delete", doc["id"], summary="Off topic")
    assert await deliver(settings, rt, peer, announce(peer, removal)) == (
        "removed from the community"
    )
    assert (await feeds.my_communities(db, policy.Viewer(bo.id))).posts == []
    # When the Group announces the Undo of that Delete
    restore = peer.activity("mallory", "Undo", peer.activity("mallory", "Delete", doc["id"]))
    assert await deliver(settings, rt, peer, announce(peer, restore)) == (
        "restored in the community"
    )
    # Then it is back in the community, and in bo's "My communities"
    assert (await _row(db, community, thread.id)).state == "approved"
    mine = await feeds.my_communities(db, policy.Viewer(bo.id))
    assert [p.id for p in mine.posts] == [thread.id]
    # and the log tells both, with the removal's reason
    entries = await _log(db, community)
    assert [(e.action, e.reason) for e in entries] == [
        ("remove_post", "Off topic"),
        ("restore_post", ""),
    ]
    # An Undo of a Delete of a post that was not removed changes nothing
    again = await deliver(settings, rt, peer, announce(peer, restore | {"id": restore["id"] + "b"}))
    assert again == "ignored: not removed here"


async def test_announced_removal_of_our_members_post__tells_them(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo posted into the community from here
    bo, community = await joined(db, settings, rt, peer)
    mine = await post(db, bo, "My loaf", community_ids=[community.id])
    # When a moderator there removes it
    removal = peer.activity(
        "mallory", "Delete", uris.post_uri(settings, "bo", mine.id), summary="No ads"
    )
    assert await deliver(settings, rt, peer, announce(peer, removal)) == (
        "removed from the community"
    )
    # Then it leaves the community, stays bo's, and bo is told
    assert (await _row(db, community, mine.id)).state == "removed"
    assert await db.get(Post, mine.id) is not None
    told = await db.scalar(
        select(Notification).where(
            Notification.account_id == bo.id,
            Notification.type == NotificationType.COMMUNITY_POST_REMOVED.value,
        )
    )
    assert told is not None and told.community_id == community.id


# --- bans ---------------------------------------------------------------------------------


def _block(settings: Settings, peer: Peer, name: str, **extra: Any) -> dict[str, Any]:
    return peer.activity(
        "mallory",
        "Block",
        uris.actor_uri(settings, name),
        target=group(peer),
        removeData=False,
        **extra,
    )


async def test_announced_block__ends_the_membership_and_refuses_posting_and_joining(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo is a member
    bo, community = await joined(db, settings, rt, peer)
    # When the Group announces mallory's ban of bo, until a date
    block = _block(settings, peer, "bo", summary="Spam", expires="2099-01-01T00:00:00Z")
    assert await deliver(settings, rt, peer, announce(peer, block)) == ("banned from the community")
    # Then bo is no longer a member, and banned here until then
    assert await count(db, Membership, Membership.community_id == community.id) == 0
    ban = await db.get(CommunityBan, (community.id, bo.id), populate_existing=True)
    assert ban is not None and ban.reason == "Spam" and ban.until is not None
    assert ban.until.year == 2099
    # and he cannot post into it, or ask to join again, with nothing written
    before = await count(db, Post)
    with pytest.raises(ValidationFailed, match="banned"):
        await post(db, bo, "Let me back", community_ids=[community.id])
    with pytest.raises(Forbidden, match="banned"):
        await communities.join(db, bo.id, community)
    assert await count(db, Post) == before
    assert await count(db, Membership, Membership.community_id == community.id) == 0
    follows = [
        r for r in await db.scalars(select(OutboundActivity)) if r.document["type"] == "Follow"
    ]
    assert len(follows) == 1  # only the first join's
    # and he is told, by mallory; the log names mallory, on the Group's server
    told = await db.scalar(
        select(Notification).where(
            Notification.account_id == bo.id,
            Notification.type == NotificationType.COMMUNITY_BANNED.value,
        )
    )
    mallory = await _account(db, peer.actor_uri("mallory"))
    assert told is not None and told.from_account_id == mallory.id
    lines = await rosters.moderation_log(db, policy.Viewer(None), community)
    assert lines[0].entry.action == "ban" and lines[0].actor is not None
    assert lines[0].actor.acct == f"mallory@{peer.server.authority}"
    assert lines[0].target is not None and lines[0].target.id == bo.id
    # and the community's page says so
    async with browser(settings) as b:
        await b.sign_in("bo")
        r = await b.get(f"/c/{community.address}")
        assert r.status_code == 200
        assert "You are banned from this community until Jan 1, 2099" in r.text
        assert "Spam" in r.text
    # When the Group announces the Undo of the ban
    lifted = peer.activity("mallory", "Undo", block)
    assert await deliver(settings, rt, peer, announce(peer, lifted)) == "ban lifted"
    # Then he may ask to join again (nothing is restored)
    db.expunge(ban)  # the ban went in the inbox job's session
    assert await db.get(CommunityBan, (community.id, bo.id)) is None
    row = await communities.join(db, bo.id, community)
    assert row.state == MemberState.PENDING


async def test_announced_block__counts_even_when_the_reject_came_first(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo, the only member here, whose membership the Group's Reject ended first
    bo, community = await joined(db, settings, rt, peer)
    follow = next(
        r.document
        for r in await db.scalars(select(OutboundActivity))
        if r.document["type"] == "Follow"
    )
    reject = peer.activity("baking", "Reject", follow)
    assert await deliver(settings, rt, peer, reject) == "refused by the community"
    assert await count(db, Membership, Membership.community_id == community.id) == 0
    # When the Group's Announce of the ban arrives after
    block = _block(settings, peer, "bo")
    assert await deliver(settings, rt, peer, announce(peer, block)) == ("banned from the community")
    # Then the ban holds here, for good
    ban = await db.get(CommunityBan, (community.id, bo.id), populate_existing=True)
    assert ban is not None and ban.until is None


async def test_announced_block__of_someone_on_another_server_changes_nothing_here(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    _, community = await joined(db, settings, rt, peer)
    block = peer.activity("mallory", "Block", peer.actor_uri("alice"), target=group(peer))
    outcome = await deliver(settings, rt, peer, announce(peer, block))
    assert outcome == "ignored: a ban of someone who is not ours"
    assert await count(db, CommunityBan, CommunityBan.community_id == community.id) == 0


async def test_reject_follow__of_a_member_ends_the_membership(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    bo, community = await joined(db, settings, rt, peer)
    follow = next(
        r.document
        for r in await db.scalars(select(OutboundActivity))
        if r.document["type"] == "Follow"
    )
    reject = peer.activity("baking", "Reject", follow)
    assert await deliver(settings, rt, peer, reject) == "refused by the community"
    assert await count(db, Membership, Membership.community_id == community.id) == 0
    with pytest.raises(ValidationFailed, match="join it first"):
        await post(db, bo, "Still here?", community_ids=[community.id])


# --- forgeries ----------------------------------------------------------------------------


def _from_elsewhere(kind: str, obj: Any, **extra: Any) -> dict[str, Any]:
    """A moderator's activity by an actor on another server than the Group's."""
    return {
        "id": f"{ELSEWHERE}/activities/{kind.lower()}",
        "type": kind,
        "actor": f"{ELSEWHERE}/users/mod",
        "object": obj,
        **extra,
    }


def _forgeries(settings: Settings, peer: Peer, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every moderation shape, with its moderator (or its id, or the one it undoes) on
    another host than the Group's."""
    own_lock = peer.activity("mallory", "Lock", doc["id"])
    return [
        _from_elsewhere("Lock", doc["id"]),
        _from_elsewhere("Add", doc["id"], target=_featured(peer)),
        _from_elsewhere("Delete", doc["id"], summary="gone"),
        _from_elsewhere("Block", uris.actor_uri(settings, "bo"), target=group(peer)),
        # the actor on the Group's host, the activity's id elsewhere
        own_lock | {"id": f"{ELSEWHERE}/activities/lock2"},
        # an Undo by a moderator there of an activity from elsewhere
        peer.activity("mallory", "Undo", _from_elsewhere("Lock", doc["id"])),
    ]


@pytest.mark.parametrize("n", range(6))
async def test_attack__moderation_by_someone_off_the_groups_host_changes_nothing(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer, n: int
) -> None:
    # Given bo is in the community, and alice's thread was locked by a moderator there
    bo, community = await joined(db, settings, rt, peer)
    doc, thread = await _thread(db, settings, rt, peer, "/post/30")
    if n == 5:
        lock = peer.activity("mallory", "Lock", doc["id"])
        assert await deliver(settings, rt, peer, announce(peer, lock)) == "locked"
    logged = len(await _log(db, community))
    # When the Group (its own key) announces a moderation by someone off its host
    forged = _forgeries(settings, peer, doc)[n]
    outcome = await deliver(settings, rt, peer, announce(peer, forged))
    # Then it is refused and nothing changes
    assert outcome == "refused: only the community's own server moderates it"
    row = await _row(db, community, thread.id)
    assert row.state == "approved" and row.pinned_at is None
    assert (row.locked_at is not None) == (n == 5)
    assert await count(db, CommunityBan) == 0
    state = await db.scalar(
        select(Membership.state)
        .where(Membership.community_id == community.id, Membership.account_id == bo.id)
        .execution_options(populate_existing=True)
    )
    assert state == MemberState.ACTIVE
    assert len(await _log(db, community)) == logged


async def test_attack__another_group_announcing_a_ban_of_our_member_bans_nobody(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo is in baking; the same server runs another Group, fakebaking
    bo, community = await joined(db, settings, rt, peer)
    peer.add_actor("fakebaking", key=3, type="Group")
    block = _block(settings, peer, "bo")
    # When fakebaking announces a ban "from baking"
    activity = peer.activity("fakebaking", "Announce", block)
    outcome = await deliver(settings, rt, peer, activity)
    # Then nobody is banned
    assert outcome == "ignored: an Announce of an activity by a Group nobody here is in"
    assert await count(db, CommunityBan) == 0
    assert await count(db, Membership, Membership.account_id == bo.id) == 1


async def test_attack__a_ban_sent_by_the_moderator_directly_blocks_nobody(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo is in baking
    bo, community = await joined(db, settings, rt, peer)
    # When mallory sends her Block of bo (target the Group) straight to us, unannounced
    outcome = await deliver(settings, rt, peer, _block(settings, peer, "bo"))
    # Then it neither bans him (the Group did not say so) nor is a block by mallory
    assert outcome.startswith("ignored: a ban from a remote community")
    assert await count(db, CommunityBan) == 0
    assert await count(db, Block) == 0
    assert await count(db, Membership, Membership.account_id == bo.id) == 1
