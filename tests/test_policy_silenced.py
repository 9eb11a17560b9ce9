"""A silenced author's posts leave public listings (Local, hashtags, search) for everyone
but their followers and themselves, whoever else the viewer follows."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.graph import service as graph
from kith.moderation import service as moderation
from kith.posts.models import Post
from kith.timelines import service as timelines
from kith.timelines.shapes import ENTITIES
from tests.world import person, post, viewer


async def test_silenced_posts_leave_listings_of_people_who_follow_someone_else(
    db: AsyncSession,
) -> None:
    cy, bo, mal, fan = [await person(db, n) for n in ("cy", "bo", "mal", "fan")]
    await post(db, bo, "bo was here")
    shouted = await post(db, mal, "mal was here #news")
    await graph.follow(db, cy.id, bo.id)  # cy follows someone who has posted, not mal
    await graph.follow(db, fan.id, mal.id)
    await moderation.silence(db, mal)

    async def listed_for(who: policy.Viewer) -> bool:
        found = await db.scalar(
            select(Post.id).where(Post.id == shouted.id, policy.publicly_listed_clause(who))
        )
        return found is not None

    async def in_local(who: policy.Viewer) -> bool:
        page = await timelines.public(db, who, origin="local", limit=40, shape=ENTITIES)
        return shouted.id in {p.id for p in page.posts}

    for who, expected in (
        (viewer(cy), False),
        (policy.ANONYMOUS, False),
        (viewer(bo), False),
        (viewer(fan), True),
        (viewer(mal), True),
    ):
        assert await listed_for(who) is expected, who
        assert await in_local(who) is expected, who
