"""A Lemmy person's post into one of our communities: a `Create(Page)` (a title and a body)
addressed to our Group with `audience`, checked by the same rules as a Note
(`federation.group_posts`: a member? banned?) and stored with its title."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.communities.models import CommunityPost
from kith.config import Settings
from kith.posts.models import Post
from kith.runtime import Runtime
from tests.federation.helpers import PUBLIC
from tests.federation.inbound import count, deliver, loopback, two_actor_peer
from tests.federation.peer import Peer
from tests.federation.test_group_posts import GROUP, alice_joins, found

pytestmark = pytest.mark.usefixtures("rt")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with two_actor_peer() as p:
        yield p


def lemmy_page(peer: Peer, name: str) -> dict[str, Any]:
    """A Lemmy post as Lemmy's federation docs show it: a Page to the community and Public."""
    peer.counter += 1
    return {
        "id": f"{peer.base}/post/{peer.counter}",
        "type": "Page",
        "attributedTo": peer.actor_uri(name),
        "to": [GROUP, PUBLIC],
        "cc": [],
        "audience": GROUP,
        "name": "Compost bins compared",
        "content": "<p>Three bins, one winner.</p>",
        "mediaType": "text/html",
        "source": {"content": "Three bins, one winner.", "mediaType": "text/markdown"},
        "commentsEnabled": True,
        "sensitive": False,
    }


async def test_create_page__by_a_member_is_a_thread_with_its_title(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given alice (on a Lemmy-like server) joined our open community
    _, community = await found(db)
    await alice_joins(settings, rt, peer, db)
    # When her server sends Create(Page) addressed to the Group, with audience
    doc = lemmy_page(peer, "alice")
    create = peer.activity("alice", "Create", doc, to=[GROUP, PUBLIC], cc=[], audience=GROUP)
    # Then it is a thread of the community, shown with its title
    assert await deliver(settings, rt, peer, create) == "stored in a community"
    stored = await db.scalar(select(Post).where(Post.uri == doc["id"]))
    assert stored is not None
    assert "<strong>Compost bins compared</strong>" in stored.content_html
    row = await db.get(CommunityPost, (community.id, stored.id))
    assert row is not None and row.is_thread and row.state == "approved"


async def test_create_page__by_a_non_member_is_refused_like_a_note(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given an open community mallory never joined
    await found(db)
    doc = lemmy_page(peer, "mallory")
    create = peer.activity("mallory", "Create", doc, to=[GROUP, PUBLIC], audience=GROUP)
    # When her Page arrives, then it is refused and nothing is stored
    outcome = await deliver(settings, rt, peer, create)
    assert outcome.startswith("refused: Only members can post")
    assert await count(db, Post, Post.uri == doc["id"]) == 0
