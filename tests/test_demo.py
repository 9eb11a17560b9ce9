"""`kith demo` loads a living town: people, posts, and a dozen communities of every membership
model with their moderation, made through the services."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.communities import feeds
from kith.communities.models import (
    Community,
    CommunityBan,
    CommunityInvite,
    CommunityPost,
    CommunityPostState,
    Membership,
    MembershipModel,
    MemberState,
    ModAction,
    ModerationLogEntry,
    Role,
)
from kith.config import Settings
from kith.demo import load_demo
from kith.errors import Forbidden
from kith.notifications.models import Notification
from kith.runtime import Runtime


async def count(db: AsyncSession, model: Any, *where: Any) -> int:
    return int(await db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_demo__loads_people_and_a_dozen_communities_with_their_moderation(
    db: AsyncSession, settings: Settings, rt: Runtime
) -> None:
    # When the demo loads into an empty database
    message = await load_demo(settings, people=20)
    assert "12 communities" in message
    # Then every membership model is there, each community with an owner and a moderator
    models = await db.scalars(select(Community.membership))
    assert set(models.all()) == {m.value for m in MembershipModel}
    assert await count(db, Membership, Membership.role == Role.OWNER) == 12
    assert await count(db, Membership, Membership.role == Role.MODERATOR) == 12
    # And requests wait, a post waits in a queue, threads are pinned and one locked
    assert await count(db, Membership, Membership.state == MemberState.PENDING) >= 2
    assert await count(db, CommunityPost, CommunityPost.state == CommunityPostState.PENDING) == 1
    assert await count(db, CommunityPost, CommunityPost.pinned_at.isnot(None)) >= 10
    assert await count(db, CommunityPost, CommunityPost.locked_at.isnot(None)) == 1
    assert await count(db, CommunityPost, CommunityPost.is_thread.is_(False)) > 20
    # And the moderation log tells of a removal with its reason, a ban, and invites
    removal = await db.scalar(
        select(ModerationLogEntry).where(ModerationLogEntry.action == ModAction.REMOVE_POST)
    )
    assert removal is not None and removal.reason
    assert await count(db, CommunityBan) == 1
    assert await count(db, CommunityInvite) >= 5
    # And the admin, who owns two communities, finds requests and a waiting post in their
    # notifications
    admin = await db.scalar(select(Account).where(Account.username == "gardener"))
    assert admin is not None
    types = set(
        await db.scalars(select(Notification.type).where(Notification.account_id == admin.id))
    )
    assert {"community.join_request", "community.post_pending"} <= types
    # And a private community's threads stay out of an outsider's view
    private = await db.scalar(select(Community).where(Community.handle == "parents"))
    assert private is not None
    with pytest.raises(Forbidden):
        await feeds.community_feed(db, policy.ANONYMOUS, private)
