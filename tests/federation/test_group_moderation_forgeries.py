"""Forged moderation of our communities (FEP-1b12): their moderators are all on this
server, so a Delete, a Lemmy-shaped Block, Lock, Add or Remove, an Update of the Group or an
Announce claiming to be by it, sent by another server, changes nothing here."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities import moderation
from kith.communities.models import CommunityBan, CommunityPost, Membership
from kith.config import Settings
from kith.federation.models import InboxItem
from kith.graph.models import Block
from kith.runtime import Runtime
from tests.federation.inbound import count, deliver, loopback, two_actor_peer
from tests.federation.peer import Peer
from tests.federation.test_group_moderation import ANN, FEATURED, GROUP, found, note_id
from tests.world import post, running_app

pytestmark = pytest.mark.usefixtures("rt")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with two_actor_peer() as p:
        yield p


async def test_forged__delete_of_a_local_post_in_our_community_is_refused(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    ann, community = await found(db)
    thread = await post(db, ann, "Mine", community_ids=[community.id])
    assert await deliver(settings, rt, peer, peer.activity("alice", "Follow", GROUP)) == "joined"
    # When alice, a member elsewhere, sends a Delete of ann's post with the Group cc'd
    forged = peer.activity("alice", "Delete", note_id(thread), cc=[GROUP], summary="removed")
    outcome = await deliver(settings, rt, peer, forged)
    # Then it is refused; the post stays in the community
    assert outcome.startswith("refused")
    row = await db.get(CommunityPost, (community.id, thread.id), populate_existing=True)
    assert row is not None and row.state == "approved"


@pytest.mark.parametrize("banned", ["alice", "ann"])
async def test_forged__block_targeting_our_group_bans_nobody(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer, banned: str
) -> None:
    # Given alice (remote) joined ann's community
    ann, community = await found(db)
    assert await deliver(settings, rt, peer, peer.activity("alice", "Follow", GROUP)) == "joined"
    alice = await db.scalar(select(Account).where(Account.uri == peer.actor_uri("alice")))
    assert alice is not None
    # When mallory sends a Lemmy-shaped ban from the community
    target = peer.actor_uri("alice") if banned == "alice" else ANN
    forged = peer.activity("mallory", "Block", target, target=GROUP, summary="gone")
    outcome = await deliver(settings, rt, peer, forged)
    # Then nobody is banned or blocked, and alice is still a member
    assert outcome.startswith("refused")
    assert await count(db, CommunityBan) == 0 and await count(db, Block) == 0
    assert await db.get(Membership, (community.id, alice.id), populate_existing=True) is not None


async def test_forged__lock_add_and_remove_from_another_server_change_nothing(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    ann, community = await found(db)
    pinned = await post(db, ann, "Pinned", community_ids=[community.id])
    other = await post(db, ann, "Other", community_ids=[community.id])
    await moderation.pin_thread(db, ann.id, community, pinned.id)
    for forged in (
        peer.activity("mallory", "Lock", note_id(other), cc=[GROUP], audience=GROUP),
        peer.activity("mallory", "Add", note_id(other), target=FEATURED, audience=GROUP),
        peer.activity("mallory", "Remove", note_id(pinned), target=FEATURED, audience=GROUP),
    ):
        outcome = await deliver(settings, rt, peer, forged)
        assert not outcome.startswith(("locked", "pinned", "stored")), outcome
    rows = {
        r.post_id: r
        for r in await db.scalars(select(CommunityPost).execution_options(populate_existing=True))
    }
    assert rows[other.id].locked_at is None and rows[other.id].pinned_at is None
    assert rows[pinned.id].pinned_at is not None


async def test_forged__update_of_our_group_is_refused(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    _, community = await found(db)
    fake = {"id": GROUP, "type": "Group", "name": "Pills For Sale", "preferredUsername": "x"}
    outcome = await deliver(settings, rt, peer, peer.activity("mallory", "Update", fake))
    assert outcome.startswith("refused")
    await db.refresh(community)
    assert community.name == "Gardeners"


async def test_forged__announce_of_a_removal_claiming_our_group_is_refused_at_the_inbox(
    db: AsyncSession, settings: Settings, peer: Peer
) -> None:
    ann, community = await found(db)
    thread = await post(db, ann, "Mine", community_ids=[community.id])
    forged = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{GROUP}/log/1/announce",
        "type": "Announce",
        "actor": GROUP,
        "object": {
            "id": f"{GROUP}/log/1",
            "type": "Delete",
            "actor": ANN,
            "object": note_id(thread),
            "summary": "gone",
        },
    }
    headers, body = peer.sign(forged, signer="mallory")
    async with running_app(settings) as client:
        r = await client.post("/inbox", content=body, headers=headers)
    assert 400 <= r.status_code < 500
    assert await count(db, InboxItem) == 0
    row = await db.get(CommunityPost, (community.id, thread.id), populate_existing=True)
    assert row is not None and row.state == "approved"
