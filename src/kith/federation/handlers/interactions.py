"""Like and Announce (boost), and their Undo.

Likes count only on local posts (remote servers keep their own counts). A boost is stored as
a post of the booster (`reblog_of_id`, `uri` = the Announce id) when it concerns someone here:
a local original, or a booster someone here follows. Only public and unlisted posts can be
boosted, and only by someone who may see them; a missing original is fetched (one object)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.db import new_id, utcnow
from kith.federation import remote_groups
from kith.federation.handlers import group_announces
from kith.federation.handlers.common import actor_of, object_id, ready_to_fetch
from kith.federation.handlers.undo import undo_handler
from kith.federation.local_objects import is_local, local_post, post_by_uri
from kith.federation.models import InboxItem, RemoteActor
from kith.federation.origin import first_id
from kith.federation.processing import activity_handler
from kith.federation.remote_posts import (
    Fetched,
    fetch_object,
    is_followed_here,
    remove_post,
    store_fetched,
    visibility_of,
)
from kith.notifications import service as notifications
from kith.notifications.models import NotificationType
from kith.posts import service as posts_service
from kith.posts.models import Like, Post, Visibility

BOOSTABLE = (Visibility.PUBLIC, Visibility.UNLISTED)


@activity_handler("Like")
async def on_like(db: AsyncSession, item: InboxItem) -> str:
    actor = await actor_of(db, item)
    post = await local_post(db, object_id(item.activity) or "")
    if actor is None or post is None:
        return "ignored: not a like of one of our posts"
    return await record_like(db, actor, post)


async def record_like(db: AsyncSession, actor: Account, post: Post) -> str:
    """A remote actor likes a local post they may see: counted once, its author notified."""
    viewer = policy.Viewer(actor.id)
    if not await policy.can_see_post(db, viewer, post) or not await policy.can_interact(
        db, viewer, post
    ):
        return "refused: the post is not visible to the actor"
    if await db.get(Like, (actor.id, post.id)) is not None:
        return "ignored: already liked"
    db.add(Like(account_id=actor.id, post_id=post.id))
    await db.flush()
    await posts_service.recount_interactions(db, post.id)
    await notifications.notify(
        db,
        recipient_id=post.account_id,
        type=NotificationType.LIKE,
        from_account_id=actor.id,
        post_id=post.id,
    )
    return "liked"


@undo_handler("Like")
async def undo_like(db: AsyncSession, actor: Account, like: dict[str, Any]) -> str:
    post = await local_post(db, first_id(like.get("object")) or "")
    if post is None:
        return "ignored: not a like of one of our posts"
    await posts_service.remove_like(db, actor.id, post)
    return "unliked"


async def _original(db: AsyncSession, actor: Account, uri: str) -> Post | str:
    """The boosted post, fetched when it is remote and not stored yet; or the outcome."""
    original = await post_by_uri(db, uri)
    if original is None:
        if is_local(db, uri):
            return "ignored: no such post here"
        if not await is_followed_here(db, actor.id):
            return "ignored: a boost by someone nobody here follows"
        await ready_to_fetch(db)
        fetched = Fetched()
        doc = await fetch_object(db, uri, fetched)
        if doc is None:
            return "ignored: the boosted post could not be fetched"
        if visibility_of(doc, None) not in BOOSTABLE:
            return "refused: only public and unlisted posts can be boosted"
        fetched.objects.append(doc)
        await store_fetched(db, fetched)
        original = await post_by_uri(db, uri)
        if original is None:
            return "ignored: the boosted post was not stored"
    elif not (await _is_local(db, original.account_id) or await is_followed_here(db, actor.id)):
        return "ignored: a boost by someone nobody here follows"
    if original.reblog_of_id is not None:
        return "refused: a boost of a boost"
    return original


async def _is_local(db: AsyncSession, account_id: int) -> bool:
    return (await db.scalar(select(Account.domain).where(Account.id == account_id))) == ""


@activity_handler("Announce")
async def on_announce(db: AsyncSession, item: InboxItem) -> str:
    actor = await actor_of(db, item)
    if actor is not None:
        community = await remote_groups.community_of_group(db, actor.id)
        if community is not None and group_announces.wanted(
            item.activity, await remote_groups.has_members_here(db, community)
        ):
            # A community people here joined passes on what happens in it (FEP-1b12).
            return await group_announces.receive(db, item, community)
    if group_announces.announces_an_activity(item.activity):
        return "ignored: an Announce of an activity by a Group nobody here is in"
    uri = object_id(item.activity)
    if actor is None or uri is None:
        return "ignored: unknown actor or object"
    announce_id = str(item.activity["id"])
    existing = await db.scalar(select(Post).where(Post.uri == announce_id))
    if existing is not None:
        if existing.account_id != actor.id or existing.reblog_of_id is None:
            return "refused: the activity id is already used by another post"
        return "ignored: already boosted"
    original = await _original(db, actor, uri)
    if isinstance(original, str):
        return original
    if original.visibility not in BOOSTABLE:
        return "refused: only public and unlisted posts can be boosted"
    if not await policy.can_see_post(db, policy.Viewer(actor.id), original):
        return "refused: the post is not visible to the actor"
    if await db.scalar(
        select(Post.id).where(Post.account_id == actor.id, Post.reblog_of_id == original.id)
    ):
        return "ignored: already boosted"
    followers = await db.scalar(
        select(RemoteActor.followers_url).where(RemoteActor.account_id == actor.id)
    )
    db.add(
        Post(
            id=new_id(),
            account_id=actor.id,
            visibility=visibility_of(item.activity, followers),
            reblog_of_id=original.id,
            created_at=utcnow(),
            uri=announce_id[:512],
        )
    )
    await db.flush()
    await posts_service.recount_interactions(db, original.id)
    if await _is_local(db, original.account_id):
        await notifications.notify(
            db,
            recipient_id=original.account_id,
            type=NotificationType.BOOST,
            from_account_id=actor.id,
            post_id=original.id,
        )
    return "boosted"


@undo_handler("Announce")
async def undo_announce(db: AsyncSession, actor: Account, announce: dict[str, Any]) -> str:
    boost = None
    if isinstance(announce.get("id"), str):
        boost = await db.scalar(
            select(Post).where(
                Post.uri == announce["id"],
                Post.account_id == actor.id,
                Post.reblog_of_id.is_not(None),
            )
        )
    if boost is None:
        original = await post_by_uri(db, first_id(announce.get("object")) or "")
        if original is not None:
            boost = await db.scalar(
                select(Post).where(Post.account_id == actor.id, Post.reblog_of_id == original.id)
            )
    if boost is None or boost.reblog_of_id is None:
        return "ignored: no such boost"
    original_id = boost.reblog_of_id
    original_author = await db.scalar(select(Post.account_id).where(Post.id == original_id))
    await remove_post(db, boost)
    if original_author is not None:
        await notifications.withdraw(
            db,
            recipient_id=original_author,
            type=NotificationType.BOOST,
            from_account_id=actor.id,
            post_id=original_id,
        )
    return "unboosted"
