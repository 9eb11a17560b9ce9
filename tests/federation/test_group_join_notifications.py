"""A remote person's Follow of a community's Group that waits for approval tells the
community's local moderators, as a local request does; a moderator's decision tells nobody
here (the remote person's own server hears of it through the Accept or Reject)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities import moderation
from kith.communities import service as communities
from kith.communities.models import MembershipModel
from kith.communities.service import CommunityInput
from kith.config import Settings
from kith.notifications.models import Notification
from kith.runtime import Runtime
from tests.federation.helpers import BASE
from tests.federation.inbound import deliver, loopback, two_actor_peer
from tests.federation.peer import Peer
from tests.world import person

pytestmark = pytest.mark.usefixtures("rt")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with two_actor_peer() as p:
        yield p


async def notified(db: AsyncSession, who: Account) -> list[tuple[str, int, int | None]]:
    rows = await db.execute(
        select(Notification.type, Notification.from_account_id, Notification.community_id)
        .where(Notification.account_id == who.id)
        .execution_options(populate_existing=True)
    )
    return [(t, a, c) for t, a, c in rows.all()]


async def test_follow__waiting_for_approval_notifies_the_local_moderators(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given a private community owned by ann, and bob, a member who does not moderate
    ann, bob = await person(db, "ann"), await person(db, "bob")
    data = CommunityInput(name="Gardeners", membership=MembershipModel.PRIVATE)
    community = await communities.create_community(db, ann.id, "gardeners", data)
    _, code = await communities.create_invite(db, ann.id, community)
    await communities.join(db, bob.id, community, invite_code=code)
    # When alice's server sends a Follow of the Group
    follow = peer.activity("alice", "Follow", f"{BASE}/c/gardeners")
    assert (await deliver(settings, rt, peer, follow)).startswith("requested")
    # Then ann is told of alice's request, with the community; bob is not
    her = await db.scalar(select(Account).where(Account.uri == peer.actor_uri("alice")))
    assert her is not None
    assert await notified(db, ann) == [("community.join_request", her.id, community.id)]
    assert await notified(db, bob) == []
    # And approving her adds no notification for her here
    await moderation.approve(db, ann.id, community, her.id)
    assert await notified(db, her) == []
