"""A remote person's post sent to one of our communities (FEP-1b12): checked as a local
post is (`communities.posting.addressed`: a member? banned? a locked thread?), stored with its
community rows (waiting in the approval queue where the community asks for it), then passed
on by the community's Group to its remote members (`federation.groups.announce_post`).

A reply to a thread in one of our communities takes the same path whether or not it names the
Group (`in_our_thread`): Mastodon and Lemmy people reply to the post, not to the community."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities import posting
from kith.communities.models import Community, CommunityPost, CommunityPostState
from kith.errors import ValidationFailed
from kith.federation import groups
from kith.federation.handlers.common import ready_to_fetch
from kith.federation.local_objects import post_by_uri
from kith.federation.models import RemoteActor
from kith.federation.origin import first_id
from kith.federation.remote_posts import (
    Fetched,
    Refused,
    fetch_thread,
    store_fetched,
    store_note,
    visibility_of,
)

Json = dict[str, Any]


async def in_our_thread(db: AsyncSession, obj: Json) -> bool:
    """Does `obj` reply to a post stored here whose thread is in one of our communities?
    (A parent not stored here never joined such a thread: every post that did is here.)"""
    in_reply_to = first_id(obj.get("inReplyTo"))
    if not in_reply_to:
        return False
    parent = await post_by_uri(db, in_reply_to)
    if parent is None:
        return False
    found = await db.scalar(
        select(CommunityPost.post_id)
        .join(Community, Community.id == CommunityPost.community_id)
        .where(
            CommunityPost.post_id == (parent.thread_root_id or parent.id),
            CommunityPost.is_thread.is_(True),
            Community.domain == "",  # another server's community has its Group's word
        )
        .limit(1)
    )
    return found is not None


async def receive(
    db: AsyncSession,
    actor: Account,
    obj: Json,
    targets: list[Community],
    created: Json,
) -> str | None:
    """Store `obj` (a Note whose Create, `created`, names our communities `targets`, or a
    reply in one of our communities' threads, `targets` then possibly empty) as a post in
    them and announce it; the outcome, or None when it is not a community post after all (a
    reply outside any community thread: stored the usual way). A reply the thread's rules
    refuse (banned, not allowed to reply there, locked) is refused whole, as a local one."""
    followers = await db.scalar(
        select(RemoteActor.followers_url).where(RemoteActor.account_id == actor.id)
    )
    visibility = visibility_of(obj, followers)
    parent = None
    in_reply_to = first_id(obj.get("inReplyTo"))
    if in_reply_to:
        await ready_to_fetch(db)
        fetched = Fetched()
        await fetch_thread(db, obj, fetched)
        await store_fetched(db, fetched)
        parent = await post_by_uri(db, in_reply_to)
        if parent is None:
            return "ignored: a reply to a post that could not be fetched"
    ids = [] if parent is not None else [c.id for c in targets][: posting.MAX_COMMUNITIES_PER_POST]
    try:
        where = await posting.addressed(db, actor.id, ids, visibility, parent)
    except ValidationFailed as exc:
        return f"refused: {exc.message}"
    if where.empty:
        return None
    try:
        post = await store_note(db, actor, obj, wanted=True, communities=where)
    except Refused as exc:
        return f"refused: {exc}"
    if post is None:
        return "ignored: not wanted here"
    await groups.announce_post(db, post, created=created)
    waiting = await db.scalar(
        select(CommunityPost.post_id).where(
            CommunityPost.post_id == post.id, CommunityPost.state == CommunityPostState.PENDING
        )
    )
    return "stored: waiting for a moderator" if waiting else "stored in a community"
