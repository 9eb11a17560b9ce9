"""How long remote posts are kept: those nobody here interacted with go after
`remote_post_days` (0 keeps them forever).

A remote post stays while anyone here has a reason to find it again: a local like, boost,
reply, bookmark, pin, poll vote, a mention of a local person, a notification that points at it,
a report that names it, a local post it replies to or boosts, or any reply or boost of it
still stored (so a thread loses its leaves
before its trunk, and a parent is never cut out from under a kept reply). Age is counted from
when the post was stored here (its id), not from when it was published: an old post fetched
today as a thread's ancestor gets the full period."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from kith.accounts.models import Account
from kith.db import id_for_time, utcnow
from kith.federation.remote_posts import remove_post
from kith.jobs.queue import job_handler
from kith.moderation.models import Report
from kith.notifications.models import Notification
from kith.posts.models import Bookmark, Like, Mention, Pin, PollVote, Post
from kith.runtime import runtime_of

PRUNE_BATCH = 200
JOB = "federation.prune_posts"


def _local(account_id: Any) -> Any:
    return exists().where(Account.id == account_id, Account.domain == "")


def _untouched_clause() -> Any:
    """No local interaction with `Post`, and no stored reply or boost hanging on it."""
    other = aliased(Post)
    return and_(
        ~exists().where(Like.post_id == Post.id, _local(Like.account_id)),
        ~exists().where(Bookmark.post_id == Post.id),
        ~exists().where(Pin.post_id == Post.id),
        ~exists().where(PollVote.post_id == Post.id, _local(PollVote.account_id)),
        ~exists().where(Mention.post_id == Post.id, _local(Mention.account_id)),
        ~exists().where(Notification.post_id == Post.id),
        ~exists().where(other.in_reply_to_id == Post.id),
        ~exists().where(other.reblog_of_id == Post.id),
        # A remote boost of, or reply to, a local post is part of a local conversation.
        ~exists().where(
            (other.id == Post.reblog_of_id) | (other.id == Post.in_reply_to_id),
            _local(other.account_id),
        ),
    )


async def _reported_ids(db: AsyncSession, author_ids: set[int]) -> set[int]:
    """Post ids named in reports about these authors (a JSON list, read in Python)."""
    if not author_ids:
        return set()
    lists = await db.scalars(
        select(Report.post_ids).where(Report.target_account_id.in_(author_ids))
    )
    return {int(i) for ids in lists.all() for i in (ids or []) if isinstance(i, int)}


async def prune_remote_posts(db: AsyncSession, *, limit: int = PRUNE_BATCH) -> int:
    """Delete up to `limit` remote posts (and boosts) stored more than `remote_post_days`
    ago that nobody here interacted with, with their search entries and media, in the
    caller's transaction. Returns how many went."""
    days = runtime_of(db).settings.remote_post_days
    if days == 0:
        return 0
    before = id_for_time(utcnow() - timedelta(days=days))
    candidates = (
        await db.scalars(
            select(Post)
            .join(Account, Account.id == Post.account_id)
            .where(Account.domain != "", Post.id < before, _untouched_clause())
            .order_by(Post.id)
            .limit(limit)
        )
    ).all()
    reported = await _reported_ids(db, {p.account_id for p in candidates})
    gone = 0
    for post in candidates:
        if post.id in reported:
            continue
        await remove_post(db, post)
        gone += 1
    return gone


@job_handler(JOB)
async def prune_posts_job(db: AsyncSession, payload: dict[str, Any]) -> None:
    """The periodic job (kith.jobs.worker.PERIODIC_JOBS)."""
    await prune_remote_posts(db)
