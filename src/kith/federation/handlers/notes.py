"""Create, Update and Delete of posts (and, when the object is the actor itself, of the
actor: those go to `people`). The rules are in `federation.remote_posts`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.federation import group_moderation, group_posts, groups, polls
from kith.federation.gone import forget_actor
from kith.federation.handlers import people
from kith.federation.handlers.common import actor_of, object_id, ready_to_fetch
from kith.federation.models import InboxItem
from kith.federation.origin import ACTOR_TYPES, type_of
from kith.federation.processing import activity_handler
from kith.federation.remote_posts import (
    NOTE_TYPES,
    Fetched,
    Refused,
    author_of,
    delete_note,
    fetch_object,
    fetch_thread,
    is_tombstoned,
    store_fetched,
    store_note,
    update_note,
    wanted_here,
)
from kith.posts.models import Post


@activity_handler("Create")
async def on_create(db: AsyncSession, item: InboxItem) -> str:
    """Store a remote Note / Question that concerns someone here, with the missing part of
    its thread (fetched first, bounded); repeats and tombstoned ids change nothing."""
    actor = await actor_of(db, item)
    obj: Any = item.activity.get("object")
    if actor is None:
        return "ignored: unknown actor"
    if isinstance(obj, str):
        await ready_to_fetch(db)
        fetched_obj = await fetch_object(db, obj, Fetched())
        if fetched_obj is None:
            return "ignored: the object could not be fetched"
        obj = fetched_obj
    if not isinstance(obj, dict) or type_of(obj) not in NOTE_TYPES:
        return f"ignored: {type_of(obj) or 'untyped'} objects are not stored"
    if (author_of(obj) or actor.uri) != actor.uri:
        return "refused: the object is attributed to someone else"
    voted_in = await polls.poll_voted_in(db, obj)
    if voted_in is not None:  # a vote in one of our polls, not a post
        return await polls.receive_vote(db, actor, *voted_in, obj)
    if await is_tombstoned(db, obj["id"]):
        return "ignored: deleted before it arrived"
    existing = await db.scalar(select(Post).where(Post.uri == obj["id"]))
    if existing is not None:
        if existing.account_id != actor.id or existing.reblog_of_id is not None:
            return "refused: the object id is already used by another post"
        return "ignored: already stored"
    targets = await groups.communities_addressed(db, item.activity, obj)
    # A post sent to our communities (FEP-1b12), or a reply in one of their threads that
    # does not name the Group (as Mastodon's and most replies do): the community's rules.
    if targets or await group_posts.in_our_thread(db, obj):
        outcome = await group_posts.receive(db, actor, obj, targets, dict(item.activity))
        if outcome is not None:
            return outcome
    if not await wanted_here(db, actor, obj):
        return "ignored: addressed to nobody here, from nobody followed here"
    fetched = Fetched()
    await ready_to_fetch(db)
    await fetch_thread(db, obj, fetched)
    await store_fetched(db, fetched)
    try:
        post = await store_note(db, actor, obj, wanted=True)
    except Refused as exc:
        return f"refused: {exc}"
    return "stored" if post is not None else "ignored: not wanted here"


@activity_handler("Update")
async def on_update(db: AsyncSession, item: InboxItem) -> str:
    """An edit of a stored post (its audience stays), or a profile update."""
    actor = await actor_of(db, item)
    obj = item.activity.get("object")
    if actor is None:
        return "ignored: unknown actor"
    if isinstance(obj, str) or type_of(obj) in ACTOR_TYPES:
        return await people.update_actor(db, actor, obj)
    if not isinstance(obj, dict) or type_of(obj) not in NOTE_TYPES:
        return f"ignored: Update of {type_of(obj) or 'an untyped object'}"
    if (author_of(obj) or actor.uri) != actor.uri:
        return "refused: the object is attributed to someone else"
    try:
        return await update_note(db, actor, obj)
    except Refused as exc:
        return f"refused: {exc}"


@activity_handler("Delete")
async def on_delete(db: AsyncSession, item: InboxItem) -> str:
    """Delete a post of the actor (a tombstone if it is not here yet), or the actor itself."""
    actor = await actor_of(db, item)
    uri = object_id(item.activity)
    if actor is None or uri is None:
        return "ignored: unknown actor or object"
    if uri == actor.uri:
        # Gone for good: its endpoints and keys go too, so nothing is sent to it any more and
        # a replayed activity signed with its old key is refused.
        return await forget_actor(db, actor)
    # A post in our communities: their Groups pass the author's Delete on to their members.
    post = await db.scalar(select(Post).where(Post.uri == uri, Post.account_id == actor.id))
    held = await group_moderation.communities_holding(db, post) if post is not None else []
    try:
        outcome = await delete_note(db, actor, uri)
    except Refused as exc:
        return f"refused: {exc}"
    if held and outcome == "deleted":
        await group_moderation.forward_delete(db, held, dict(item.activity), uri)
    return outcome
