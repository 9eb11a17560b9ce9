"""Update(Person) and Delete(Person): a remote actor changes its profile or goes away."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.db import utcnow
from kith.federation.actors import ActorFetchFailed
from kith.federation.handlers.common import ready_to_fetch
from kith.federation.remote_accounts import fetch_account, store_document
from kith.federation.remote_posts import remove_post
from kith.graph.models import Follow, FollowRequest
from kith.notifications.models import Notification
from kith.posts.models import Like, Post
from kith.posts.service import recount_interactions


async def update_actor(db: AsyncSession, actor: Account, obj: Any) -> str:
    """Refresh the actor's account from the signed activity's embedded document, or by
    fetching it again when only its id was sent."""
    try:
        if isinstance(obj, dict):
            if obj.get("id") != actor.uri:
                return "refused: Update of another actor"
            await store_document(db, obj)
        else:
            await ready_to_fetch(db)
            await fetch_account(db, actor.uri or "", refresh=True)
    except ActorFetchFailed as exc:
        return f"refused: {exc}"
    return "profile updated"


async def delete_actor(db: AsyncSession, actor: Account) -> str:
    """The actor was deleted on its server: its posts, boosts, likes, follows and follow
    requests here go (the counters of the posts they touched are recomputed); the account
    row stays as a husk, so ids that point at it keep resolving, marked deleted (and
    suspended), so it is shown nowhere and its profile answers 404."""
    posts = list((await db.scalars(select(Post).where(Post.account_id == actor.id))).all())
    touched = {p.reblog_of_id for p in posts} | {p.in_reply_to_id for p in posts}
    liked = (await db.scalars(select(Like.post_id).where(Like.account_id == actor.id))).all()
    touched |= set(liked)
    await db.execute(delete(Like).where(Like.account_id == actor.id))
    for post in posts:
        await remove_post(db, post)
    for post_id in touched - {None} - {p.id for p in posts}:
        assert post_id is not None
        await recount_interactions(db, post_id)
        replies = (
            select(func.count()).select_from(Post).where(Post.in_reply_to_id == post_id)
        ).scalar_subquery()
        await db.execute(update(Post).where(Post.id == post_id).values(replies_count=replies))
    await db.execute(
        delete(Follow).where(or_(Follow.follower_id == actor.id, Follow.followee_id == actor.id))
    )
    await db.execute(
        delete(FollowRequest).where(
            or_(FollowRequest.follower_id == actor.id, FollowRequest.followee_id == actor.id)
        )
    )
    await db.execute(delete(Notification).where(Notification.from_account_id == actor.id))
    now = utcnow()
    actor.deleted_at = actor.deleted_at or now
    actor.suspended_at = actor.suspended_at or now
    return f"actor deleted ({len(posts)} posts removed)"
