"""Remote people join a community by following its Group (FEP-1b12), under the community's
membership model; a moderator's decision is answered to their server; Undo(Follow) leaves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities import moderation
from kith.communities import service as communities
from kith.communities.models import Community, Membership, MembershipModel, MemberState
from kith.communities.service import CommunityInput
from kith.config import Settings
from kith.federation.models import OutboundActivity
from kith.runtime import Runtime
from tests.federation.helpers import BASE
from tests.federation.inbound import count, deliver, loopback, two_actor_peer
from tests.federation.peer import Peer
from tests.world import person

pytestmark = pytest.mark.usefixtures("rt")

GROUP = f"{BASE}/c/gardeners"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with two_actor_peer() as p:
        yield p


async def found(
    db: AsyncSession, membership: MembershipModel = MembershipModel.OPEN, **fields: Any
) -> tuple[Account, Community]:
    ann = await person(db, "ann")
    data = CommunityInput(name="Gardeners", membership=membership, **fields)
    return ann, await communities.create_community(db, ann.id, "gardeners", data)


async def sent(db: AsyncSession, kind: str) -> list[OutboundActivity]:
    rows = await db.scalars(select(OutboundActivity).execution_options(populate_existing=True))
    return [r for r in rows.all() if r.document.get("type") == kind]


async def alice(db: AsyncSession, peer: Peer) -> Account:
    account = await db.scalar(select(Account).where(Account.uri == peer.actor_uri("alice")))
    assert account is not None
    return account


async def membership(db: AsyncSession, community: Community, account: Account) -> str | None:
    state = await db.scalar(
        select(Membership.state)
        .where(Membership.community_id == community.id, Membership.account_id == account.id)
        .execution_options(populate_existing=True)
    )
    return None if state is None else str(state)


async def test_follow__of_an_open_community_joins_and_the_group_accepts(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    _, community = await found(db)
    # When alice's server sends a Follow of the Group
    follow = peer.activity("alice", "Follow", GROUP)
    assert await deliver(settings, rt, peer, follow) == "joined"
    # Then she is a member, and the Group (signing with its own key) accepts her very Follow
    assert await membership(db, community, await alice(db, peer)) == MemberState.ACTIVE
    (accept,) = await sent(db, "Accept")
    assert accept.community_id == community.id and accept.actor_account_id is None
    assert accept.document["actor"] == GROUP
    assert accept.document["object"]["id"] == follow["id"]
    assert accept.document["object"]["object"] == GROUP
    # When she undoes the Follow, she leaves
    assert await deliver(settings, rt, peer, peer.activity("alice", "Undo", follow)) == "left"
    assert await membership(db, community, await alice(db, peer)) is None


async def test_follow__of_an_approval_community_waits_for_a_moderator_then_is_accepted(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given a community that asks a question (a Follow cannot answer it)
    ann, community = await found(db, MembershipModel.APPROVAL, join_question="Why?")
    follow = peer.activity("alice", "Follow", GROUP)
    assert (await deliver(settings, rt, peer, follow)).startswith("requested")
    her = await alice(db, peer)
    assert await membership(db, community, her) == MemberState.PENDING
    assert await sent(db, "Accept") == []
    # When a moderator approves her request
    await moderation.approve(db, ann.id, community, her.id)
    # Then her server gets the Group's Accept of her Follow
    (accept,) = await sent(db, "Accept")
    assert accept.document["object"]["id"] == follow["id"]
    assert accept.community_id == community.id


async def test_follow__turned_down_by_a_moderator_is_rejected(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    ann, community = await found(db, MembershipModel.PRIVATE)
    follow = peer.activity("alice", "Follow", GROUP)
    assert (await deliver(settings, rt, peer, follow)).startswith("requested")
    await moderation.reject(db, ann.id, community, (await alice(db, peer)).id)
    (reject,) = await sent(db, "Reject")
    assert reject.document["object"]["id"] == follow["id"]
    assert await sent(db, "Accept") == []


async def test_follow__of_an_invite_only_community_is_rejected_with_nothing_written(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    _, community = await found(db, MembershipModel.INVITE)
    outcome = await deliver(settings, rt, peer, peer.activity("alice", "Follow", GROUP))
    assert outcome.startswith("rejected")
    assert await count(db, Membership, Membership.community_id == community.id) == 1  # ann
    assert len(await sent(db, "Reject")) == 1


async def test_follow__by_a_banned_person_is_rejected(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given alice joined, then a moderator banned her
    ann, community = await found(db)
    assert await deliver(settings, rt, peer, peer.activity("alice", "Follow", GROUP)) == "joined"
    await moderation.ban(db, ann.id, community, (await alice(db, peer)).id, reason="spam")
    # When she follows the Group again
    outcome = await deliver(settings, rt, peer, peer.activity("alice", "Follow", GROUP))
    # Then she is refused and stays out
    assert outcome.startswith("rejected")
    assert await membership(db, community, await alice(db, peer)) is None
    # (two Rejects: the ban ended her Follow, and the new one is turned down)
    assert len(await sent(db, "Reject")) == 2


async def test_follow__of_an_unknown_community_is_ignored(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    await found(db)
    outcome = await deliver(settings, rt, peer, peer.activity("alice", "Follow", f"{BASE}/c/no"))
    assert outcome.startswith("ignored")
    assert await sent(db, "Accept") == [] and await sent(db, "Reject") == []
