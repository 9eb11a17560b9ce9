"""The counters shown with an account (AccountStats, kept by database triggers) always equal
what counting the rows would give, whatever added or removed them."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account, AccountStats
from kith.graph import service as graph
from kith.graph.models import Follow
from kith.posts import service as posts
from kith.posts.models import Post, Visibility
from tests.world import person, post, viewer


async def _counted(db: AsyncSession, account_id: int) -> tuple[int, int, int, object]:
    statuses = await db.scalar(select(func.count()).where(Post.account_id == account_id))
    last = await db.scalar(select(func.max(Post.created_at)).where(Post.account_id == account_id))
    followers = await db.scalar(select(func.count()).where(Follow.followee_id == account_id))
    following = await db.scalar(select(func.count()).where(Follow.follower_id == account_id))
    return int(statuses or 0), int(followers or 0), int(following or 0), last


async def _kept(db: AsyncSession, account_id: int) -> tuple[int, int, int, object]:
    row = await db.get(AccountStats, account_id, populate_existing=True)
    if row is None:
        return 0, 0, 0, None
    return row.statuses_count, row.followers_count, row.following_count, row.last_status_at


async def _check_all(db: AsyncSession) -> None:
    for account_id in (await db.scalars(select(Account.id))).all():
        assert await _kept(db, account_id) == await _counted(db, account_id), account_id


async def test_counters_follow_every_change(db: AsyncSession) -> None:
    ada, bo, cy = [await person(db, n) for n in ("ada", "bo", "cy")]
    await _check_all(db)
    await graph.follow(db, bo.id, ada.id)
    await graph.follow(db, cy.id, ada.id)
    await graph.follow(db, ada.id, bo.id)
    first = await post(db, ada, "one")
    second = await post(db, ada, "two", visibility=Visibility.PRIVATE)
    await post(db, bo, "hi @ada", reply_to=first)
    await posts.boost(db, viewer(bo), first.id)
    await _check_all(db)
    assert (await _kept(db, ada.id))[:3] == (2, 2, 1)
    await posts.delete_post(db, viewer(ada), second.id)  # the latest post goes
    await posts.unboost(db, viewer(bo), first.id)
    await graph.unfollow(db, cy.id, ada.id)
    await graph.block(db, ada.id, bo.id)  # removes the follows both ways
    await _check_all(db)
    assert (await _kept(db, ada.id))[3] == first.created_at
    # The database cascades to bo's posts and follows (as deleting an account will).
    await db.execute(delete(Account).where(Account.id == bo.id))
    await db.commit()
    await _check_all(db)
